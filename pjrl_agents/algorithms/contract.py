"""The algorithm contract: what a module provides so `pjrl train --algo NAME` can run it.

An algorithm is an `Algorithm` record published under the entry-point group
`pjrl.algorithms` (as adapters are under `pjrl.adapters`), so a separate
package adds one with two lines of its `pyproject.toml`:

    [project.entry-points."pjrl.algorithms"]
    myppo = "my_package.myppo:ALGORITHM"

The record holds its config class and three functions; the agent it builds
holds the pure functions the runner scans. Nothing is probed or patched
after construction: an agent is complete when built.
"""
from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable, Protocol

import jax

from pjrl_agents.config import ConfigError
from pjrl_agents.run.xla_cpu import CONCURRENT_RUNS
from pjrl_envs.core import VecEnv
from pjrl_envs.registry import entry_points

ENTRY_POINT_GROUP = "pjrl.algorithms"


class Agent(Protocol):
    """One seed's training as pure functions; `jit`, `scan` and `vmap` over seeds apply to each."""

    env: VecEnv
    """the env as the agent steps it (its wrappers included)"""
    num_updates: int
    """updates in the whole run"""
    steps_per_update: int
    """env steps one update takes on this agent's env (one device's share when envs are split)"""

    def init(self, key: jax.Array, config: Any = None) -> Any:
        """The training state of one seed; `config` may carry traced numbers (sweeps)."""

    def update(self, state: Any) -> tuple[Any, dict[str, jax.Array]]:
        """One update: new state and a dict of scalar metrics (`episode_return` among them).

        A NamedTuple state may have `update` (updates done) and `config` fields: the runner
        passes the update index every run shares as `update`, and the run's config as
        constants where every run has the same, so that under `vmap` both stay unbatched.
        """

    def act(self, params: Any, obs: Any, mask: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """Actions for a batch of observations: sampled with `key`, the greedy ones without.

        An agent with memory also has `initial_memory(num_envs)` and `recurrent = True`; its
        `act(params, obs, mask, key, memory)` returns `(action, memory)`, and whoever steps it
        zeroes each env's memory where an episode ends (`pjrl_envs.rollout(..., memory=)` does).
        """

    # optional: `holds_keys = True` has the runner lower a program of one unbatched run inside
    # `pjrl_envs.prng.held()` (each Threefry hash in a kernel of its own), for an agent whose update
    # derives many keys and compiles faster so (DQN)


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """An algorithm as the runner, the CLI and the evaluator see it."""

    name: str
    config_class: type
    """a `flax.struct.dataclass`: numbers are traced (sweepable) leaves, sizes static fields,
    each field documented by the string literal under it (the CLI shows it in --help)"""
    default_config: Callable[..., Any]
    """`(env_name=None, **settings) -> config`: the env's own defaults, then `settings`"""
    validate: Callable[[Any, VecEnv | None], None]
    """raises ConfigError naming the field and what would work, before anything compiles"""
    make_agent: Callable[..., Agent]
    """`(config, env, axis_name=None) -> Agent`"""
    splits_envs: bool = False
    """whether `make_agent` takes a mesh `axis_name`, so that one seed's envs can be split over
    devices (gradients and statistics averaged over the axis)"""
    env_defaults: dict = dataclasses.field(default_factory=dict)
    """`{env name: {setting: value}}`, shown as the defaults in `pjrl train --env NAME --help`"""
    ranges: dict = dataclasses.field(default_factory=dict)
    """`{setting: Interval}` (`config.intervals({"lr": "(0, inf)"})`): where each traced number must lie (population-based training keeps
    perturbed settings inside)"""
    concurrent_runs: int = CONCURRENT_RUNS
    """runs a CPU device holds from which XLA:CPU's concurrency-optimised scheduler runs its program
    faster (`distributed.wants_cpu_scheduler`)"""


_registered: dict[str, Algorithm] = {}


def register(algorithm: Algorithm) -> None:
    """Adds an algorithm for this process (entry points do it for installed packages)."""
    _registered[algorithm.name] = algorithm


def names() -> list[str]:
    """Every algorithm name known, from entry points and `register`."""
    return sorted(set(entry_points(ENTRY_POINT_GROUP)) | set(_registered))


def get(name: str) -> Algorithm:
    """The algorithm published as `name`; ConfigError naming the known ones otherwise."""
    if name not in _registered:
        eps = entry_points(ENTRY_POINT_GROUP)
        if name not in eps:
            close = difflib.get_close_matches(name, names(), n=2, cutoff=0.5)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise ConfigError(f"unknown algorithm {name!r}{hint}; choose one of {', '.join(names())}")
        algorithm = eps[name].load()
        if not isinstance(algorithm, Algorithm):
            raise ConfigError(f"entry point {name!r} of {ENTRY_POINT_GROUP} is {type(algorithm).__name__}, "
                              "not a pjrl_agents.algorithms.contract.Algorithm")
        _registered[name] = algorithm
    return _registered[name]
