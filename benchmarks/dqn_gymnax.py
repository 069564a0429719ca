"""DQN throughput on gymnax CartPole-v1 at PureJaxRL's dqn.py config, 1 and 16 seeds.

    python benchmarks/dqn_gymnax.py [--seeds 1,16] [--steps 500000] [--steps-multi 100000] [--rounds 3]
                                    [--repeats 1] [--reference ../shared/reference/bench_purejaxrl.py]

Prints, per seed count, one JSON line: compile_s (lower + compile, apart from
running), run_s, steps_per_s (env steps over all seeds per second) and
final_return (mean return over the last 5% of updates, over seeds). Above one
seed it runs twice: vmapped on one device, and split over one CPU device per
core as `pjrl train` lays the seeds out on a CPU ("layout": "cores"). With
--reference, runs that script with `--algo dqn` in this Python for the same
seeds and steps, and prints the ratios (above 1: pjrl is faster). And, per seed
count, what users run: `pjrl train --algo dqn` (files and TensorBoard on, a
fresh persistent cache: cold compile once, then warm) beside the compiled core
in the layout it uses (the cores above one seed). All of it in --rounds rounds
side by side (`benchmarks.common.paired_rounds`): each figure is the median over
the rounds, each ratio the median of the rounds' ratios.
"""
from __future__ import annotations

import argparse
import functools
import json
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
)
from pjrl_agents.algorithms import dqn
from pjrl_agents.numeric import final_returns
from pjrl_agents.run import loop, xla_cpu

ENV = "gymnax:CartPole-v1"


def program(config: dqn.DQNConfig, num_seeds: int, cores: bool = False) -> Program:
    """The training of `num_seeds` seeds on one device, or (`cores`) split over the devices."""
    env = pjrl_envs.make(ENV, num_envs=config.num_envs)
    fn, keys = seeds_program(dqn.make_train(config, env), jax.random.split(jax.random.PRNGKey(0), num_seeds), cores)
    return Program(fn, keys, lowering=functools.partial(loop.chunk_lowering, dqn.DQN, num_seeds == 1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="1,16", help="comma-separated seed counts")
    p.add_argument("--steps", type=float, default=500_000, help="env steps per seed at 1 seed")
    p.add_argument("--steps-multi", type=float, default=100_000, help="env steps per seed above 1 seed")
    add_round_flags(p)
    p.add_argument("--reference", default=None, help="path to bench_purejaxrl.py to run side by side")
    a = p.parse_args()
    check_round_flags(p, a)
    xla_cpu.use_cpu_cores()  # before JAX starts, as `pjrl train` does
    print(f"# {jax.devices()[0].platform} x{jax.device_count()}, jax {jax.__version__}; {a.rounds} round(s), "
          "medians over them", flush=True)
    for n in (int(s) for s in a.seeds.split(",")):
        steps = int(a.steps if n == 1 else a.steps_multi)
        # PureJaxRL's dqn.py config exactly (ENV_DEFAULTS also anneals the learning rate; the cost is the same)
        config = dqn.default_config(ENV, total_timesteps=steps, anneal_lr=False)
        total = config.num_updates * config.steps_per_update
        programs, core = layouts(functools.partial(program, config, n), n, dqn.ALGORITHM.concurrent_runs)
        reference = functools.partial(run_reference, a.reference, [
            "--algo", "dqn", "--env", "CartPole-v1", "--seeds", str(n), "--steps", str(steps), "--repeats",
            str(a.repeats)]) if a.reference else None
        train = None if a.no_train else TrainCommand(steps, n, algo="dqn")
        res = paired_rounds(a.rounds, a.repeats, programs, reference, train, core)
        for name, prog in programs.items():
            r = res[name]
            returns = np.asarray(prog.out[1]["episode_return"])  # (seeds, updates)
            print(json.dumps({"ref": "pjrl", "layout": name, "algo": "dqn", "env": ENV, "seeds": n, "steps": total,
                              "compile_s": round(r["compile_s"], 3), "run_s": round(r["run_s"], 3),
                              "run_s_rounds": [round(x, 3) for x in r["run_s_rounds"]],
                              "steps_per_s": round(total * n / r["run_s"]),
                              "final_return": round(float(final_returns(returns).mean()), 2)}), flush=True)
            prog.close()
        if "reference" in res:
            ref = res["reference"]
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in ref.items()}), flush=True)
            for name in programs:
                print(json.dumps({"seeds": n, "layout": name, "speedup_run": round(res[name]["speedup_run"], 2),
                                  "speedup_compile": round(res[name]["speedup_compile"], 2),
                                  "final_return_purejaxrl": ref["final_return"]}), flush=True)
        if train:
            cli = res["pjrl_train"]
            print(json.dumps({"seeds": n, "pjrl_train": {k: round(v, 3) if isinstance(v, float) else v
                                                         for k, v in cli.items()}}), flush=True)


if __name__ == "__main__":
    main()
