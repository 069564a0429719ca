"""Checkpoints of a run's whole training state, written atomically by orbax-checkpoint.

A checkpoint holds every seed's (and sweep member's) agent state: parameters,
optimiser state, env state (normaliser statistics included), RNG keys, update
count and the traced config. orbax writes each step to a temporary directory and
renames it when complete, so a crash mid-write leaves the previous one intact.
Arrays of size zero (some envs keep them in their state) are not written; they
are made again, empty, on restore. Restoring falls back from a checkpoint that
cannot be read to the newest older one that can, and says so.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np


class CheckpointError(RuntimeError):
    """No usable checkpoint (or run directory) where one was asked for; the message says what to do."""


def _ocp():
    try:
        import orbax.checkpoint as ocp
    except ImportError as e:  # pragma: no cover - part of the pinned install
        raise CheckpointError("checkpoints need orbax-checkpoint: pip install 'orbax-checkpoint==0.12.8'") from e
    return ocp


def steps(run_dir: str | Path) -> list[int]:
    """The updates at which `run_dir` holds a complete checkpoint, oldest first."""
    d = Path(run_dir) / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def has_checkpoint(run_dir: str | Path) -> bool:
    return bool(steps(run_dir))


class Checkpointer:
    """Saves and restores run states under `run_dir/checkpoints/<update>`; keeps the last `keep`."""

    def __init__(self, run_dir: str | Path, keep: int = 2):
        ocp = _ocp()
        self.directory = Path(run_dir).resolve() / "checkpoints"
        self._ocp = ocp
        with _quiet("absl"):  # it reads every checkpoint's metadata, logging the unreadable ones as errors
            self._manager = ocp.CheckpointManager(
                self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                                     enable_async_checkpointing=False))
        self.skipped: list[tuple[int, str]] = []
        """checkpoints the last restore passed over, newest first, each with why it could not be read"""

    def save(self, update: int, state: Any) -> None:
        state = jax.tree.map(lambda x: None if np.size(x) == 0 else x, state)  # orbax refuses empty arrays
        with _quiet("absl"):  # it warns when it removes the unfinished write of a killed run
            self._manager.save(int(update), args=self._ocp.args.StandardSave(state), force=True)
        self._manager.wait_until_finished()

    def latest(self) -> int | None:
        return self._manager.latest_step()

    def restore(self, like: Any, update: int | None = None) -> tuple[int, Any]:
        """`(update, state)` of the checkpoint at `update`, or else of the newest readable one, shaped like
        the abstract state `like`. Those passed over are in `self.skipped`."""
        candidates = [update] if update is not None else sorted(self._manager.all_steps(), reverse=True)
        if not candidates:
            raise CheckpointError(f"{self.directory.parent} holds no checkpoint yet")
        self.skipped = []
        for step in candidates:
            try:
                with _quiet("absl"):  # orbax logs each unreadable file as an error; the caller reports it
                    return step, self._restore(like, step)
            except Exception as e:  # noqa: BLE001 - any failure means this checkpoint is unusable
                reason = " ".join(str(e).split())[:120] or type(e).__name__
                self.skipped.append((step, f"{type(e).__name__}: {reason}"))
        step, reason = self.skipped[0]
        raise CheckpointError(f"no checkpoint of {self.directory.parent} can be read (the newest, {step}: {reason}); "
                              "they may be damaged or from different settings")

    def reload(self) -> None:
        """Reads the checkpoint directory again (after another process changed it)."""
        with _quiet("absl"):
            self._manager.reload()

    def set_aside_skipped(self) -> Path | None:
        """Moves the checkpoints the last restore passed over to `RUN/unreadable-checkpoints/` (kept, not
        deleted), so training on from an older one can write its updates again. Returns where, if any."""
        if not self.skipped:
            return None
        aside = self.directory.parent / "unreadable-checkpoints"
        aside.mkdir(exist_ok=True)
        for step, _ in self.skipped:
            target = aside / str(step)
            while target.exists():
                target = target.with_name(target.name + "+")
            (self.directory / str(step)).rename(target)
        with _quiet("absl"):
            self._manager.reload()
        return aside

    def _restore(self, like: Any, step: int) -> Any:
        # unsharded leaves come back whole on this process's first device, whatever layout wrote them
        here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = jax.tree.map(
            lambda x: None if np.prod(x.shape) == 0 else
            jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None) or here), like)
        state = self._manager.restore(step, args=self._ocp.args.StandardRestore(abstract))
        is_none = lambda x: x is None  # None nodes of `like` and the empty arrays left out line up
        leaves, treedef = jax.tree.flatten(like, is_leaf=is_none)
        restored = jax.tree.leaves(state, is_leaf=is_none)
        if len(restored) != len(leaves):
            raise ValueError(f"it holds {len(restored)} entries where this run has {len(leaves)}")
        out = []
        for want, got in zip(leaves, restored):
            if want is None:
                pass
            elif np.prod(want.shape) == 0:
                got = jax.device_put(np.zeros(want.shape, want.dtype), getattr(want, "sharding", None) or here)
            elif got is None or tuple(got.shape) != tuple(want.shape):
                raise ValueError(f"an array of shape {getattr(got, 'shape', None)} where this run has "
                                 f"{tuple(want.shape)}")
            out.append(got)
        return jax.tree.unflatten(treedef, out)

    def close(self) -> None:
        with _quiet("absl"):
            self._manager.close()


@contextlib.contextmanager
def _quiet(logger: str):
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


class RunLock:
    """An exclusive lock on a run directory (`RUN/.lock`), held while a process trains it.

    Released when the process ends, however it ends; a second process that asks
    for it while it is held gets a CheckpointError naming the holder.
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / ".lock"
        self._file = open(self.path, "a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            raise CheckpointError(f"{run_dir} is in use by pjrl process {holder}; wait for it to finish "
                                  "(or stop it), or choose another --out") from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(str(os.getpid()))
        self._file.flush()

    def release(self) -> None:
        if not self._file.closed:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
