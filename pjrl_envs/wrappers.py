"""Wrappers that keep their statistics in the env state, so they jit, scan and vmap.

A wrapper that keeps statistics (`own_state = True`) has a struct for its state
whose `inner` field holds the wrapped env's state; the others pass the wrapped
env's state through. Order matters: `EpisodeStatistics` innermost records raw
rewards; normalisers go outside it.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from pjrl_envs import spaces
from pjrl_envs.core import Env, VecEnv


class VecEnvWrapper(VecEnv):
    """Passes everything through to `self.env`; subclasses override what they change."""

    own_state: bool = False
    """True when this wrapper's state is a struct with the wrapped env's state in `.inner`;
    False when it hands the wrapped env's state through as it is"""

    def __init__(self, env: VecEnv):
        self.env = env
        self.num_envs = env.num_envs
        self.observation_space = env.observation_space
        self.action_space = env.action_space

    def reset(self, key):
        return self.env.reset(key)

    def step(self, state, action, key):
        return self.env.step(state, action, key)

    @property
    def unwrapped(self) -> VecEnv:
        return self.env.unwrapped

    def inner_state(self, state: Any) -> Any:
        """The wrapped env's part of this wrapper's `state` (with any leading axes)."""
        return state.inner if self.own_state else state

    def _with_inner(self, state: Any, inner: Any) -> Any:
        return state.replace(inner=inner) if self.own_state else inner

    # The wrapped env's values, read-only: VecEnv declares them as plain attributes, which envs set;
    # nothing sets a wrapper's, so mypy's rule against read-only overrides is waived for these.
    @property
    def name(self) -> str:  # type: ignore[override]
        return self.env.name

    @property
    def host_callbacks(self) -> bool:  # type: ignore[override]
        return self.env.host_callbacks

    @property
    def max_episode_steps(self) -> int | None:  # type: ignore[override]
        return self.env.max_episode_steps

    @property
    def render_suffixes(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.env.render_suffixes

    def observation(self, state, obs):
        return self.env.observation(self.inner_state(state), obs)

    def carry_statistics(self, fresh_state, trained_state):
        inner = self.env.carry_statistics(self.inner_state(fresh_state), self.inner_state(trained_state))
        return self._with_inner(fresh_state, inner)

    def check_render(self, path: str | os.PathLike) -> None:
        self.env.check_render(path)

    def render(self, states, path: str | os.PathLike) -> None:
        self.env.render(self.inner_state(states), path)

    def __getattr__(self, name):
        if name == "env":  # not yet set: avoid infinite recursion
            raise AttributeError(name)
        return getattr(self.env, name)


# ---------------------------------------------------------------- episode statistics


@struct.dataclass
class EpisodeStatisticsState:
    inner: Any
    episode_return: jax.Array  # (B,) float32, running
    episode_length: jax.Array  # (B,) int32, running


class EpisodeStatistics(VecEnvWrapper):
    """Adds `info["episode_return"]`, `["episode_length"]` and `["returned_episode"]`.

    On a step where an episode ends, `returned_episode` is True and the other two
    hold that episode's totals; agents average them where the flag is set.
    """

    own_state = True

    def reset(self, key):
        inner, ts = self.env.reset(key)
        zero_f = jnp.zeros((self.num_envs,), jnp.float32)
        zero_i = jnp.zeros((self.num_envs,), jnp.int32)
        info = {**ts.info, "episode_return": zero_f, "episode_length": zero_i,
                "returned_episode": jnp.zeros((self.num_envs,), jnp.bool_)}
        return EpisodeStatisticsState(inner, zero_f, zero_i), ts._replace(info=info)

    def step(self, state, action, key):
        inner, ts = self.env.step(state.inner, action, key)
        ret = state.episode_return + ts.reward
        length = state.episode_length + 1
        done = ts.terminated | ts.truncated
        info = {**ts.info, "episode_return": ret, "episode_length": length, "returned_episode": done}
        state = EpisodeStatisticsState(inner, jnp.where(done, 0.0, ret), jnp.where(done, 0, length))
        return state, ts._replace(info=info)


# ---------------------------------------------------------------- running moments


@struct.dataclass
class RunningMoments:
    """Mean and variance of everything seen so far (Chan et al.'s parallel update)."""

    mean: Any
    var: Any
    count: jax.Array  # () float32

    @classmethod
    def create(cls, example: Any) -> RunningMoments:
        """Zero mean, unit variance, shaped like `example` (one sample, no batch axis)."""
        mean = jax.tree.map(lambda x: jnp.zeros(jnp.shape(x), jnp.float32), example)
        var = jax.tree.map(lambda x: jnp.ones(jnp.shape(x), jnp.float32), example)
        return cls(mean, var, jnp.asarray(1e-4, jnp.float32))

    def update(self, batch: Any) -> RunningMoments:
        """`batch` leaves have one leading batch axis over which moments are taken."""
        n = jax.tree.leaves(batch)[0].shape[0]
        total = self.count + n

        def one(mean, var, x):
            x = x.astype(jnp.float32)
            delta = x.mean(0) - mean
            m2 = var * self.count + x.var(0) * n + jnp.square(delta) * self.count * n / total
            return mean + delta * n / total, m2 / total

        pairs = jax.tree.map(one, self.mean, self.var, batch)
        is_pair = lambda p: isinstance(p, tuple)
        mean = jax.tree.map(lambda p: p[0], pairs, is_leaf=is_pair)
        var = jax.tree.map(lambda p: p[1], pairs, is_leaf=is_pair)
        return RunningMoments(mean, var, total)


# ---------------------------------------------------------------- observation normalisation


@struct.dataclass
class NormalizeObservationState:
    inner: Any
    moments: RunningMoments


class NormalizeObservation(VecEnvWrapper):
    """Standardises floating-point observation leaves with running statistics.

    Statistics update on every observation returned (reset ones included), then
    `obs` and `final_obs` are both normalised with the updated statistics and
    clipped to `[-clip, clip]`.
    """

    own_state = True

    def __init__(self, env: VecEnv, epsilon: float = 1e-8, clip: float = 10.0):
        super().__init__(env)
        self.epsilon, self.clip = epsilon, clip
        self.observation_space = jax.tree.map(self._space, env.observation_space, is_leaf=spaces.is_space)

    def _space(self, s):
        if isinstance(s, spaces.Box):
            return spaces.Box(-self.clip, self.clip, s.shape, jnp.float32)
        return s

    def _normalize(self, moments, obs):
        def one(x, mean, var):
            y = (x.astype(jnp.float32) - mean) / jnp.sqrt(var + self.epsilon)
            return jnp.clip(y, -self.clip, self.clip)
        return jax.tree.map(one, obs, moments.mean, moments.var)

    def _apply(self, moments, ts):
        moments = moments.update(ts.obs)
        return moments, ts._replace(obs=self._normalize(moments, ts.obs),
                                    final_obs=self._normalize(moments, ts.final_obs))

    def reset(self, key):
        inner, ts = self.env.reset(key)
        moments = RunningMoments.create(jax.tree.map(lambda x: x[0], ts.obs))
        moments, ts = self._apply(moments, ts)
        return NormalizeObservationState(inner, moments), ts

    def step(self, state, action, key):
        inner, ts = self.env.step(state.inner, action, key)
        moments, ts = self._apply(state.moments, ts)
        return NormalizeObservationState(inner, moments), ts

    def observation(self, state, obs):
        return self._normalize(state.moments, self.env.observation(state.inner, obs))

    def carry_statistics(self, fresh_state, trained_state):
        inner = self.env.carry_statistics(fresh_state.inner, trained_state.inner)
        return fresh_state.replace(inner=inner, moments=trained_state.moments)


# ---------------------------------------------------------------- reward normalisation


@struct.dataclass
class NormalizeRewardState:
    inner: Any
    discounted_return: jax.Array  # (B,) float32
    moments: RunningMoments  # of the discounted return


class NormalizeReward(VecEnvWrapper):
    """Scales rewards by the running std of the discounted return (as gym and Brax do).

    `reward / sqrt(var(G) + epsilon)`, clipped to `[-clip, clip]`, where
    `G_t = gamma * G_{t-1} + r_t` restarts after every episode end.
    """

    own_state = True

    def __init__(self, env: VecEnv, gamma: float = 0.99, epsilon: float = 1e-8, clip: float = 10.0):
        super().__init__(env)
        self.gamma, self.epsilon, self.clip = gamma, epsilon, clip

    def reset(self, key):
        inner, ts = self.env.reset(key)
        state = NormalizeRewardState(inner, jnp.zeros((self.num_envs,), jnp.float32),
                                     RunningMoments.create(jnp.zeros(())))
        return state, ts

    def step(self, state, action, key):
        inner, ts = self.env.step(state.inner, action, key)
        discounted = state.discounted_return * self.gamma + ts.reward
        moments = state.moments.update(discounted)
        reward = jnp.clip(ts.reward / jnp.sqrt(moments.var + self.epsilon), -self.clip, self.clip)
        done = ts.terminated | ts.truncated
        state = NormalizeRewardState(inner, jnp.where(done, 0.0, discounted), moments)
        return state, ts._replace(reward=reward.astype(jnp.float32))

    def carry_statistics(self, fresh_state, trained_state):
        inner = self.env.carry_statistics(fresh_state.inner, trained_state.inner)
        return fresh_state.replace(inner=inner, moments=trained_state.moments)


# ---------------------------------------------------------------- actions and observations


class ClipAction(VecEnvWrapper):
    """Clips continuous actions to the action space's bounds before the env sees them."""

    def __init__(self, env: VecEnv):
        super().__init__(env)
        if not isinstance(env.action_space, spaces.Box):
            raise TypeError(f"ClipAction needs a Box action space, got {env.action_space}")
        self._low = jnp.asarray(env.action_space.low)
        self._high = jnp.asarray(env.action_space.high)

    def step(self, state, action, key):
        return self.env.step(state, jnp.clip(action, self._low, self._high), key)


class ObservationWrapper(VecEnvWrapper):
    """Changes every observation (`obs`, `final_obs`, and `observation()`) by `self.map(obs)`."""

    def map(self, obs):
        raise NotImplementedError

    def _apply(self, ts):
        return ts._replace(obs=self.map(ts.obs), final_obs=self.map(ts.final_obs))

    def reset(self, key):
        state, ts = self.env.reset(key)
        return state, self._apply(ts)

    def step(self, state, action, key):
        state, ts = self.env.step(state, action, key)
        return state, self._apply(ts)

    def observation(self, state, obs):
        return self.map(self.env.observation(state, obs))


class FlattenObservation(ObservationWrapper):
    """Flattens every observation leaf and concatenates them into one float32 vector."""

    def __init__(self, env: VecEnv):
        super().__init__(env)
        self._leaf_spaces = spaces.tree_spaces(env.observation_space)
        low = np.concatenate([_bounds(s)[0].ravel() for s in self._leaf_spaces])
        high = np.concatenate([_bounds(s)[1].ravel() for s in self._leaf_spaces])
        self.observation_space = spaces.Box(low, high, low.shape, jnp.float32)

    def map(self, obs):
        """Each leaf's space-shaped trailing dims flattened, leading (batch) axes kept."""
        def one(x, space):
            lead = x.shape[:x.ndim - len(space.shape)]
            return x.reshape(lead + (-1,)).astype(jnp.float32)
        return jnp.concatenate([one(x, s) for x, s in zip(jax.tree.leaves(obs), self._leaf_spaces)], axis=-1)


class SelectObservation(ObservationWrapper):
    """Keeps only the entries `indices` of a vector observation (its last axis): a partially observed
    version of a fully observed env, e.g. CartPole's positions without their velocities (0, 2)."""

    def __init__(self, env: VecEnv, indices):
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"SelectObservation needs a vector (1-axis Box) observation, not {space}")
        self.indices = np.asarray(indices, np.int32)
        if self.indices.size == 0 or self.indices.min() < 0 or self.indices.max() >= space.shape[0]:
            raise ValueError(f"indices {list(indices)} must lie in 0..{space.shape[0] - 1}")
        low, high = _bounds(space)
        low, high = np.broadcast_to(low, space.shape), np.broadcast_to(high, space.shape)
        self.observation_space = spaces.Box(low[self.indices], high[self.indices], (self.indices.size,), space.dtype)

    def map(self, obs):
        return obs[..., self.indices]


def _bounds(space) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(space, spaces.Box):
        return np.asarray(space.low, np.float32), np.asarray(space.high, np.float32)
    if isinstance(space, spaces.Discrete):
        return np.zeros((), np.float32), np.full((), space.n - 1, np.float32)
    nvec = np.asarray(space.nvec, np.float32)
    return np.zeros_like(nvec), nvec - 1


# ---------------------------------------------------------------- time limit (one env)


@struct.dataclass
class TimeLimitState:
    inner: Any
    steps: jax.Array  # () int32


class TimeLimit(Env):
    """Truncates an `Env`'s episodes after `max_steps` steps (unless they terminate first)."""

    def __init__(self, env: Env, max_steps: int):
        if int(max_steps) < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.env, self.max_steps = env, int(max_steps)
        self.observation_space, self.action_space = env.observation_space, env.action_space
        self.name, self.render_suffixes = env.name, env.render_suffixes
        limit = env.max_episode_steps
        self.max_episode_steps = self.max_steps if limit is None else min(limit, self.max_steps)

    def reset(self, key):
        inner, ts = self.env.reset(key)
        return TimeLimitState(inner, jnp.zeros((), jnp.int32)), ts

    def step(self, state, action, key):
        inner, ts = self.env.step(state.inner, action, key)
        steps = state.steps + 1
        truncated = (ts.truncated | (steps >= self.max_steps)) & ~ts.terminated
        return TimeLimitState(inner, steps), ts._replace(truncated=truncated)

    def check_render(self, path):
        self.env.check_render(path)

    def render(self, states, path):
        self.env.render(states.inner, path)
