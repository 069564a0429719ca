"""DQN throughput on gymnax CartPole-v1 at PureJaxRL's dqn.py config, 1 and 16 seeds.

    python benchmarks/dqn_gymnax.py [--seeds 1,16] [--steps 500000] [--steps-multi 100000] [--repeats 3]
                                    [--reference ../shared/reference/bench_purejaxrl.py]

Prints, per seed count, one JSON line: compile_s (lower + compile, apart from
running), run_s (median of the repeats), steps_per_s (env steps over all seeds
per second) and final_return (mean return over the last 5% of updates, over
seeds). Above one seed it runs twice: vmapped on one device, and split over one
CPU device per core as `pjrl train` lays the seeds out on a CPU ("layout":
"cores"). With --reference, runs that script with `--algo dqn` in this Python for
the same seeds and steps, and prints the ratios (above 1: pjrl is faster). Then,
per seed count, what users run: `pjrl train --algo dqn` (files and TensorBoard on,
`--cli-runs` times sharing a fresh persistent cache: cold and warm compile) beside
the compiled core in the layout it uses (the cores above one seed).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import numpy as np

import pjrl_envs
from benchmarks.common import pjrl_train, ratio, run_reference, seeds_program
from pjrl_agents import distributed, dqn
from pjrl_agents.experiment import final_returns

ENV = "gymnax:CartPole-v1"


def bench(num_seeds: int, steps: int, repeats: int, cores: bool = False) -> dict:
    # PureJaxRL's dqn.py config exactly (ENV_DEFAULTS also anneals the learning rate; the cost is the same)
    config = dqn.default_config(ENV, total_timesteps=steps, anneal_lr=False)
    env = pjrl_envs.make(ENV, num_envs=config.num_envs)
    fn, keys = seeds_program(dqn.make_train(config, env), jax.random.split(jax.random.PRNGKey(0), num_seeds), cores)
    t0 = time.perf_counter()
    compiled = fn.lower(keys).compile()
    compile_s = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _, metrics = jax.block_until_ready(compiled(keys))
        runs.append(time.perf_counter() - t0)
    run_s = statistics.median(runs)
    returns = np.asarray(metrics["episode_return"])  # (seeds, updates)
    total = config.num_updates * config.steps_per_update
    return {"ref": "pjrl", "layout": "cores" if cores else "one device", "algo": "dqn", "env": ENV,
            "seeds": num_seeds, "steps": total,
            "compile_s": round(compile_s, 3), "run_s": round(run_s, 3), "run_s_all": [round(x, 3) for x in runs],
            "steps_per_s": round(total * num_seeds / run_s),
            "final_return": round(float(final_returns(returns).mean()), 2)}


def reference(path: str, num_seeds: int, steps: int, repeats: int) -> dict:
    ref = run_reference(path, ["--algo", "dqn", "--env", "CartPole-v1", "--seeds", str(num_seeds), "--steps",
                               str(steps), "--repeats", str(repeats)])
    if ref is None:
        raise SystemExit("the reference failed (its error is above)")
    return ref


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="1,16", help="comma-separated seed counts")
    p.add_argument("--steps", type=float, default=500_000, help="env steps per seed at 1 seed")
    p.add_argument("--steps-multi", type=float, default=100_000, help="env steps per seed above 1 seed")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per setting (median reported)")
    p.add_argument("--reference", default=None, help="path to bench_purejaxrl.py to run side by side")
    p.add_argument("--cli-runs", type=int, default=3, help="`pjrl train` runs per seed count (the first compiles "
                   "cold, the others warm), at least 2; 0: none")
    a = p.parse_args()
    if a.cli_runs == 1 or a.cli_runs < 0:
        p.error(f"--cli-runs {a.cli_runs}: use 0 (none) or 2 or more (one cold compile, then warm ones)")
    distributed.use_cpu_cores()  # before JAX starts, as `pjrl train` does
    print(f"# {jax.devices()[0].platform} x{jax.device_count()}, jax {jax.__version__}", flush=True)
    for n in (int(s) for s in a.seeds.split(",")):
        steps = int(a.steps if n == 1 else a.steps_multi)
        results = [bench(n, steps, a.repeats)]
        if n > 1 and jax.device_count() > 1:
            results.append(bench(n, steps, a.repeats, cores=True))
        for ours in results:
            print(json.dumps(ours), flush=True)
        if a.reference:
            ref = reference(a.reference, n, steps, a.repeats)
            print(json.dumps(ref), flush=True)
            for ours in results:
                print(json.dumps({"seeds": n, "layout": ours["layout"],
                                  "speedup_run": round(ref["run_s"] / ours["run_s"], 2),
                                  "speedup_compile": round(ref["compile_s"] / ours["compile_s"], 2),
                                  "final_return_pjrl": ours["final_return"],
                                  "final_return_purejaxrl": ref["final_return"]}), flush=True)
        if a.cli_runs:
            core = results[-1]
            cli = pjrl_train(steps, runs=a.cli_runs, seeds=n, algo="dqn")
            print(json.dumps({"seeds": n, "pjrl_train": {k: round(v, 3) for k, v in cli.items()},
                              "core_layout": core["layout"], "core_run_s": core["run_s"],
                              "train_over_core": ratio(cli["run_s"], core["run_s"])}), flush=True)


if __name__ == "__main__":
    main()
