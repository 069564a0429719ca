"""Checkpoints of a run's whole training state, written atomically by orbax-checkpoint.

A checkpoint holds every seed's (and sweep member's) agent state: parameters,
optimiser state, env state (normaliser statistics included), RNG keys, update
count and the traced config. orbax writes each step to a temporary directory and
renames it when complete, so a crash mid-write leaves the previous one intact.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import jax


class CheckpointError(RuntimeError):
    """No usable checkpoint where one was asked for."""


def _ocp():
    try:
        import orbax.checkpoint as ocp
    except ImportError as e:  # pragma: no cover - part of the pinned install
        raise CheckpointError("checkpoints need orbax-checkpoint: pip install 'orbax-checkpoint==0.12.8'") from e
    return ocp


class Checkpointer:
    """Saves and restores run states under `run_dir/checkpoints/<update>`; keeps the last `keep`."""

    def __init__(self, run_dir: str | Path, keep: int = 2):
        ocp = _ocp()
        self.directory = Path(run_dir).resolve() / "checkpoints"
        self._ocp = ocp
        self._manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                                 enable_async_checkpointing=False))

    def save(self, update: int, state: Any) -> None:
        self._manager.save(int(update), args=self._ocp.args.StandardSave(state), force=True)
        self._manager.wait_until_finished()

    def latest(self) -> int | None:
        return self._manager.latest_step()

    def restore(self, like: Any, update: int | None = None) -> tuple[int, Any]:
        """The state at `update` (default: latest), shaped like the abstract state `like`."""
        update = self.latest() if update is None else update
        if update is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        # unsharded leaves come back whole on this process's first device, whatever layout wrote them
        here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None) or here), like)
        try:
            state = self._manager.restore(update, args=self._ocp.args.StandardRestore(abstract))
        except Exception as e:  # noqa: BLE001 - any failure means the checkpoint is unusable
            raise CheckpointError(f"checkpoint {self.directory / str(update)} cannot be read "
                                  f"({type(e).__name__}: {str(e)[:200]})") from e
        return update, state

    def close(self) -> None:
        self._manager.close()


def has_checkpoint(run_dir: str | Path) -> bool:
    d = Path(run_dir) / "checkpoints"
    return d.is_dir() and any(p.name.isdigit() for p in d.iterdir())
