"""Tiny hand-made environments whose every number is known, for tests."""
import jax.numpy as jnp

from pjrl_envs import spaces
from pjrl_envs.core import Env
from pjrl_envs.types import TimeStep


class CounterEnv(Env):
    """obs = [t, 10 * t]; reward = t after the step; terminates when t reaches `length`.

    The first observation is [start, 10 * start], with `start` drawn from the key
    when `random_start`, so auto-reset observations are recognisable.
    """

    def __init__(self, length: int = 3, random_start: bool = False, num_actions: int = 2):
        self.length, self.random_start = length, random_start
        self.observation_space = spaces.Box(0.0, 100.0, (2,), jnp.float32)
        self.action_space = spaces.Discrete(num_actions)

    def _obs(self, t):
        return jnp.stack([t, 10.0 * t]).astype(jnp.float32)

    def reset(self, key):
        t = jnp.zeros((), jnp.float32)
        if self.random_start:
            import jax
            t = jax.random.randint(key, (), 50, 60).astype(jnp.float32)
        f = jnp.zeros((), jnp.bool_)
        obs = self._obs(t)
        steps = jnp.zeros((), jnp.int32)
        return {"t": t, "steps": steps}, TimeStep(
            obs=obs, reward=jnp.zeros((), jnp.float32), terminated=f, truncated=f, final_obs=obs,
            action_mask=spaces.no_mask(self.action_space), info={"steps": steps})

    def step(self, state, action, key):
        t = state["t"] + 1.0
        steps = state["steps"] + 1
        obs = self._obs(t)
        terminated = steps >= self.length
        ts = TimeStep(obs=obs, reward=t.astype(jnp.float32), terminated=terminated,
                      truncated=jnp.zeros((), jnp.bool_), final_obs=obs,
                      action_mask=spaces.no_mask(self.action_space), info={"steps": steps})
        return {"t": t, "steps": steps}, ts


class BanditEnv(Env):
    """One-step episodes: action 1 pays 1, action 0 pays 0. An agent that learns picks 1."""

    def __init__(self):
        self.observation_space = spaces.Box(0.0, 1.0, (1,), jnp.float32)
        self.action_space = spaces.Discrete(2)

    def reset(self, key):
        f = jnp.zeros((), jnp.bool_)
        obs = jnp.ones((1,), jnp.float32)
        return jnp.zeros(()), TimeStep(obs=obs, reward=jnp.zeros(()), terminated=f, truncated=f, final_obs=obs,
                                       action_mask=spaces.no_mask(self.action_space), info={})

    def step(self, state, action, key):
        obs = jnp.ones((1,), jnp.float32)
        return state, TimeStep(obs=obs, reward=(action == 1).astype(jnp.float32),
                               terminated=jnp.ones((), jnp.bool_), truncated=jnp.zeros((), jnp.bool_),
                               final_obs=obs, action_mask=spaces.no_mask(self.action_space), info={})
