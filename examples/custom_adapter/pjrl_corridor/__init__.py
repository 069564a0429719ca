"""A slippery corridor as a pjrl adapter, prefix `corridor`.

The agent starts at cell 0 of a corridor of `length` cells and must reach the last
one. Actions: 0 = left, 1 = right; with probability `slip` the other move happens.
Moving left from cell 0 is masked out. Reward 1 on reaching the end (terminated),
0 otherwise; after `max_steps` steps the episode is truncated.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

import pjrl_envs
from pjrl_envs import spaces
from pjrl_envs.registry import Adapter, OptionError, UnknownEnvError, check_options
from pjrl_envs.types import TimeStep
from pjrl_envs.wrappers import TimeLimit

# id -> default options; `make` accepts exactly these keywords.
ENVS = {
    "Corridor-v0": dict(length=12, slip=0.1, max_steps=40),
    "LongCorridor-v0": dict(length=32, slip=0.1, max_steps=100),
}


class Corridor(pjrl_envs.Env):
    """One corridor. The state is the position, an int32 scalar: nothing lives on `self`."""

    def __init__(self, length: int, slip: float):
        if int(length) < 2:
            raise OptionError(f"corridor: length must be >= 2, got {length}")
        if not 0.0 <= slip < 0.5:
            raise OptionError(f"corridor: slip must be in [0, 0.5), got {slip}")
        self.length, self.slip = int(length), float(slip)
        self.observation_space = spaces.Box(0.0, 1.0, (self.length,))  # one-hot position
        self.action_space = spaces.Discrete(2)

    def _timestep(self, pos, reward, terminated):
        obs = jax.nn.one_hot(pos, self.length, dtype=jnp.float32)
        mask = jnp.array([True, True]).at[0].set(pos > 0)  # no stepping left off the corridor
        return TimeStep(obs=obs, reward=jnp.asarray(reward, jnp.float32), terminated=terminated,
                        truncated=jnp.zeros((), jnp.bool_), final_obs=obs, action_mask=mask,
                        info={"position": pos})

    def reset(self, key):
        pos = jnp.zeros((), jnp.int32)
        return pos, self._timestep(pos, 0.0, jnp.zeros((), jnp.bool_))

    def step(self, pos, action, key):
        slipped = jax.random.uniform(key) < self.slip
        move = jnp.where((action == 1) != slipped, 1, -1)
        pos = jnp.clip(pos + move, 0, self.length - 1).astype(jnp.int32)
        at_goal = pos == self.length - 1
        return pos, self._timestep(pos, at_goal.astype(jnp.float32), at_goal)


def list_envs() -> list[str]:
    return sorted(ENVS)


def make(env_id: str, num_envs: int, **options) -> pjrl_envs.VecEnv:
    if env_id not in ENVS:
        raise UnknownEnvError(f"unknown corridor env {env_id!r}; known: {', '.join(ENVS)}")
    check_options(f"corridor:{env_id}", options, ENVS[env_id])  # one line listing the allowed ones
    opts = {**ENVS[env_id], **options}
    env = TimeLimit(Corridor(opts["length"], opts["slip"]), opts["max_steps"])
    return env.to_vec(num_envs)  # vmap + same-step auto-reset


ADAPTER = Adapter(list_envs=list_envs, make=make, requires="pjrl-corridor")
