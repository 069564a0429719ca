"""Recurrent PPO on gymnax CartPole-v1 at PureJaxRL's ppo_rnn.py config, beside PureJaxRL's own.

    python benchmarks/ppo_rnn.py --reference ../shared/reference/bench_purejaxrl.py

The config is ppo_rnn.py's: 4 envs x 128 steps, 4 epochs of 4 minibatches, lr 2.5e-4
annealed, a 128-unit ReLU embedding into a GRU of 128 and 128-unit ReLU actor and
critic layers (`torso=gru, memory_size=128, hidden_sizes=128, activation=relu`).
Prints compile s, run s (median of --repeats), env steps/s and final return for
pjrl's compiled core and for the reference (`--algo ppo_rnn`, run as a subprocess in
the same Python), their ratios, and what `pjrl train` takes for the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import numpy as np

import pjrl_envs
from benchmarks.common import ratio, run_reference, seeds_program, time_compiled
from pjrl_agents.algorithms import ppo
from pjrl_agents.numeric import final_returns

ENV = "CartPole-v1"
SETTINGS = dict(torso="gru", memory_size=128, hidden_sizes=(128,), activation="relu")


def bench_pjrl(seeds: int, steps: int, repeats: int) -> dict:
    config = ppo.default_config(f"gymnax:{ENV}", total_timesteps=steps, **SETTINGS)
    env = pjrl_envs.make(f"gymnax:{ENV}", num_envs=config.num_envs)
    fn, keys = seeds_program(ppo.make_train(config, env), jax.random.split(jax.random.PRNGKey(0), seeds))
    r = time_compiled(fn, keys, repeats=repeats)
    r["final_return"] = float(np.nanmean(final_returns(np.asarray(r.pop("out")[1]["episode_return"]))))
    r["steps_per_s"] = steps * seeds / r["run_s"]
    return r


def pjrl_train(steps: int) -> dict:
    """`pjrl train` with the same settings (files and TensorBoard on, greedy evaluation off)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PJRL_CACHE_DIR": "off"}
        settings = [x for k, v in SETTINGS.items()
                    for x in ("--set", f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}")]
        subprocess.run([sys.executable, "-m", "pjrl_agents.cli", "train", "--total-timesteps", str(steps), "--quiet",
                        "--eval-episodes", "0", *settings, "--out", os.path.join(tmp, "run")],
                       env=env, check=True, capture_output=True)
        return json.loads(Path(tmp, "run", "summary.json").read_text())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="1")
    p.add_argument("--steps", type=int, default=100_000, help="env steps per seed")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--reference", default=None, help="path to bench_purejaxrl.py")
    a = p.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cpus; "
          f"{a.steps:,} steps per seed, median of {a.repeats}")
    for seeds in [int(s) for s in a.seeds.split(",")]:
        ours = bench_pjrl(seeds, a.steps, a.repeats)
        line = (f"seeds={seeds}: pjrl compile {ours['compile_s']:.2f}s run {ours['run_s']:.2f}s "
                f"{ours['steps_per_s']:,.0f} steps/s return {ours['final_return']:.1f}")
        ref = run_reference(a.reference, ["--algo", "ppo_rnn", "--env", ENV, "--seeds", str(seeds), "--steps",
                                          str(a.steps), "--repeats", str(a.repeats)], timeout=1800) \
            if a.reference else None
        if ref:
            line += (f"\n    PureJaxRL ppo_rnn compile {ref['compile_s']:.2f}s run {ref['run_s']:.2f}s "
                     f"{ref['steps_per_s']:,} steps/s return {ref['final_return']:.1f} | pjrl/PureJaxRL: compile "
                     f"{ratio(ours['compile_s'], ref['compile_s'])}, run {ratio(ours['run_s'], ref['run_s'])}, "
                     f"speed {ratio(ours['steps_per_s'], ref['steps_per_s'])}")
        print(line, flush=True)
    cli = pjrl_train(a.steps)
    print(f"pjrl train (1 seed): compile {cli['compile_s']:.2f}s run {cli['run_s']:.2f}s "
          f"({cli['steps_per_s']:,} steps/s) vs the compiled core's run {ours['run_s']:.2f}s at {seeds} seed(s)")


if __name__ == "__main__":
    main()
