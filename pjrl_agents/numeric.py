"""Host-side numbers every layer reads: means that skip NaN, finiteness, and JSON without NaN."""
from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def nanmean(x) -> float:
    """The mean of the finite entries of `x`; NaN where there are none."""
    x = np.asarray(x, np.float64)
    seen = np.isfinite(x)
    return float(x[seen].mean()) if seen.any() else float("nan")


def all_finite(tree: Any) -> jax.Array:
    """Whether every floating-point leaf of `tree` is finite (a `()` bool; jittable)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def strict_json(x):
    """`x` with every non-finite float as None (JSON has no NaN)."""
    if isinstance(x, dict):
        return {k: strict_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [strict_json(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x


FINAL_WINDOW = 20
"""a run's final return is its mean over the last 1/FINAL_WINDOW of its updates (5 %)"""


def final_returns(episode_return: Any, window: int = FINAL_WINDOW, xp: Any = np) -> Any:
    """Mean episodic return over the last 1/`window` of updates, per run; NaN for a run none of whose
    episodes ended there. Input `(runs, updates)`, NaN before the first episode ends. `xp=jax.numpy`
    computes it inside a traced program (an evolution strategy's fitness), in the input's precision."""
    x = np.asarray(episode_return, np.float64) if xp is np else episode_return
    tail = x[:, -max(1, x.shape[1] // window):]
    seen = xp.isfinite(tail)
    return xp.where(seen.any(1), xp.where(seen, tail, 0.0).sum(1) / xp.maximum(seen.sum(1), 1), xp.nan)


def run_index(member: int, seed: int, num_seeds: int) -> int:
    """Runs are laid out member-major: run r is seed r % num_seeds of sweep member r // num_seeds."""
    return member * num_seeds + seed


def member_seed(run: int, num_seeds: int) -> tuple[int, int]:
    """`(member, seed)` of run `run` (see `run_index`)."""
    return run // num_seeds, run % num_seeds
