"""Gymnax environments as `gymnax:<id>`.

gymnax 1.x separates termination (`step_env`) from the time limit
(`is_truncated`); the adapter keeps them apart, with termination winning when
both happen on the same step. Keyword arguments override the env's params,
e.g. `make("gymnax:CartPole-v1", max_steps_in_episode=200)`.

`render` draws an episode to a GIF with gymnax's own Visualizer (matplotlib),
for the envs in `DRAWN`; gymnasium draws the classic-control ones with pygame.
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import jax
import jax.numpy as jnp

from pjrl_envs import spaces
from pjrl_envs.core import Env
from pjrl_envs.registry import Adapter, MissingLibraryError, OptionError, check_options, require
from pjrl_envs.types import TimeStep

REQUIRES = "gymnax==1.0.1"
RENDER_REQUIRES = "pygame==2.6.1"
# What gymnax 1.0.1's Visualizer draws (it leaves any other env's frames blank).
CLASSIC_CONTROL = ("Acrobot-v1", "CartPole-v1", "Pendulum-v1", "MountainCar-v0", "MountainCarContinuous-v0")
DRAWN = CLASSIC_CONTROL + (
    "Catch-bsuite", "Asterix-MinAtar", "Breakout-MinAtar", "Freeway-MinAtar", "Seaquest-MinAtar",
    "SpaceInvaders-MinAtar", "Pong-misc", "PointRobot-misc", "MetaMaze-misc", "FourRooms-misc")
# Needs a download from the internet at construction time.
NEEDS_NETWORK = ("MNISTBandit-bsuite",)
# gymnax declares observation bounds these envs exceed; the adapter reports them unbounded.
WRONG_OBS_BOUNDS = {
    "MemoryChain-bsuite": "the context entry is -1 or 1 but the space says [0, 2]",
    "UmbrellaChain-bsuite": "the time-left entry goes below 0 on the last step",
    "MetaMaze-misc": "the last-reward entry leaves its declared range",
    "GaussianBandit-misc": "the last reward is Gaussian and goes below 0",
}


def _gymnax():
    return require("gymnax", REQUIRES)


def _pygame():
    """pygame, set to draw off-screen (no display, no sound, no greeting on stdout)."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    for device in ("SDL_AUDIODRIVER", "SDL_VIDEODRIVER"):
        os.environ.setdefault(device, "dummy")
    return require("pygame", RENDER_REQUIRES)


def _convert_space(space, example=None):
    """A gymnax space as a pjrl space; dtypes follow what the env really returns."""
    name = type(space).__name__
    if name == "Discrete":
        dtype = example.dtype if example is not None else jnp.int32
        return spaces.Discrete(int(space.n), dtype)
    if name == "Box":
        dtype = example.dtype if example is not None else space.dtype
        return spaces.Box(space.low, space.high, tuple(space.shape), dtype)
    if name == "Dict":
        return {k: _convert_space(v, None if example is None else example[k]) for k, v in space.spaces.items()}
    if name == "Tuple":
        return tuple(_convert_space(v, None if example is None else example[i]) for i, v in enumerate(space.spaces))
    raise TypeError(f"unsupported gymnax space {space!r}")


def _check_param(env_name: str, name: str, value, default) -> None:
    """An env parameter of its default's kind: a finite number, whole where the default is, steps >= 1."""
    default = default.item() if hasattr(default, "item") else default
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise OptionError(f"{env_name}: option {name}={value!r} must be a finite number")
        if isinstance(default, int) and value != int(value):
            raise OptionError(f"{env_name}: option {name}={value!r} must be a whole number")
        if name == "max_steps_in_episode" and value < 1:
            raise OptionError(f"{env_name}: option max_steps_in_episode={value} must be at least 1")


class GymnaxEnv(Env):
    """One gymnax environment under the pjrl protocol."""

    def __init__(self, env_id: str, **params):
        gymnax = _gymnax()
        self.env_id = env_id
        self.name = f"gymnax:{env_id}"
        self.env, default = gymnax.make(env_id)
        check_options(self.name, params, sorted(f.name for f in dataclasses.fields(default)))
        for name, value in params.items():
            _check_param(self.name, name, value, getattr(default, name))
        self.params = default.replace(**params)
        self.max_episode_steps = int(self.params.max_steps_in_episode)
        self.render_suffixes = (".gif",) if env_id in DRAWN else ()
        obs_example = jax.eval_shape(lambda k: self.env.reset_env(k, self.params)[0], jax.random.PRNGKey(0))
        self.observation_space = _convert_space(self.env.observation_space(self.params), obs_example)
        if env_id in WRONG_OBS_BOUNDS:
            s = self.observation_space
            self.observation_space = spaces.Box(-float("inf"), float("inf"), s.shape, s.dtype)
        self.action_space = _convert_space(self.env.action_space(self.params))
        self._mask = spaces.no_mask(self.action_space)

    def reset(self, key):
        obs, state = self.env.reset_env(key, self.params)
        false = jnp.zeros((), jnp.bool_)
        return state, TimeStep(obs=obs, reward=jnp.zeros((), jnp.float32), terminated=false, truncated=false,
                               final_obs=obs, action_mask=self._mask, info={})

    def step(self, state, action, key):
        obs, state, reward, terminated, info = self.env.step_env(key, state, action, self.params)
        terminated = jnp.asarray(terminated, jnp.bool_)
        truncated = jnp.asarray(self.env.is_truncated(state, self.params), jnp.bool_) & ~terminated
        info = {k: jnp.asarray(v) for k, v in info.items()}
        ts = TimeStep(obs=obs, reward=jnp.asarray(reward, jnp.float32), terminated=terminated,
                      truncated=truncated, final_obs=obs, action_mask=self._mask, info=info)
        return state, ts

    def check_render(self, path):
        super().check_render(path)
        if self.env_id in CLASSIC_CONTROL:
            try:
                _pygame()
            except MissingLibraryError:
                message = f"drawing {self.name} needs pygame: pip install '{RENDER_REQUIRES}'"
                raise MissingLibraryError(message) from None

    def render(self, states, path):
        """A GIF of the gymnax states `(T, ...)`, one frame each."""
        self.check_render(path)
        visualize = require("gymnax.visualize", REQUIRES)
        states = jax.device_get(states)
        frames = [jax.tree.map(lambda x: x[t], states)  # noqa: B023 - called within its iteration
                  for t in range(len(jax.tree.leaves(states)[0]))]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        visualize.Visualizer(self.env, self.params, frames).animate(str(path))


def list_envs() -> list[str]:
    return list(_gymnax().registered_envs)


def make(env_id: str, num_envs: int = 1, **params):
    return GymnaxEnv(env_id, **params).to_vec(num_envs)


ADAPTER = Adapter(list_envs=list_envs, make=make, requires=REQUIRES)
