"""`rollout`: a policy run in a `VecEnv` for a fixed number of steps, as one `lax.scan`.

    (state, ts), records = rollout(env, random_policy(env), key, num_steps=100)

Evaluation, rendering, the examples and `check_env` step envs this way (agents scan their own, richer, step).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from pjrl_envs import spaces
from pjrl_envs.core import VecEnv
from pjrl_envs.types import TimeStep

Policy = Callable[[Any, jax.Array, jax.Array], jax.Array]
"""`policy(obs, mask, key) -> action`, batched over the env's `num_envs`"""
Record = Callable[[Any, jax.Array, Any, TimeStep], Any]
"""`record(state_before, action, state_after, timestep) -> pytree` kept for each step"""


def _timestep(state_before, action, state_after, ts: TimeStep) -> TimeStep:
    del state_before, action, state_after
    return ts


def rollout(env: VecEnv, policy: Policy, key: jax.Array, num_steps: int,
            start: tuple | None = None, record: Record | None = None, memory: Any = None) -> tuple[tuple, Any]:
    """Runs `policy` in `env` for `num_steps` steps; pure and jittable.

    `start` is a `(state, timestep)` to continue from; without it the env is
    reset with a key split off `key`. `record` picks what is kept per step (by
    default the step's `TimeStep`). Returns `((state, timestep), records)`: where
    the rollout stopped, and the records with leaves `(num_steps, ...)`.

    A policy with memory (a recurrent one) passes its initial `memory` (leaves
    `(num_envs, ...)`); it is then called `policy(obs, mask, key, memory) ->
    (action, memory)`, each env's memory is zeroed after a step that ends its
    episode, and `start` and the returned carry are `(state, timestep, memory)`.
    """
    if start is None:
        reset_key, key = jax.random.split(key)
        start = env.reset(reset_key)
        if memory is not None:
            start = (*start, memory)
    record = record or _timestep

    def step(carry, step_key):
        state, ts = carry[:2]
        act_key, env_key = jax.random.split(step_key)
        if memory is None:
            action = policy(ts.obs, ts.action_mask, act_key)
        else:
            action, mem = policy(ts.obs, ts.action_mask, act_key, carry[2])
        next_state, next_ts = env.step(state, action, env_key)
        out = (next_state, next_ts)
        if memory is not None:
            ended = next_ts.terminated | next_ts.truncated
            out += (jax.tree.map(lambda m: jnp.where(ended.reshape(ended.shape + (1,) * (m.ndim - 1)), 0, m), mem),)
        return out, record(state, action, next_state, next_ts)

    return jax.lax.scan(step, start, jax.random.split(key, num_steps))


def random_policy(env: VecEnv) -> Policy:
    """A policy drawing uniform actions from `env.action_space`, only legal ones where the env masks."""
    space = env.action_space
    masked = bool(spaces.mask_shape(space))

    def policy(obs, mask, key):
        del obs
        keys = jax.random.split(key, env.num_envs)
        return jax.vmap(space.sample)(keys, mask) if masked else jax.vmap(space.sample)(keys)

    return policy
