"""`Env` (one environment) and `VecEnv` (a batch with same-step auto-reset)."""
from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from pjrl_envs.types import TimeStep


class RenderError(ValueError):
    """The env cannot draw to the file asked for; the message says what it can draw to."""


def check_suffix(name: str, suffixes: tuple[str, ...], path: str | os.PathLike) -> None:
    """Raises `RenderError` in one line unless `path`'s suffix is one of `suffixes`."""
    suffix = Path(path).suffix.lower()
    if suffix not in suffixes:
        raise RenderError(f"cannot draw {name} to {suffix or 'a file without a suffix'}; "
                          f"this env draws to: {', '.join(suffixes) or '(none)'}")


class Env(abc.ABC):
    """One functional environment. No auto-reset: `step` after an end is undefined.

    Subclasses set `observation_space` and `action_space` and implement
    `reset(key) -> (state, TimeStep)` and `step(state, action, key) -> (state, TimeStep)`,
    where `state` is any pytree and nothing that changes lives on `self`.
    `final_obs` equals `obs`; the auto-reset wrapper fills it in.
    """

    observation_space: Any
    action_space: Any
    name: str = ""
    """the env's name as `make` takes it ("lib:id"); empty when it has none"""
    max_episode_steps: int | None = None
    """the env's own time limit in steps, None if it has none or it is unknown"""
    render_suffixes: tuple[str, ...] = ()
    """file suffixes (lower case, with the dot) that `render` can draw an episode to"""

    @abc.abstractmethod
    def reset(self, key: jax.Array) -> tuple[Any, TimeStep]: ...

    @abc.abstractmethod
    def step(self, state: Any, action: jax.Array, key: jax.Array) -> tuple[Any, TimeStep]: ...

    def to_vec(self, num_envs: int, resets: int | None = None) -> VecEnv:
        """`num_envs` copies with same-step auto-reset; `resets` bounds the resets computed per step
        (see `AutoResetVecEnv`)."""
        return AutoResetVecEnv(self, num_envs, resets)

    def check_render(self, path: str | os.PathLike) -> None:
        """Raises `RenderError` (or `MissingLibraryError`) unless `render` can draw to `path`; runs nothing."""
        check_suffix(self.name or type(self).__name__, self.render_suffixes, path)

    def render(self, states: Any, path: str | os.PathLike) -> None:
        """Draws one episode to `path`: `states` are this env's states stacked over time, leaves `(T, ...)`."""
        del states
        self.check_render(path)
        raise NotImplementedError(f"{type(self).__name__} declares render_suffixes but does not render")


class VecEnv(abc.ABC):
    """A batch of `num_envs` environments with same-step auto-reset.

    Every `TimeStep` leaf has a leading `(num_envs,)` axis. When an episode ends
    on a step, that step's `obs` is the first observation of the next episode and
    `final_obs` is the last observation of the ended one. Spaces describe one env.
    """

    num_envs: int
    observation_space: Any
    action_space: Any
    name: str = ""
    """the env's name as `make` takes it ("lib:id"); empty when it has none"""
    host_callbacks: bool = False
    """True when `reset`/`step` call back into the host (a pool outside JAX, as envpool's):
    such an env lives in one process, which drives one device; training reads this
    instead of looking inside `reset`"""
    max_episode_steps: int | None = None
    """the env's own time limit in steps, None if it has none or it is unknown"""
    render_suffixes: tuple[str, ...] = ()
    """file suffixes (lower case, with the dot) that `render` can draw an episode to"""

    @abc.abstractmethod
    def reset(self, key: jax.Array) -> tuple[Any, TimeStep]: ...

    @abc.abstractmethod
    def step(self, state: Any, action: jax.Array, key: jax.Array) -> tuple[Any, TimeStep]: ...

    @property
    def unwrapped(self) -> VecEnv:
        return self

    def observation(self, state: Any, obs: Any) -> Any:
        """What this env would hand the agent for `obs`, a raw observation of the unwrapped env.

        `obs` may have any leading batch axes (none for one observation). Only the
        statistics in `state` are read; nothing is updated. Wrappers that change
        observations override it; a bare env returns `obs` unchanged.
        """
        del state
        return obs

    def carry_statistics(self, fresh_state: Any, trained_state: Any) -> Any:
        """`fresh_state` (from a new `reset`) with the running statistics of `trained_state` copied in.

        Both come from this same env (wrappers included); used to evaluate a trained
        policy with the normalisers it was trained with. A bare env has none.
        """
        del trained_state
        return fresh_state

    def check_render(self, path: str | os.PathLike) -> None:
        """Raises `RenderError` (or `MissingLibraryError`) unless `render` can draw to `path`; runs nothing."""
        check_suffix(self.name or type(self).__name__, self.render_suffixes, path)

    def render(self, states: Any, path: str | os.PathLike) -> None:
        """Draws env 0's episode to `path` (parent folders are created).

        `states` are this env's states stacked over time, leaves `(T, num_envs, ...)`:
        what a `lax.scan` over `step` collects when it keeps the state before each step.
        """
        del states
        self.check_render(path)
        raise NotImplementedError(f"{type(self).__name__} declares render_suffixes but does not render")


def _select(done: jax.Array, on_done: Any, otherwise: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(done, a, b), on_done, otherwise)


class AutoResetVecEnv(VecEnv):
    """Turns a JAX-native `Env` into a `VecEnv` by `vmap` plus same-step auto-reset.

    By default every env computes a fresh reset on every step and keeps it where its
    episode ended (as gymnax's own `step` does). With `resets=k < num_envs`, a step
    computes only `k` resets for the whole batch and hands them out, in env order, to
    the envs whose episodes ended on it: for envs whose reset is costly (Craftax
    generates a world) and episodes long beside `num_envs / k` steps. Should more
    than `k` end on one step, the later ones reuse those `k` initial states in turn.
    """

    def __init__(self, env: Env, num_envs: int, resets: int | None = None):
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if resets is not None and not 1 <= int(resets) <= int(num_envs):
            raise ValueError(f"resets must be between 1 and num_envs={num_envs}, got {resets}")
        self.env = env
        self.num_envs = int(num_envs)
        self.resets = None if resets is None or int(resets) == int(num_envs) else int(resets)
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

    def _step_one(self, state, action, keys):
        step_key, reset_key = keys[0], keys[1]
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
        if self.resets is None:
            # each env's step and reset keys in one draw (one hash for the step, not one per level)
            return jax.vmap(self._step_one)(state, action, jax.random.split(key, (self.num_envs, 2)))
        keys = jax.random.split(key, self.num_envs + self.resets)
        state, ts = jax.vmap(self.env.step)(state, action, keys[:self.num_envs])
        fresh_state, fresh = jax.vmap(self.env.reset)(keys[self.num_envs:])
        done = ts.terminated | ts.truncated
        which = (jnp.cumsum(done) - 1) % self.resets  # the i-th env to end takes reset i (mod k)

        def select(on_done, otherwise):
            on_done = on_done[which]
            return jnp.where(done.reshape(done.shape + (1,) * (on_done.ndim - 1)), on_done, otherwise)

        state = jax.tree.map(select, fresh_state, state)
        obs = jax.tree.map(select, fresh.obs, ts.obs)
        return state, ts._replace(obs=obs, final_obs=ts.obs, action_mask=select(fresh.action_mask, ts.action_mask))

    # The wrapped env's values, read-only: VecEnv declares them as plain attributes, which envs set;
    # nothing sets a wrapper's, so mypy's rule against read-only overrides is waived for these.
    @property
    def name(self) -> str:  # type: ignore[override]
        return self.env.name

    @property
    def max_episode_steps(self) -> int | None:  # type: ignore[override]
        return self.env.max_episode_steps

    @property
    def render_suffixes(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.env.render_suffixes

    def check_render(self, path):
        self.env.check_render(path)

    def render(self, states, path):
        self.env.render(jax.tree.map(lambda x: x[:, 0], states), path)  # env 0: (T, num_envs, ...) -> (T, ...)


def _zero_action(space):
    return jnp.zeros(space.shape, space.dtype)
