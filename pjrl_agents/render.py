"""`pjrl eval --render`: one episode of the deterministic policy, drawn by the env library's renderer.

Brax envs become an HTML page (brax.io.html, the trajectory replayed in the
browser); gymnax envs that gymnax can draw become a GIF (gymnax.visualize,
with matplotlib). The episode runs in env 0 of the run's vectorised env, under
jit for the env's time limit, and is cut at its end on the host. Frames are
the states before each step: the env auto-resets on the last step, so the
terminal state itself is not drawn.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from pjrl_agents.common import ConfigError
from pjrl_agents.evaluate import carry_statistics
from pjrl_envs import MissingLibraryError, wrappers
from pjrl_envs.core import VecEnv

EXTENSIONS = {"brax": ".html", "gymnax": ".gif"}
_WHAT_RENDERS = " and ".join(f"{library} envs to {ext}" for library, ext in EXTENSIONS.items())
# What gymnax 1.0.1's Visualizer draws (it leaves any other env's frames blank).
GYMNAX_CLASSIC_CONTROL = ("Acrobot-v1", "CartPole-v1", "Pendulum-v1", "MountainCar-v0", "MountainCarContinuous-v0")
GYMNAX_DRAWN = GYMNAX_CLASSIC_CONTROL + (
    "Catch-bsuite", "Asterix-MinAtar", "Breakout-MinAtar", "Freeway-MinAtar", "Seaquest-MinAtar",
    "SpaceInvaders-MinAtar", "Pong-misc", "PointRobot-misc", "MetaMaze-misc", "FourRooms-misc")
_WRAPPER_STATES = (wrappers.EpisodeStatisticsState, wrappers.NormalizeObservationState,
                   wrappers.NormalizeRewardState)


def check(env_name: str, path: str | os.PathLike) -> None:
    """Raises a one-line error unless `env_name` can be rendered to `path`; runs nothing."""
    library, _, env_id = env_name.partition(":")
    suffix = Path(path).suffix.lower()
    if EXTENSIONS.get(library) != suffix:
        raise ConfigError(f"--render {path}: cannot render {env_name} to {suffix or 'a file without extension'}; "
                          f"rendering writes {_WHAT_RENDERS}")
    if library == "gymnax" and env_id not in GYMNAX_DRAWN:
        raise ConfigError(f"--render: gymnax cannot draw {env_id}; it draws {', '.join(GYMNAX_DRAWN)}")
    if library == "gymnax" and env_id in GYMNAX_CLASSIC_CONTROL:
        try:
            import pygame  # noqa: F401  gymnasium draws classic control with it
        except ImportError:
            raise MissingLibraryError(f"--render: drawing {env_name} needs pygame: "
                                      "pip install 'pygame==2.6.1' (or pip install 'pjrl[render]')") from None


def _library_state(library: str, state: Any) -> Any:
    """Env 0's state as its library knows it: a gymnax EnvState or a brax pipeline State."""
    while isinstance(state, _WRAPPER_STATES):
        state = state.inner
    if library == "brax":
        state = state.inner.pipeline_state  # BraxVecState -> brax State -> pipeline State
    return jax.tree.map(lambda x: x[0], state)


def _time_limit(library: str, env: VecEnv) -> int:
    base = env.unwrapped
    if library == "brax":
        return int(base.env.episode_length)  # brax's EpisodeWrapper
    return int(base.env.params.max_steps_in_episode)  # AutoResetVecEnv of a GymnaxEnv


def rollout(library: str, agent, params, trained_env_state, key, max_steps: int) -> tuple[list, np.ndarray]:
    """One deterministic episode of env 0: its library states (one per step) and running returns."""
    env = agent.env

    @jax.jit
    def run(key):
        reset_key, key = jax.random.split(key)
        env_state, ts = env.reset(reset_key)
        env_state = carry_statistics(env_state, trained_env_state)

        def body(carry, k):
            env_state, obs, mask = carry
            frame = _library_state(library, env_state)
            env_state, ts = env.step(env_state, agent.act(params, obs, mask, None), k)
            done = ts.terminated[0] | ts.truncated[0]
            return (env_state, ts.obs, ts.action_mask), (frame, ts.info["episode_return"][0], done)

        return jax.lax.scan(body, (env_state, ts.obs, ts.action_mask), jax.random.split(key, max_steps))[1]

    frames, returns, done = jax.device_get(run(key))
    length = int(np.argmax(done)) + 1 if done.any() else max_steps
    return [jax.tree.map(lambda x: x[t], frames) for t in range(length)], returns[:length]


def render_run(run, state, path: str | os.PathLike, seed: int = 0, run_index: int = 0) -> int:
    """Writes one episode of a loaded run's deterministic policy to `path`; returns its length."""
    check(run.spec.env, path)
    params = jax.tree.map(lambda x: x[run_index], state.params)
    env_state = jax.tree.map(lambda x: x[run_index], state.env_state)
    library = run.spec.env.partition(":")[0]
    base = run.agent.env.unwrapped
    frames, returns = rollout(library, run.agent, params, env_state, jax.random.PRNGKey(seed),
                              _time_limit(library, run.agent.env))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if library == "brax":
        from brax.io import html
        path.write_text(html.render(base.brax_env.sys, frames))
    else:
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        for device in ("SDL_AUDIODRIVER", "SDL_VIDEODRIVER"):  # pygame draws off-screen, no display or sound
            os.environ.setdefault(device, "dummy")
        from gymnax.visualize import Visualizer
        Visualizer(base.env.env, base.env.params, frames, returns).animate(str(path))
    return len(frames)
