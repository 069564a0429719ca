"""PPO on gymnax CartPole-v1 at PureJaxRL's config: compile s, run s, env steps/s.

    python benchmarks/ppo_gymnax.py --reference ../shared/reference/bench_purejaxrl.py

For 1, 16 and 64 seeds (vmapped, one compile) it prints pjrl's figures, the
reference's (PureJaxRL's own ppo.py, run as a subprocess in the same Python)
and their ratio, and the ceiling: a jit+scan of the vmapped env step with
random actions at the same batch. Then cold and warm compile of `pjrl train`
with the persistent compilation cache, and its run time beside the compiled core's. Medians over
--repeats runs.
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
from benchmarks.common import ratio, run_reference, time_compiled
from pjrl_agents import ppo
from pjrl_agents.experiment import final_returns

ENV = "CartPole-v1"


def bench_pjrl(seeds: int, steps: int, repeats: int) -> dict:
    config = ppo.PPOConfig(total_timesteps=steps)
    env = pjrl_envs.make(f"gymnax:{ENV}", num_envs=config.num_envs)
    fn = jax.jit(jax.vmap(ppo.make_train(config, env)))
    r = time_compiled(fn, jax.random.split(jax.random.PRNGKey(0), seeds), repeats=repeats)
    r["final_return"] = float(final_returns(np.asarray(r.pop("out")[1]["episode_return"])).mean())
    r["steps_per_s"] = steps * seeds / r["run_s"]
    return r


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


def pjrl_train(steps: int, runs: int = 3) -> dict:
    """What users run: `pjrl train` (files and TensorBoard on) `runs` times sharing a fresh persistent
    cache. Returns the cold compile (first run), the warm one (median of the others) and the median run s."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PJRL_CACHE_DIR": os.path.join(tmp, "cache")}
        out = []
        for i in range(runs):
            run_dir = os.path.join(tmp, f"run{i}")
            subprocess.run([sys.executable, "-m", "pjrl_agents.cli", "train", "--total-timesteps", str(steps),
                            "--quiet", "--out", run_dir], env=env, check=True, capture_output=True)
            out.append(json.loads(Path(run_dir, "summary.json").read_text()))
    return {"compile_cold_s": out[0]["compile_s"], "compile_warm_s": float(np.median([o["compile_s"] for o in out[1:]])),
            "run_s": float(np.median([o["run_s"] for o in out]))}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="1,16,64")
    p.add_argument("--steps", type=int, default=500_000, help="env steps per seed at 1 seed")
    p.add_argument("--steps-multi", type=int, default=100_000, help="env steps per seed above 1 seed")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--reference", default=None, help="path to bench_purejaxrl.py")
    a = p.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cpus")
    rows = []
    for seeds in [int(s) for s in a.seeds.split(",")]:
        steps = a.steps if seeds == 1 else a.steps_multi
        ours = bench_pjrl(seeds, steps, a.repeats)
        ceiling = bench_ceiling(seeds, steps, a.repeats)
        ref = run_reference(a.reference, ["--algo", "ppo", "--env", ENV, "--seeds", str(seeds), "--steps",
                                          str(steps), "--repeats", str(a.repeats)]) if a.reference else None
        row = {"seeds": seeds, "steps_per_seed": steps,
               "pjrl": {k: round(v, 3) if isinstance(v, float) else v for k, v in ours.items() if k != "run_s_all"},
               "ceiling_steps_per_s": round(ceiling["steps_per_s"])}
        line = (f"seeds={seeds:3d} steps/seed={steps:,}: pjrl compile {ours['compile_s']:.2f}s run "
                f"{ours['run_s']:.2f}s {ours['steps_per_s']:,.0f} steps/s return {ours['final_return']:.1f} | "
                f"env-only ceiling {ceiling['steps_per_s']:,.0f} steps/s "
                f"(training at {ours['steps_per_s'] / ceiling['steps_per_s']:.0%} of it)")
        if ref:
            row["reference"] = ref
            line += (f"\n    PureJaxRL compile {ref['compile_s']:.2f}s run {ref['run_s']:.2f}s "
                     f"{ref['steps_per_s']:,} steps/s return {ref['final_return']:.1f} | pjrl/PureJaxRL: compile "
                     f"{ratio(ours['compile_s'], ref['compile_s'])}, run {ratio(ours['run_s'], ref['run_s'])}, "
                     f"speed {ratio(ours['steps_per_s'], ref['steps_per_s'])}")
        print(line, flush=True)
        rows.append(row)
    cli = pjrl_train(a.steps)
    cold, warm = cli["compile_cold_s"], cli["compile_warm_s"]
    line = f"pjrl train compile: cold {cold:.2f}s, warm (persistent cache) {warm:.2f}s ({warm / cold:.0%} of cold)"
    if rows[0]["seeds"] == 1:
        core = rows[0]["pjrl"]["run_s"]
        line += (f"\npjrl train run (files and TensorBoard on) {cli['run_s']:.2f}s vs the compiled core "
                 f"{core:.2f}s at 1 seed: {ratio(cli['run_s'], core)}")
    print(line)
    print(json.dumps({"rows": rows, "pjrl_train": cli}))


if __name__ == "__main__":
    main()
