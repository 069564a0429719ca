"""`make("LIB:NAME", num_envs=...)`: adapters found through the `pjrl.adapters` entry points.

An adapter is any object with `list_envs() -> list[str]` (ids without the prefix)
and `make(env_id, num_envs, **kwargs) -> VecEnv`. Packages publish one under the
entry-point group `pjrl.adapters`, named by its prefix; `register` adds one in-process.
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib
import os
import sys
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any

from pjrl_envs.core import VecEnv

ENTRY_POINT_GROUP = "pjrl.adapters"


class UnknownEnvError(ValueError):
    """An env name that no adapter knows; the message lists the closest known names."""


class MissingLibraryError(ImportError):
    """The library behind an adapter is not installed; the message says what to install."""


class OptionError(TypeError, ValueError):
    """An env option that does not exist, or a value it does not take; the message lists the allowed ones.

    Both a TypeError (as for an unexpected keyword) and a ValueError (as for a bad value).
    """


def check_options(env_name: str, given: Iterable[str], allowed: Iterable[str]) -> None:
    """Raises `OptionError` in one line if `given` has an option name not in `allowed` (listed in order)."""
    allowed = list(allowed)
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise OptionError(f"{env_name} has no option {', '.join(unknown)}; allowed: {', '.join(allowed)}")


def require(module: str, requirement: str) -> Any:
    """Imports `module` (e.g. "brax.envs"), or raises MissingLibraryError naming `pip install requirement`.

    Whatever the library prints while it imports goes to stderr, so that stdout
    (`pjrl envs`, say) carries only what pjrl prints.
    """
    if sys.modules.get(module) is not None:
        return sys.modules[module]
    try:
        with _stdout_to_stderr():
            return importlib.import_module(module)
    except ImportError as e:
        raise MissingLibraryError(f"{module.split('.')[0]} is not installed: pip install '{requirement}'") from e


@contextlib.contextmanager
def _stdout_to_stderr():
    """Sends Python's and the C libraries' writes to stdout to stderr for the duration."""
    try:
        out, err = sys.__stdout__.fileno(), sys.__stderr__.fileno()
    except (AttributeError, OSError, ValueError):  # no file descriptors (embedded, closed): Python's only
        out = err = None
    with contextlib.redirect_stdout(sys.stderr):
        if out is None:
            yield
            return
        sys.__stdout__.flush()
        saved = os.dup(out)
        os.dup2(err, out)
        try:
            yield
        finally:
            os.dup2(saved, out)
            os.close(saved)


@dataclasses.dataclass
class Adapter:
    """An adapter as the registry sees it."""

    list_envs: Callable[[], list[str]] | None
    make: Callable[..., VecEnv]
    requires: str = ""  # pip requirement that provides the library, for error messages
    unlisted: Callable[[str], str | None] | None = None
    """why an id the library knows is not offered here (None for an id it does not know), for `make`'s message"""
    steps_on_host: bool = False
    """its envs step on the host through callbacks (`VecEnv.host_callbacks`), one pool per process: a run
    lays them out on one device per process unless told otherwise"""


_registered: dict[str, Any] = {}


def register(prefix: str, make: Callable[..., VecEnv] | Adapter,
             list_envs: Callable[[], list[str]] | None = None) -> None:
    """Adds an adapter under `prefix` for this process (entry points do it for packages).

    `make(env_id, num_envs, **kwargs) -> VecEnv`; `list_envs() -> [env_id, ...]`. Without
    `list_envs` any id is passed to `make`, which should raise `UnknownEnvError` itself.
    """
    if ":" in prefix or not prefix:
        raise ValueError(f"adapter prefix must be a non-empty name without ':', got {prefix!r}")
    _registered[prefix] = make if isinstance(make, Adapter) else Adapter(list_envs, make)


def entry_points(group: str = ENTRY_POINT_GROUP) -> dict[str, metadata.EntryPoint]:
    """`{name: entry point}` that installed packages publish under `group` (adapters by default)."""
    return {ep.name: ep for ep in metadata.entry_points(group=group)}


def prefixes() -> list[str]:
    """Every adapter prefix known, from entry points and `register`."""
    return sorted(set(entry_points()) | set(_registered))


def get_adapter(prefix: str) -> Adapter:
    if prefix not in _registered:
        eps = entry_points()
        if prefix not in eps:
            close = difflib.get_close_matches(prefix, prefixes(), n=3, cutoff=0.5)
            hint = f" Did you mean: {', '.join(c + ':' for c in close)}?" if close else ""
            raise UnknownEnvError(f"no adapter named {prefix!r}.{hint} Known: {', '.join(prefixes())}.")
        try:
            _registered[prefix] = eps[prefix].load()
        except ImportError as e:
            raise MissingLibraryError(f"adapter {prefix!r} could not be imported: {e}") from e
    return _registered[prefix]


def steps_on_host(name: str) -> bool:
    """Whether the named env's adapter steps its envs on the host (known before any env is made)."""
    prefix, _, _ = name.partition(":")
    return bool(getattr(get_adapter(prefix), "steps_on_host", False))


def list_envs(library: str | None = None) -> list[str]:
    """Full names `lib:id` of every env, or of one library's. Missing libraries are skipped."""
    names = []
    for prefix in [library] if library else prefixes():
        try:
            adapter = get_adapter(prefix)
            ids = adapter.list_envs() if adapter.list_envs else []
        except MissingLibraryError:
            if library:
                raise
            continue
        names += [f"{prefix}:{i}" for i in ids]
    return names


def make(name: str, num_envs: int = 1, **kwargs) -> VecEnv:
    """Builds the named env as a `VecEnv` of `num_envs`; kwargs go to the adapter."""
    prefix, sep, env_id = name.partition(":")
    if not sep:
        raise UnknownEnvError(f"env name {name!r} needs a library prefix, as in 'gymnax:CartPole-v1'. "
                              f"Libraries: {', '.join(prefixes())}.")
    if int(num_envs) < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    adapter = get_adapter(prefix)
    if adapter.list_envs is not None:
        ids = adapter.list_envs()
        if env_id not in ids:
            unlisted = getattr(adapter, "unlisted", None)
            why = unlisted(env_id) if unlisted else None
            if why:
                raise UnknownEnvError(f"{name} is not offered: {why}")
            close = difflib.get_close_matches(env_id, ids, n=3, cutoff=0.6)
            if not close:
                lower = {i.lower(): i for i in ids}
                close = [lower[c] for c in difflib.get_close_matches(env_id.lower(), list(lower), n=3, cutoff=0.4)]
            hint = f" Did you mean: {', '.join(f'{prefix}:{c}' for c in close)}?" if close else ""
            raise UnknownEnvError(f"unknown env {name!r}.{hint} `pjrl envs --library {prefix}` lists them all.")
    return adapter.make(env_id, num_envs=int(num_envs), **kwargs)
