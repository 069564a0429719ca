"""What the runner's divergence check costs: the training chunk with and without it.

    python benchmarks/divergence_check.py [--repeats 7]

The runner's chunk (`loop.chunk_fn`) reports whether every parameter is
finite at its end (the losses, checked on the host, catch the rest). This times the same vmapped scan of all
updates with that check and without it (the same chunk less the check), for PPO and DQN on
gymnax CartPole-v1, 1 and 16 seeds, runs interleaved (A B A B ...) so load
drifts hit both alike. Prints the median run seconds of each and their ratio.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp

from pjrl_agents import algorithms
from pjrl_agents.run.experiment import build
from pjrl_agents.run.loop import chunk_fn
from pjrl_agents.run.spec import RunSpec


def plain_chunk(agent, chunk_len: int):
    """The runner's chunk less the check: skipped updates past `end`, no `_finite`."""
    def run_chunk(state, first, end):
        metric_shape = jax.eval_shape(lambda s: agent.update(s)[1], state)
        skip = lambda s: (s, jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), metric_shape))
        return jax.lax.scan(lambda s, i: jax.lax.cond(i < end, agent.update, skip, s), state,
                            first + jnp.arange(chunk_len))
    return run_chunk


def bench(algo: str, seeds: int, steps: int, repeats: int) -> dict:
    ex = build(RunSpec(algo=algo, num_seeds=seeds, settings={"total_timesteps": steps}, devices=1))
    keys, configs = ex.inputs()
    state = jax.jit(jax.vmap(ex.agent.init))(keys, configs)
    n = ex.num_updates
    fns = {}
    for name, make in (("plain", plain_chunk), ("checked", chunk_fn)):
        fn = jax.jit(jax.vmap(make(ex.agent, n), in_axes=(0, None, None)))
        fns[name] = fn.lower(state, 0, n).compile()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(state, 0, n))
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--steps", type=int, default=100_000)
    args = p.parse_args()
    assert set(algorithms.names()) >= {"ppo", "dqn"}
    print(f"{'algo':5s} {'seeds':>5s} {'plain s':>9s} {'checked s':>10s} {'ratio':>7s}   (median of {args.repeats}, "
          f"{args.steps:,} steps per seed)")
    for algo in ("ppo", "dqn"):
        for seeds in (1, 16):
            r = bench(algo, seeds, args.steps, args.repeats)
            print(f"{algo:5s} {seeds:5d} {r['plain']:9.3f} {r['checked']:10.3f} {r['checked'] / r['plain']:6.3f}x",
                  flush=True)


if __name__ == "__main__":
    main()
