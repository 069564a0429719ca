"""`Env` (one environment) and `VecEnv` (a batch with same-step auto-reset)."""
from __future__ import annotations

import abc
from typing import Any

import jax
import jax.numpy as jnp

from pjrl_envs.types import TimeStep


class Env(abc.ABC):
    """One functional environment. No auto-reset: `step` after an end is undefined.

    Subclasses set `observation_space` and `action_space` and implement
    `reset(key) -> (state, TimeStep)` and `step(state, action, key) -> (state, TimeStep)`,
    where `state` is any pytree and nothing that changes lives on `self`.
    `final_obs` equals `obs`; the auto-reset wrapper fills it in.
    """

    observation_space: Any
    action_space: Any

    @abc.abstractmethod
    def reset(self, key: jax.Array) -> tuple[Any, TimeStep]: ...

    @abc.abstractmethod
    def step(self, state: Any, action: jax.Array, key: jax.Array) -> tuple[Any, TimeStep]: ...

    def to_vec(self, num_envs: int) -> "VecEnv":
        return AutoResetVecEnv(self, num_envs)


class VecEnv(abc.ABC):
    """A batch of `num_envs` environments with same-step auto-reset.

    Every `TimeStep` leaf has a leading `(num_envs,)` axis. When an episode ends
    on a step, that step's `obs` is the first observation of the next episode and
    `final_obs` is the last observation of the ended one. Spaces describe one env.
    """

    num_envs: int
    observation_space: Any
    action_space: Any

    @abc.abstractmethod
    def reset(self, key: jax.Array) -> tuple[Any, TimeStep]: ...

    @abc.abstractmethod
    def step(self, state: Any, action: jax.Array, key: jax.Array) -> tuple[Any, TimeStep]: ...

    @property
    def unwrapped(self) -> "VecEnv":
        return self


def _select(done: jax.Array, on_done: Any, otherwise: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(done, a, b), on_done, otherwise)


class AutoResetVecEnv(VecEnv):
    """Turns a JAX-native `Env` into a `VecEnv` by `vmap` plus same-step auto-reset."""

    def __init__(self, env: Env, num_envs: int):
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.env = env
        self.num_envs = int(num_envs)
        self.observation_space = env.observation_space
        self.action_space = env.action_space
        # Reset returns the same info keys as step, zero-filled, so a TimeStep
        # can be a scan carry.
        key = jax.random.PRNGKey(0)
        state_shape = jax.eval_shape(lambda k: env.reset(k)[0], key)
        action_shape = jax.eval_shape(lambda k: _zero_action(env.action_space), key)
        self._info_shape = jax.eval_shape(lambda s, a, k: env.step(s, a, k)[1].info,
                                          state_shape, action_shape, key)

    def _reset_one(self, key):
        state, ts = self.env.reset(key)
        info = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), self._info_shape)
        return state, ts._replace(info=info)

    def _step_one(self, state, action, key):
        step_key, reset_key = jax.random.split(key)
        state, ts = self.env.step(state, action, step_key)
        reset_state, reset_ts = self.env.reset(reset_key)
        done = ts.terminated | ts.truncated
        state = _select(done, reset_state, state)
        obs = _select(done, reset_ts.obs, ts.obs)
        mask = jnp.where(done, reset_ts.action_mask, ts.action_mask)
        return state, ts._replace(obs=obs, final_obs=ts.obs, action_mask=mask)

    def reset(self, key):
        return jax.vmap(self._reset_one)(jax.random.split(key, self.num_envs))

    def step(self, state, action, key):
        return jax.vmap(self._step_one)(state, action, jax.random.split(key, self.num_envs))


def _zero_action(space):
    return jnp.zeros(space.shape, space.dtype)
