"""Evaluates policies: the returns of whole episodes, greedy and sampled, for one run or many at once.

The protocol (`evaluate_runs`, used by `pjrl eval`, the evaluation during
training and the greedy evaluation when training ends): every run plays fresh
envs reset from its own evaluation key, a stream kept apart from the training
keys (`eval_keys`), carrying its own normaliser statistics; each of the `B`
envs contributes its first `ceil(n / B)` episodes, so long episodes count as
much as short ones; all runs step in one vmapped, jitted rollout. One rollout
(`pjrl_envs.rollout`) serves here, in `render`, in the examples and in
`check_env`; this module only counts the episodes it ends.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import pjrl_envs
from pjrl_agents.numeric import nanmean

EVAL_STREAM = 0x6576616C
"""folded into a run's root key to make its evaluation keys (the bytes of 'eval'); training never folds in"""

POLICIES = ("greedy", "stochastic")


def eval_keys(seed: int, num_seeds: int, members: int = 1) -> jax.Array:
    """The evaluation key of each of a run's `num_seeds` seeds: `fold_in(fold_in(PRNGKey(seed), EVAL_STREAM), i)`,
    repeated for each of `members` sweep members (member-major, as the runs are laid out).

    Training keys are `split(PRNGKey(seed), num_seeds)` and what the agent splits
    from them; folding in is a different derivation, so the two streams never meet.
    """
    root = jax.random.fold_in(jax.random.PRNGKey(seed), EVAL_STREAM)
    return jnp.tile(jax.vmap(lambda i: jax.random.fold_in(root, i))(jnp.arange(num_seeds)), (members, 1))


def episodes(env: pjrl_envs.VecEnv, policy: Callable, key: jax.Array, num_episodes: int = 10, start: Any = None,
             chunk: int = 500, max_steps: int = 1_000_000, memory: Any = None) -> dict[str, np.ndarray]:
    """Steps `env` (which records episode statistics) with `policy(obs, mask, key)` until `num_episodes` end.

    `start`: the `(state, timestep)` to begin from (default: a reset with a key
    split from `key`, after which the same keys follow as with an explicit start); with a policy's
    `memory` (see `pjrl_envs.rollout`) it is `(state, timestep, memory)`. Runs jitted chunks of
    `chunk` steps, at most `max_steps` env steps in all. Returns `{"returns", "lengths"}` of the first episodes
    that ended, in the order they ended.
    """
    if start is None:
        key, reset_key = jax.random.split(key)
        start = env.reset(reset_key)
        if memory is not None:
            start = (*start, memory)
    carry = start
    run = jax.jit(lambda carry, key: pjrl_envs.rollout(env, policy, key, chunk, start=carry, record=_ended,
                                                        memory=memory))
    returns: list[float] = []
    lengths: list[float] = []
    steps = 0
    while len(returns) < num_episodes and steps < max_steps:
        key, chunk_key = jax.random.split(key)
        carry, (done, ret, length) = run(carry, chunk_key)
        done, ret, length = map(np.asarray, (done, ret, length))
        returns += ret[done].tolist()
        lengths += length[done].tolist()
        steps += chunk * env.num_envs
    return {"returns": np.asarray(returns[:num_episodes]), "lengths": np.asarray(lengths[:num_episodes])}


def _ended(before, action, after, ts):
    return ts.info["returned_episode"], ts.info["episode_return"], ts.info["episode_length"]


def agent_policy(agent, params, deterministic: bool) -> tuple[Callable, Any]:
    """`(policy, memory)` for `pjrl_envs.rollout`: the agent's greedy or sampled policy, and its initial
    memory for the agent's envs (None for an agent without memory)."""
    memory = agent.initial_memory(agent.env.num_envs)
    if memory is None:
        return (lambda obs, mask, key: agent.act(params, obs, mask, None if deterministic else key)), None
    return (lambda obs, mask, key, mem: agent.act(params, obs, mask, None if deterministic else key, mem)), memory


def evaluate_runs(agent, params: Any, env_states: Any, keys: jax.Array, num_episodes: int = 10,
                  policies: tuple[str, ...] = POLICIES, chunk: int = 500,
                  max_steps: int = 1_000_000) -> dict[str, dict[str, np.ndarray]]:
    """Episodes of many runs' policies at once: `{policy: {"returns", "lengths"}}`, each `(runs, episodes)`.

    `params`, `env_states` (the trained env states, for their normaliser
    statistics) and `keys` carry a leading runs axis. Each run resets its envs
    with `split(key)[1]` and steps on keys split from `split(key)[0]`, as
    `episodes` does; each policy of `policies` ("greedy", "stochastic") plays the
    same initial states. Each of the `B` envs contributes its first
    `ceil(num_episodes / B)` episodes (in env order, then the order they ended);
    an env that has not finished them within `max_steps` steps leaves NaN.
    """
    return Evaluator(agent, chunk)(params, env_states, keys, num_episodes, policies, max_steps)


class Evaluator:
    """`evaluate_runs` with its compiled rollouts kept, for evaluating the same agent again and again."""

    def __init__(self, agent, chunk: int = 500):
        self.agent, self.chunk = agent, chunk
        env = agent.env
        self.memory = memory = agent.initial_memory(env.num_envs)

        def first(trained, key):
            key, reset_key = jax.random.split(key)
            state, ts = env.reset(reset_key)
            return (env.carry_statistics(state, trained), ts) + (() if memory is None else (memory,)), key

        def runner(deterministic):
            def one(p, c, k):
                k, chunk_key = jax.random.split(k)
                carry, records = pjrl_envs.rollout(env, agent_policy(agent, p, deterministic)[0], chunk_key, chunk,
                                                   start=c, record=_ended, memory=memory)
                return carry, records, k
            return jax.jit(jax.vmap(one))

        self.start = jax.jit(jax.vmap(first))
        self.run = {name: runner(name == "greedy") for name in POLICIES}

    def __call__(self, params: Any, env_states: Any, keys: jax.Array, num_episodes: int = 10,
                 policies: tuple[str, ...] = POLICIES, max_steps: int = 1_000_000) -> dict[str, dict[str, np.ndarray]]:
        unknown = set(policies) - set(POLICIES)
        if unknown:
            raise ValueError(f"policies {sorted(unknown)}: choose from {', '.join(POLICIES)}")
        num_envs = self.agent.env.num_envs
        per_env = -(-num_episodes // num_envs)
        out = {}
        for name in policies:
            carry, run_keys = self.start(env_states, keys)
            runs = run_keys.shape[0]
            returns = np.full((runs, num_envs, per_env), np.nan)
            lengths = np.full((runs, num_envs, per_env), np.nan)
            seen, steps = np.zeros((runs, num_envs), np.int64), 0
            while seen.min() < per_env and steps < max_steps:
                carry, (done, ret, length), run_keys = self.run[name](params, carry, run_keys)
                _keep_first(np.asarray(done), (np.asarray(ret), np.asarray(length)), (returns, lengths), seen)
                steps += self.chunk * num_envs
            out[name] = {"returns": returns.reshape(runs, -1), "lengths": lengths.reshape(runs, -1)}
        return out


def _keep_first(done: np.ndarray, values: tuple, into: tuple, seen: np.ndarray) -> None:
    """Files each episode that ended in a chunk (`done (runs, T, B)`) into `into[i][run, env, k]`, its
    env's k-th episode, while k is below `into`'s last size; `seen (runs, B)` counts episodes so far."""
    run, t, b = np.nonzero(done)
    order = np.lexsort((t, b, run))  # by run, then env, then time
    run, t, b = run[order], t[order], b[order]
    group = run * done.shape[2] + b
    new = np.r_[True, group[1:] != group[:-1]] if group.size else np.zeros(0, bool)
    first = np.maximum.accumulate(np.where(new, np.arange(group.size), 0))
    k = np.arange(group.size) - first + seen[run, b]
    keep = k < into[0].shape[2]
    for source, target in zip(values, into):
        target[run[keep], b[keep], k[keep]] = source[run[keep], t[keep], b[keep]]
    np.add.at(seen, (run, b), 1)


def summarise(returns: np.ndarray, lengths: np.ndarray) -> dict:
    """Per-run means of `(runs, episodes)` arrays (NaN entries left out), as JSON-ready lists."""
    std = lambda r: float(np.std(r[np.isfinite(r)])) if np.isfinite(r).any() else float("nan")
    return {"return_mean": [nanmean(r) for r in returns], "return_std": [std(r) for r in returns],
            "length_mean": [nanmean(r) for r in lengths], "episodes": np.isfinite(returns).sum(1).tolist()}


def evaluate(agent, params: Any, trained_env_state: Any, seed: int = 0, num_episodes: int = 10) -> list[dict]:
    """The greedy and the sampled policy of one run (`params`, `trained_env_state` without a runs axis) under
    the protocol, as seed 0 of a run rooted at `seed`: `[greedy, sampled]`, each `{"episodes",
    "deterministic", "return_mean", "return_std", "length_mean"}`."""
    one = lambda tree: jax.tree.map(lambda x: jnp.asarray(x)[None], tree)
    out = evaluate_runs(agent, one(params), one(trained_env_state), eval_keys(seed, 1), num_episodes)
    results = []
    for name in POLICIES:
        summary = summarise(out[name]["returns"], out[name]["lengths"])
        results.append({"episodes": summary["episodes"][0], "deterministic": name == "greedy",
                        **{k: summary[k][0] for k in ("return_mean", "return_std", "length_mean")}})
    return results


def greedy_returns(agent, params: Any, env_states: Any, seed: int = 0, num_episodes: int = 10,
                   chunk: int = 500, max_steps: int = 1_000_000) -> tuple[np.ndarray, int]:
    """Mean return of the greedy policy for each of many runs: `(returns (runs,), episodes each)`.

    The runs are taken as seeds 0..runs-1 of a run rooted at `seed` (`eval_keys`);
    see `evaluate_runs`. A run none of whose episodes ended within `max_steps` gets NaN.
    """
    runs = jax.tree.leaves(params)[0].shape[0]
    out = evaluate_runs(agent, params, env_states, eval_keys(seed, runs), num_episodes, ("greedy",), chunk,
                        max_steps)["greedy"]
    return np.asarray([nanmean(r) for r in out["returns"]]), out["returns"].shape[1]


def evaluation_report(ex, update: int, seed: int, episodes: int, results: dict) -> dict:
    """eval.json (`pjrl eval`): the protocol and, per sweep member and policy, the mean over seeds and each
    seed's figures; strict JSON (a figure no episode defined is null). `ex` is the run's Experiment, `results`
    what `evaluate_runs` returned for its runs with `keys = eval_keys(seed, ...)`."""
    from pjrl_agents.numeric import strict_json
    spec, n = ex.spec, ex.spec.num_seeds
    first = next(iter(results.values()))["returns"]
    members = []
    for m, settings in enumerate(ex.members):
        entry = {"member": m, "settings": settings}
        for name, result in results.items():
            part = slice(m * n, (m + 1) * n)
            per_seed = summarise(result["returns"][part], result["lengths"][part])
            entry[name] = {"return_mean": nanmean(per_seed["return_mean"]),
                           "length_mean": nanmean(per_seed["length_mean"]),
                           "per_seed": per_seed, "returns": result["returns"][part].tolist()}
        members.append(entry)
    return strict_json({
        "env": spec.env, "algo": spec.algo, "update": update, "step": update * ex.steps_per_update, "num_seeds": n,
        "protocol": {"policies": list(results), "episodes_asked": episodes, "episodes_per_seed": first.shape[1],
                     "num_envs": ex.env.num_envs, "episodes_per_env": first.shape[1] // ex.env.num_envs,
                     "eval_seed": seed, "training_seed": spec.seed,
                     "keys": f"seed i plays envs from fold_in(fold_in(PRNGKey({seed}), {EVAL_STREAM:#x}), i); "
                             f"training keys are split(PRNGKey({spec.seed}), {n})",
                     "episodes": "each env's first episodes_per_env episodes"},
        "members": members})
