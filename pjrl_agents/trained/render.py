"""`pjrl eval --render`: one episode of the deterministic policy, drawn by the env itself.

The env says what it can draw (`env.render_suffixes`, `env.check_render`) and
draws a sequence of its states (`env.render`); this module only runs the
episode. Env 0 of the run's vectorised env plays one episode (capped at the
env's own time limit), under jit; frames are the states before each step, so
the terminal state itself, replaced by the auto-reset, is not drawn.
"""
from __future__ import annotations

import os

import jax
import numpy as np

import pjrl_envs
from pjrl_agents.run import evaluate

DEFAULT_MAX_STEPS = 1000


def episode_states(agent, params, trained_env_state, key, max_steps: int):
    """Env 0's states (leaves `(T, 1, ...)`) through one deterministic episode, and its length T."""
    env = agent.env
    policy, memory = evaluate.agent_policy(agent, params, deterministic=True)

    def record(before, action, after, ts):
        return jax.tree.map(lambda x: x[:1], before), ts.terminated[0] | ts.truncated[0]

    @jax.jit
    def run(key):
        reset_key, key = jax.random.split(key)
        state, ts = env.reset(reset_key)
        start = (env.carry_statistics(state, trained_env_state), ts) + (() if memory is None else (memory,))
        return pjrl_envs.rollout(env, policy, key, max_steps, start=start, record=record, memory=memory)[1]

    states, done = jax.device_get(run(key))
    length = int(np.argmax(done)) + 1 if done.any() else max_steps
    return jax.tree.map(lambda x: x[:length], states), length


def render(agent, params, trained_env_state, path: str | os.PathLike, seed: int = 0,
           key: jax.Array | None = None) -> int:
    """Draws one deterministic episode to `path` in a format the env draws; returns its length in steps.
    The episode's envs come from `key` (default: `PRNGKey(seed)`)."""
    env = agent.env
    env.check_render(path)
    states, length = episode_states(agent, params, trained_env_state, jax.random.PRNGKey(seed) if key is None else key,
                                    env.max_episode_steps or DEFAULT_MAX_STEPS)
    env.render(states, path)
    return length
