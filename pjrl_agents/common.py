"""Pieces every agent shares: config errors, the standard wrapper stack, episode metrics."""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from pjrl_envs import spaces, wrappers
from pjrl_envs.core import VecEnv


class ConfigError(ValueError):
    """A config that cannot work; the message names the field and what would work."""


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

    Where none ended, the previous values carry over, so curves stay defined.
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
