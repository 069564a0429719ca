"""Pieces every agent shares: config fields and defaults, the wrapper stack, the learning-rate
schedule, gradient clipping, the per-update metrics and `make_train`."""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from pjrl_envs import spaces, wrappers
from pjrl_envs.core import VecEnv


class ConfigError(ValueError):
    """A config that cannot work; the message names the field and what would work."""


def static(default):
    """A config field that fixes shapes or the program: static under jit, not sweepable."""
    return struct.field(pytree_node=False, default=default)


def make_config(config_class: type, env_defaults: dict, env_name: str | None, settings: dict) -> Any:
    """`config_class` with the env's defaults (if it has any) and then `settings` applied."""
    names = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(settings) - names)
    if unknown:
        label = config_class.__name__.removesuffix("Config")
        raise ConfigError(f"{label} has no setting {', '.join(unknown)}; settings: {', '.join(sorted(names))}")
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}  # JSON gives lists
    return config_class(**{**env_defaults.get(env_name or "", {}), **settings})


MAX_SIZE = 2**31 - 1
"""the largest size or count a setting may hold: step and update counters are int32 on the device"""


def kind(default) -> str:
    """How a setting with this default is written, in words."""
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "a whole number"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, tuple):
        return "whole numbers, as 64,64"
    return "text"


def check_settings(config: Any, ranges: dict[str, str] | None = None) -> None:
    """Every setting of `config` is of its field's kind, finite, and (for whole numbers) at most MAX_SIZE;
    the numbers named in `ranges` lie in their interval, written `"(0, inf)"`, `"[0, 1]"` and so on.

    Raises ConfigError naming the setting and what would work. Values that are
    arrays (traced or stacked sweeps) are checked where they are concrete.
    """
    for f in dataclasses.fields(config):
        value, default = getattr(config, f.name), f.default
        if hasattr(value, "shape") and hasattr(value, "dtype"):  # an array: check its values as numbers
            try:
                values = [float(v) for v in np.asarray(value).ravel()]
            except Exception:  # noqa: BLE001 - traced: nothing to check here
                continue
        else:
            values = [value]
        for v in values:
            _check_value(f.name, v, default)
            if ranges and f.name in ranges:
                _check_range(f.name, v, ranges[f.name])


def _check_value(name: str, value, default) -> None:
    wrong = ConfigError(f"{name}={value!r}: expected {kind(default)}")
    if isinstance(default, bool):
        if not isinstance(value, (bool, int)) or isinstance(value, int) and value not in (0, 1):
            raise wrong
    elif isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong
        if not math.isfinite(value):
            raise ConfigError(f"{name}={value}: must be a finite number")
        if isinstance(default, int):
            if value != int(value):
                raise ConfigError(f"{name}={value}: must be a whole number")
            if abs(value) > MAX_SIZE:
                raise ConfigError(f"{name}={value:.4g} is too large: at most {MAX_SIZE:,} (step and "
                                  "update counters are 32-bit integers on the device)")
    elif isinstance(default, tuple):
        if not isinstance(value, tuple) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise wrong
        if any(not 1 <= v <= MAX_SIZE for v in value):
            raise ConfigError(f"{name}={','.join(map(str, value))}: every width must be a whole number >= 1")
    elif isinstance(default, str) and not isinstance(value, str):
        raise wrong


def _check_range(name: str, value: float, interval: str) -> None:
    low, high = (float(x) for x in interval[1:-1].split(","))
    low_ok = value > low if interval[0] == "(" else value >= low
    high_ok = value < high if interval[-1] == ")" else value <= high
    if not (low_ok and high_ok):
        raise ConfigError(f"{name}={value:g} is out of range: it must lie in {interval}")


def require_positive(config: Any, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"{name} must be a positive number, got {value!r}")


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def wrap_env(env: VecEnv, normalize_obs: bool = False, normalize_reward: bool = False,
             gamma: float = 0.99) -> VecEnv:
    """Episode statistics (on raw rewards), action clipping for Box actions, normalisers."""
    env = wrappers.EpisodeStatistics(env)
    if isinstance(env.action_space, spaces.Box):
        env = wrappers.ClipAction(env)
    if normalize_obs:
        env = wrappers.NormalizeObservation(env)
    if normalize_reward:
        env = wrappers.NormalizeReward(env, gamma=gamma)
    return env


def episode_metrics(info: dict, last_return: jax.Array, last_length: jax.Array, axis_name: str | None = None):
    """Mean return and length of the episodes that ended in a rollout `(T, B)`.

    Where none ended, the previous values carry over (NaN until the first episode ends: nothing is
    reported before it exists).
    With `axis_name` (under `shard_map`), over the episodes of every device on it.
    Returns `(episode_return, episode_length, episodes)`, each `()`.
    """
    done = info["returned_episode"]
    count = done.sum()
    ret_sum = jnp.where(done, info["episode_return"], 0.0).sum()
    len_sum = jnp.where(done, info["episode_length"], 0).sum()
    if axis_name is not None:
        count, ret_sum, len_sum = jax.lax.psum((count, ret_sum, len_sum), axis_name)
    denom = jnp.maximum(count, 1)
    ret = ret_sum / denom
    length = len_sum / denom
    return (jnp.where(count > 0, ret, last_return), jnp.where(count > 0, length, last_length),
            count.astype(jnp.float32))


def update_metrics(losses: dict, episode: dict, last_return, last_length, axis_name: str | None = None):
    """The scalars every update reports: loss terms averaged over the update's gradient steps, and
    the episodes that ended in its rollout. Returns `(metrics, episode_return, episode_length)`."""
    ep_return, ep_length, episodes = episode_metrics(episode, last_return, last_length, axis_name)
    metrics = {k: v.mean() for k, v in losses.items()}
    if axis_name is not None:
        metrics = jax.lax.pmean(metrics, axis_name)
    metrics.update(episode_return=ep_return, episode_length=ep_length, episodes=episodes)
    return metrics, ep_return, ep_length


def learning_rate(lr, update, num_updates: int, anneal: bool):
    """`lr`, or with `anneal` decayed linearly to zero over `num_updates` (an optax schedule; `lr` may be traced)."""
    if not anneal:
        return lr
    return optax.linear_schedule(init_value=lr, end_value=0.0, transition_steps=num_updates)(update)


def clip_gradients(grads, max_norm):
    """Scales `grads` to global norm at most `max_norm` (optax's rule); `max_norm = 0` leaves them as they are."""
    clipped, _ = optax.clip_by_global_norm(max_norm).update(grads, optax.EmptyState())
    return jax.tree.map(lambda c, g: jnp.where(max_norm > 0, c, g), clipped, grads)


def permutation(key: jax.Array, n: int) -> jax.Array:
    """`jax.random.permutation(key, n)`, the same draw, from a sort of one array instead of two.

    jax sorts `n` random 32-bit keys with the indices alongside; XLA:CPU sorts two arrays through a
    generic comparator, about 4x slower than one array of integers (a PPO update's four orders of 512:
    260 us against 65 us). Here the low bits of each key are replaced by its index and that one array is
    sorted. Two keys that share their high bits (about one draw in 60 at n = 512) are then put in the
    order of their full keys, as jax's stable sort puts them. The result is jax's permutation except
    where three keys share their high bits, below 1e-5 of draws for n <= 1024; larger `n` uses
    jax's own.
    """
    if n < 2 or n > 1024:
        return jax.random.permutation(key, n)
    _, sub = jax.random.split(key)  # jax's one shuffling round for n <= 1024
    bits = jax.random.bits(sub, (n,), jnp.uint32)
    low = jnp.uint32((1 << (n - 1).bit_length()) - 1)
    order = (jnp.sort((bits & ~low) | jnp.arange(n, dtype=jnp.uint32)) & low).astype(jnp.int32)
    full = bits[order]
    swap = ((full[1:] & ~low) == (full[:-1] & ~low)) & (full[1:] < full[:-1])  # pair (i, i + 1) out of order
    swap = swap & ~jnp.concatenate([jnp.zeros(1, bool), swap[:-1]])  # no two swaps share a position
    down = jnp.concatenate([swap, jnp.zeros(1, bool)])  # position i takes i + 1
    up = jnp.concatenate([jnp.zeros(1, bool), swap])  # position i + 1 takes i
    return jnp.where(down, jnp.roll(order, -1), jnp.where(up, jnp.roll(order, 1), order))


def make_train(agent):
    """`train(key, config=None) -> (state, metrics)`: `agent.init` then `agent.num_updates` updates in
    one `lax.scan`; metrics are `(num_updates,)` per name. `config` may carry traced numbers (sweeps);
    its sizes must equal the agent's."""

    def train(key: jax.Array, config=None):
        state = agent.init(key, config)
        return jax.lax.scan(lambda s, _: agent.update(s), state, None, agent.num_updates)

    return train


def numeric_fields(config: Any) -> list[str]:
    """Fields of a config dataclass that are traced (sweepable) numbers."""
    return [f.name for f in dataclasses.fields(config) if f.metadata.get("pytree_node", True)]


def stack_configs(configs: list) -> Any:
    """One config whose numeric leaves are `(M,)` arrays: vmap over it trains M members."""
    first = configs[0]
    static = [f.name for f in dataclasses.fields(first) if not f.metadata.get("pytree_node", True)]
    for c in configs[1:]:
        for name in static:
            if getattr(c, name) != getattr(first, name):
                raise ConfigError(f"{name} fixes array shapes and cannot differ inside one sweep; "
                                  "run separate sweeps for each value")
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x, jnp.float32) for x in xs]), *configs)


def nanmean(x) -> float:
    """The mean of the finite entries of `x`; NaN where there are none."""
    x = np.asarray(x, np.float64)
    seen = np.isfinite(x)
    return float(x[seen].mean()) if seen.any() else float("nan")


def all_finite(tree: Any) -> jax.Array:
    """Whether every floating-point leaf of `tree` is finite (a `()` bool; jittable)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)
