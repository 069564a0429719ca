"""Evaluates a checkpointed policy: mean and std of episodic return over N episodes."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from pjrl_envs import wrappers


def carry_statistics(fresh, trained):
    """`fresh` env state with the normaliser statistics of `trained` (same wrapper stack)."""
    if isinstance(fresh, (wrappers.NormalizeObservationState, wrappers.NormalizeRewardState)):
        fresh = fresh.replace(moments=trained.moments)
    if dataclasses.is_dataclass(fresh) and hasattr(fresh, "inner"):
        return fresh.replace(inner=carry_statistics(fresh.inner, trained.inner))
    return fresh


def evaluate(agent, params, trained_env_state, key, episodes: int = 10, deterministic: bool = True,
             chunk: int = 500, max_steps: int = 1_000_000) -> dict:
    """Runs `agent.act` in `agent.env` until `episodes` episodes end; returns their statistics."""
    env = agent.env

    @jax.jit
    def run(env_state, obs, mask, key):
        def body(carry, k):
            env_state, obs, mask = carry
            act_key, step_key = jax.random.split(k)
            action = agent.act(params, obs, mask, None if deterministic else act_key)
            env_state, ts = env.step(env_state, action, step_key)
            return (env_state, ts.obs, ts.action_mask), (ts.info["returned_episode"], ts.info["episode_return"],
                                                         ts.info["episode_length"])
        return jax.lax.scan(body, (env_state, obs, mask), jax.random.split(key, chunk))

    key, reset_key = jax.random.split(key)
    env_state, ts = env.reset(reset_key)
    env_state = carry_statistics(env_state, trained_env_state)
    carry = (env_state, ts.obs, ts.action_mask)
    returns, lengths, steps = [], [], 0
    while len(returns) < episodes and steps < max_steps:
        key, k = jax.random.split(key)
        carry, (done, ret, length) = run(*carry, k)
        done, ret, length = map(np.asarray, (done, ret, length))
        returns += ret[done].tolist()
        lengths += length[done].tolist()
        steps += chunk * env.num_envs
    returns, lengths = np.asarray(returns[:episodes]), np.asarray(lengths[:episodes])
    return {"episodes": int(returns.size), "deterministic": deterministic,
            "return_mean": float(returns.mean()) if returns.size else float("nan"),
            "return_std": float(returns.std()) if returns.size else float("nan"),
            "length_mean": float(lengths.mean()) if lengths.size else float("nan")}


def evaluate_run(run, state, episodes: int = 10, seed: int = 0, run_index: int = 0) -> list[dict]:
    """Both the deterministic and the stochastic policy of one run (seed/member) of a loaded run."""
    pick = lambda x: x[run_index]
    params = jax.tree.map(pick, state.params)
    env_state = jax.tree.map(pick, state.env_state)
    key = jax.random.PRNGKey(seed)
    return [evaluate(run.agent, params, env_state, key, episodes, deterministic=d) for d in (True, False)]
