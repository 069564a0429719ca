"""PPO on gymnax CartPole-v1 at PureJaxRL's config: compile s, run s, env steps/s.

    python benchmarks/ppo_gymnax.py --reference ../shared/reference/bench_purejaxrl.py

For 1, 16 and 64 seeds (one compile each; one seed runs unbatched, as in `pjrl train`) it prints pjrl's figures, the
reference's (PureJaxRL's own ppo.py, run as a subprocess in the same Python)
and their ratio, and the ceiling: a jit+scan of the vmapped env step with
random actions at the same batch. Above one seed, pjrl's figures come twice: the
seeds vmapped on one device, and split over one CPU device per core as `pjrl train`
does on a CPU (`xla_cpu.use_cpu_cores`; on a GPU both are the one device). Then
cold and warm compile of `pjrl train` with the persistent compilation cache, and its
run time beside the compiled core's, at 1 seed and at the first larger seed count.
All of it in --rounds rounds side by side (`benchmarks.common.paired_rounds`): each
figure is the median over the rounds, each ratio the median of the rounds' ratios.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import numpy as np

import pjrl_envs
from benchmarks.common import (
    Program,
    TrainCommand,
    add_round_flags,
    check_round_flags,
    layouts,
    paired_rounds,
    run_reference,
    seeds_program,
    time_compiled,
)
from pjrl_agents.algorithms import ppo
from pjrl_agents.numeric import final_returns
from pjrl_agents.run import xla_cpu

ENV = "CartPole-v1"


def program(seeds: int, steps: int, cores: bool = False) -> Program:
    """The compiled training of `seeds` seeds on one device, or (`cores`) split over the devices, as
    `pjrl train` runs them (`benchmarks.common.seeds_program`)."""
    config = ppo.PPOConfig(total_timesteps=steps)
    env = pjrl_envs.make(f"gymnax:{ENV}", num_envs=config.num_envs)
    return Program(*seeds_program(ppo.make_train(config, env), jax.random.split(jax.random.PRNGKey(0), seeds),
                                  cores))


def bench_ceiling(seeds: int, steps: int, repeats: int) -> dict:
    """The env alone: vmapped step with random actions, scanned, at pjrl's batch."""
    num_envs = 4
    env = pjrl_envs.make(f"gymnax:{ENV}", num_envs=num_envs)

    def rollout(key):
        state, _ = env.reset(key)
        def body(state, k):
            a_key, s_key = jax.random.split(k)
            action = jax.random.randint(a_key, (num_envs,), 0, env.action_space.n)
            state, ts = env.step(state, action, s_key)
            return state, ts.reward.sum()
        return jax.lax.scan(body, state, jax.random.split(key, steps // num_envs))[1].sum()

    r = time_compiled(jax.jit(jax.vmap(rollout)), jax.random.split(jax.random.PRNGKey(0), seeds), repeats=repeats)
    r.pop("out")
    r["steps_per_s"] = steps * seeds / r["run_s"]
    return r


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="1,16,64")
    p.add_argument("--steps", type=int, default=500_000, help="env steps per seed at 1 seed")
    p.add_argument("--steps-multi", type=int, default=100_000, help="env steps per seed above 1 seed")
    add_round_flags(p)
    p.add_argument("--reference", default=None, help="path to bench_purejaxrl.py")
    a = p.parse_args()
    check_round_flags(p, a)
    xla_cpu.use_cpu_cores()  # before JAX starts, as `pjrl train` does
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cpus, "
          f"{len(jax.devices())} devices; {a.rounds} round(s), medians over them")
    rows, clis, trained = [], {}, set()
    for seeds in [int(s) for s in a.seeds.split(",")]:
        steps = a.steps if seeds == 1 else a.steps_multi
        programs, core = layouts(functools.partial(program, seeds, steps), seeds)
        reference = functools.partial(run_reference, a.reference, [
            "--algo", "ppo", "--env", ENV, "--seeds", str(seeds), "--steps", str(steps), "--repeats",
            str(a.repeats)], timeout=900) if a.reference else None
        # `pjrl train` at 1 seed and at the first larger seed count
        train = None if a.no_train or (seeds > 1) in trained else TrainCommand(steps, seeds)
        trained.add(seeds > 1)
        res = paired_rounds(a.rounds, a.repeats, programs, reference, train, core)
        ceiling = bench_ceiling(seeds, steps, a.repeats)
        for name, prog in programs.items():
            r = res[name]
            r["final_return"] = float(final_returns(np.asarray(prog.out[1]["episode_return"])).mean())
            r["steps_per_s"] = steps * seeds / r["run_s"]
        ours = res["one device"]
        row = {"seeds": seeds, "steps_per_seed": steps, "pjrl": _rounded(ours),
               "ceiling_steps_per_s": round(ceiling["steps_per_s"])}
        line = (f"seeds={seeds:3d} steps/seed={steps:,}: pjrl (one device) compile {ours['compile_s']:.2f}s run "
                f"{ours['run_s']:.2f}s {ours['steps_per_s']:,.0f} steps/s return {ours['final_return']:.1f} | "
                f"env-only ceiling {ceiling['steps_per_s']:,.0f} steps/s "
                f"(training at {ours['steps_per_s'] / ceiling['steps_per_s']:.0%} of it)")
        if "cores" in res:
            cores = row["pjrl_cores"] = _rounded(res["cores"])
            line += (f"\n    pjrl (seeds over {len(jax.devices())} core devices) compile {cores['compile_s']:.2f}s run "
                     f"{cores['run_s']:.2f}s {cores['steps_per_s']:,.0f} steps/s return {cores['final_return']:.1f}")
        if "reference" in res:
            ref = row["reference"] = res["reference"]
            line += (f"\n    PureJaxRL compile {ref['compile_s']:.2f}s run {ref['run_s']:.2f}s "
                     f"{ref['steps_per_s']:,} steps/s return {ref['final_return']:.1f}")
            for name in programs:
                line += (f"\n    pjrl ({name}) / PureJaxRL, median of the rounds' ratios: compile "
                         f"{1 / res[name]['speedup_compile']:.2f}x, run {1 / res[name]['speedup_run']:.2f}x "
                         f"(speed {res[name]['speedup_run']:.2f}x)")
        print(line, flush=True)
        rows.append(row)
        for prog in programs.values():
            prog.close()
        if train:
            cli = clis[seeds] = {k: round(v, 3) if isinstance(v, float) else v for k, v in res["pjrl_train"].items()}
            cold, warm = cli["compile_cold_s"], cli["compile_warm_s"]
            print(f"pjrl train --num-seeds {seeds}: compile cold {cold:.2f}s, warm (persistent cache) {warm:.2f}s "
                  f"({warm / cold:.0%} of cold); run (files and TensorBoard on) {cli['run_s']:.2f}s vs the compiled "
                  f"core ({core}) {cli['core_run_s']:.2f}s, each round's pair: {cli['train_over_core']:.2f}x",
                  flush=True)
    print(json.dumps({"rows": rows, "pjrl_train": clis}))


def _rounded(r: dict) -> dict:
    return {k: round(v, 3) if isinstance(v, float) else [round(x, 3) for x in v] if isinstance(v, list) else v
            for k, v in r.items()}


if __name__ == "__main__":
    main()
