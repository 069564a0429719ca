"""Action and observation spaces: static descriptions, jittable helpers."""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class Discrete:
    """Integers `0 .. n-1`."""

    n: int
    dtype: Any = jnp.int32

    @property
    def shape(self) -> tuple:
        return ()

    def sample(self, key: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """A uniform action; with `mask` (n,) bool, uniform over the True entries."""
        logits = jnp.zeros((self.n,)) if mask is None else jnp.where(mask, 0.0, -jnp.inf)
        return jax.random.categorical(key, logits).astype(self.dtype)

    def contains(self, x: jax.Array) -> jax.Array:
        return jnp.all((x >= 0) & (x < self.n))


@dataclasses.dataclass(frozen=True, eq=False)
class MultiDiscrete:
    """A vector of independent categorical choices, entry i in `0 .. nvec[i]-1`."""

    nvec: tuple
    dtype: Any = jnp.int32

    @property
    def shape(self) -> tuple:
        return (len(self.nvec),)

    def sample(self, key: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """Uniform per entry; `mask` is (sum(nvec),) bool, one block per entry."""
        keys = jax.random.split(key, len(self.nvec))
        out, start = [], 0
        for k, n in zip(keys, self.nvec):
            m = None if mask is None else mask[start:start + n]
            out.append(Discrete(int(n)).sample(k, m))
            start += n
        return jnp.stack(out).astype(self.dtype)

    def contains(self, x: jax.Array) -> jax.Array:
        return jnp.all((x >= 0) & (x < jnp.asarray(self.nvec)))


@dataclasses.dataclass(frozen=True, eq=False)
class Box:
    """A real (or integer) array with elementwise bounds."""

    low: Any
    high: Any
    shape: tuple
    dtype: Any = jnp.float32

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "low", np.broadcast_to(np.asarray(self.low, np.float32), self.shape))
        object.__setattr__(self, "high", np.broadcast_to(np.asarray(self.high, np.float32), self.shape))

    def sample(self, key: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """Uniform within finite bounds; unbounded dimensions draw a standard normal."""
        del mask
        low, high = jnp.asarray(self.low), jnp.asarray(self.high)
        finite = jnp.isfinite(low) & jnp.isfinite(high)
        u = jax.random.uniform(key, self.shape, minval=jnp.where(finite, low, 0.0),
                               maxval=jnp.where(finite, high, 1.0))
        n = jax.random.normal(key, self.shape)
        return jnp.where(finite, u, n).astype(self.dtype)

    def contains(self, x: jax.Array) -> jax.Array:
        return jnp.all((x >= self.low) & (x <= self.high))

    def __repr__(self) -> str:
        lows, highs = np.unique(self.low), np.unique(self.high)
        lo = lows[0] if lows.size == 1 else "..."
        hi = highs[0] if highs.size == 1 else "..."
        return f"Box(low={lo}, high={hi}, shape={self.shape}, dtype={np.dtype(self.dtype).name})"


Space = Discrete | MultiDiscrete | Box


def is_space(x: Any) -> bool:
    return isinstance(x, (Discrete, MultiDiscrete, Box))


def mask_shape(space: Space) -> tuple:
    """Shape of one env's `action_mask` for this action space."""
    if isinstance(space, Discrete):
        return (space.n,)
    if isinstance(space, MultiDiscrete):
        return (int(sum(space.nvec)),)
    return ()


def no_mask(space: Space) -> jax.Array:
    """The all-True mask of an env that masks nothing."""
    return jnp.ones(mask_shape(space), jnp.bool_)


def tree_spaces(tree: Any) -> list:
    """Leaves of a (possibly nested) observation space."""
    return jax.tree.leaves(tree, is_leaf=is_space)


def zeros(space_tree: Any, batch: tuple = ()) -> Any:
    """A zero observation (or action) for a space pytree, with optional batch dims."""
    return jax.tree.map(lambda s: jnp.zeros(batch + s.shape, s.dtype), space_tree, is_leaf=is_space)
