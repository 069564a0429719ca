"""Evaluates a policy: the returns of a number of whole episodes, greedy and sampled.

One rollout (`pjrl_envs.rollout`) serves here, in `render`, in the examples
and in `check_env`; this module only counts the episodes it ends.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

import pjrl_envs


def episodes(env: pjrl_envs.VecEnv, policy: Callable, key: jax.Array, num_episodes: int = 10, start: Any = None,
             chunk: int = 500, max_steps: int = 1_000_000, memory: Any = None) -> dict[str, np.ndarray]:
    """Steps `env` (which records episode statistics) with `policy(obs, mask, key)` until `num_episodes` end.

    `start`: the `(state, timestep)` to begin from (default: a reset with a key
    split from `key`, after which the same keys follow as with an explicit start); with a policy's
    `memory` (see `pjrl_envs.rollout`) it is `(state, timestep, memory)`. Runs jitted chunks of `chunk` steps, at most `max_steps`
    env steps in all. Returns `{"returns", "lengths"}` of the first episodes
    that ended, in the order they ended.
    """
    if start is None:
        key, reset_key = jax.random.split(key)
        start = env.reset(reset_key)
        if memory is not None:
            start = (*start, memory)
    carry = start
    run = _chunk_runner(env, policy, chunk, memory)
    returns, lengths, steps = [], [], 0
    while len(returns) < num_episodes and steps < max_steps:
        key, chunk_key = jax.random.split(key)
        carry, (done, ret, length) = run(carry, chunk_key)
        done, ret, length = map(np.asarray, (done, ret, length))
        returns += ret[done].tolist()
        lengths += length[done].tolist()
        steps += chunk * env.num_envs
    return {"returns": np.asarray(returns[:num_episodes]), "lengths": np.asarray(lengths[:num_episodes])}


def _chunk_runner(env, policy, chunk, memory=None):
    def record(before, action, after, ts):
        return ts.info["returned_episode"], ts.info["episode_return"], ts.info["episode_length"]

    return jax.jit(lambda carry, key: pjrl_envs.rollout(env, policy, key, chunk, start=carry, record=record,
                                                        memory=memory))


def evaluate(agent, params, trained_env_state, seed: int = 0, num_episodes: int = 10) -> list[dict]:
    """The greedy and the sampled policy of `agent` with `params`, each over `num_episodes` episodes.

    Fresh envs from `seed`, carrying the normaliser statistics of `trained_env_state`
    (one run's env state), so observations are scaled as in training.
    """
    env, results = agent.env, []
    for deterministic in (True, False):
        key, reset_key = jax.random.split(jax.random.PRNGKey(seed))
        state, ts = jax.jit(env.reset)(reset_key)
        policy, memory = agent_policy(agent, params, deterministic)
        start = (env.carry_statistics(state, trained_env_state), ts) + (() if memory is None else (memory,))
        out = episodes(env, policy, key, num_episodes, start=start, memory=memory)
        ret, length = out["returns"], out["lengths"]
        results.append({"episodes": int(ret.size), "deterministic": deterministic,
                        "return_mean": float(ret.mean()) if ret.size else float("nan"),
                        "return_std": float(ret.std()) if ret.size else float("nan"),
                        "length_mean": float(length.mean()) if length.size else float("nan")})
    return results


def agent_policy(agent, params, deterministic: bool) -> tuple[Callable, Any]:
    """`(policy, memory)` for `pjrl_envs.rollout`: the agent's greedy or sampled policy, and its initial
    memory for the agent's envs (None for an agent without memory)."""
    memory = getattr(agent, "initial_memory", lambda n: None)(agent.env.num_envs)
    if memory is None:
        return (lambda obs, mask, key: agent.act(params, obs, mask, None if deterministic else key)), None
    return (lambda obs, mask, key, mem: agent.act(params, obs, mask, None if deterministic else key, mem)), memory


def greedy_returns(agent, params: Any, env_states: Any, seed: int = 0, num_episodes: int = 10,
                   chunk: int = 500, max_steps: int = 1_000_000) -> tuple[np.ndarray, int]:
    """Mean return of the greedy policy, for each of many runs at once: `(returns (runs,), episodes each)`.

    `params` and `env_states` carry a leading runs axis (as a trained state does);
    every run plays fresh envs from `seed` with its own normaliser statistics, all
    runs in one vmapped, jitted rollout. Each of the `B` envs contributes its first
    `ceil(num_episodes / B)` episodes, so long episodes count as much as short
    ones. A run whose envs have not all finished theirs within `max_steps` steps
    is averaged over those that did (NaN if none did).
    """
    env = agent.env
    runs, per_env = jax.tree.leaves(params)[0].shape[0], -(-num_episodes // env.num_envs)
    key, reset_key = jax.random.split(jax.random.PRNGKey(seed))

    memory = getattr(agent, "initial_memory", lambda n: None)(env.num_envs)

    @jax.jit
    def start(env_states):
        state, ts = env.reset(reset_key)
        first = lambda trained: (env.carry_statistics(state, trained), ts) + (() if memory is None else (memory,))
        return jax.vmap(first)(env_states)

    def record(before, action, after, ts):
        return ts.info["returned_episode"], ts.info["episode_return"]

    @jax.jit
    def run(params, carry, key):
        def one(p, c):
            return pjrl_envs.rollout(env, agent_policy(agent, p, True)[0], key, chunk, start=c, record=record,
                                     memory=memory)
        return jax.vmap(one)(params, carry)

    carry, steps = start(env_states), 0
    returns = [[[] for _ in range(env.num_envs)] for _ in range(runs)]  # [run][env] -> its episodes, in order
    while min(len(e) for r in returns for e in r) < per_env and steps < max_steps:
        key, chunk_key = jax.random.split(key)
        carry, (done, ret) = run(params, carry, chunk_key)
        done, ret = np.asarray(done), np.asarray(ret)  # (runs, chunk, B)
        for r in range(runs):
            for b in range(env.num_envs):
                returns[r][b] += ret[r, :, b][done[r, :, b]].tolist()
        steps += chunk * env.num_envs
    means = [np.mean(kept) if (kept := [x for e in r for x in e[:per_env]]) else np.nan for r in returns]
    return np.asarray(means), per_env * env.num_envs
