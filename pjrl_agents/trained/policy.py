"""A trained policy as a plain function of observations: `load_policy(RUN_DIR)`.

    policy = pjrl_agents.load_policy("runs/cartpole")
    env = pjrl_envs.make("gymnax:CartPole-v1")
    state, ts = env.reset(jax.random.PRNGKey(0))
    action = policy(ts.obs)                       # greedy; policy(ts.obs, key) samples
"""
from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp

from pjrl_agents.run import experiment
from pjrl_envs import spaces


class Policy:
    """`policy(obs, key=None, mask=None) -> action` of one trained seed.

    `obs` is what the run's env returns: one observation, or a batch with
    leading axes. The run's observation normaliser (if any) is applied with the
    statistics it had at the checkpoint; `mask` (legal actions, as
    `TimeStep.action_mask`) is respected; without `key` the action is the
    greedy one, with it a sample.

    A recurrent policy (`torso=gru|lstm`) carries its memory from call to call,
    one per observation of the batch: call `reset()` before a new episode, or pass
    `reset` (bool per observation, e.g. the last step's `terminated | truncated`)
    to start those afresh.
    """

    def __init__(self, agent, params: Any, env_state: Any):
        self.agent, self.params, self.env_state = agent, params, env_state
        self.env = agent.env
        self.observation_space = self.env.unwrapped.observation_space
        self.action_space = self.env.action_space
        self.recurrent = agent.recurrent
        self.memory = None
        self._act = jax.jit(self._batched_act)

    def _batched_act(self, params, env_state, obs, mask, key, memory):
        obs = self.env.observation(env_state, obs)
        if self.recurrent:
            return self.agent.act(params, obs, mask, key, memory)
        return self.agent.act(params, obs, mask, key), None

    def reset(self) -> None:
        """Forgets the memory (a recurrent policy): the next call begins new episodes."""
        self.memory = None

    def __call__(self, obs: Any, key: jax.Array | None = None, mask: jax.Array | None = None,
                 reset: Any = None) -> jax.Array:
        space = spaces.tree_spaces(self.observation_space)[0]
        leaf = jnp.asarray(jax.tree.leaves(obs)[0])
        single = leaf.ndim == len(space.shape)
        if single:
            obs = jax.tree.map(lambda x: jnp.asarray(x)[None], obs)
            mask = None if mask is None else jnp.asarray(mask)[None]
        batch = jax.tree.leaves(obs)[0].shape[:1]
        if mask is None:
            mask = jnp.broadcast_to(spaces.no_mask(self.action_space), batch + spaces.mask_shape(self.action_space))
        memory = None
        if self.recurrent:
            memory = self.memory
            if memory is None or jax.tree.leaves(memory)[0].shape[0] != batch[0]:
                memory = self.agent.initial_memory(batch[0])
            if reset is not None:
                fresh = jnp.atleast_1d(jnp.asarray(reset, bool))
                memory = jax.tree.map(lambda m: jnp.where(fresh[:, None], 0.0, m), memory)
        action, self.memory = self._act(self.params, self.env_state, obs, mask, key, memory)
        return action[0] if single else action


def load_policy(run_dir: str | os.PathLike, seed: int = 0, member: int = 0) -> Policy:
    """The policy of seed `seed` (of sweep member `member`) at the latest checkpoint of `run_dir`."""
    ex, state = experiment.load(run_dir)
    row = ex.row(state, member, seed)
    return Policy(ex.agent, row.params, row.env_state)
