"""PPO on Breakout-MinAtar (gymnax) next to PureJaxRL's own ppo.py at its MinAtar config.

    python benchmarks/minatar_ppo.py --reference ../shared/reference/bench_purejaxrl.py
    python benchmarks/minatar_ppo.py --reference ... --steps 1e6,1e7 --seeds 8

The config is PureJaxRL's MinAtar one (lr 5e-3 annealed, 64 envs, 128 steps,
4 epochs, 8 minibatches, relu 64x64 MLP on the flattened frame), so the two
differ only in code. Both sides train the seeds `split(PRNGKey(0), n)`. For each
budget it prints each side's final return per seed (mean return of the episodes
that ended in each of the last 5% of updates), the reference's in its own lagging
metric too (`benchmarks/purejaxrl_seeds.py` runs PureJaxRL's ppo.py seed by seed),
the gap as a Welch t statistic (|t| < 2: within noise), and both speeds. pjrl is
also run with its default torso for image-like observations (`--torso cnn`) when
asked.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import numpy as np

import pjrl_envs
from benchmarks.common import ratio, run_reference, time_compiled
from pjrl_agents.algorithms import ppo
from pjrl_agents.numeric import final_returns

ENV = "Breakout-MinAtar"


def bench_pjrl(steps: int, seeds: int, torso: str) -> dict:
    config = ppo.default_config(f"gymnax:{ENV}", total_timesteps=steps, torso=torso)
    env = pjrl_envs.make(f"gymnax:{ENV}", num_envs=config.num_envs)
    fn = jax.jit(jax.vmap(ppo.make_train(config, env)))
    r = time_compiled(fn, jax.random.split(jax.random.PRNGKey(0), seeds), repeats=1)
    per_seed = final_returns(np.asarray(r.pop("out")[1]["episode_return"]))
    return {"compile_s": r["compile_s"], "run_s": r["run_s"], "steps_per_s": steps * seeds / r["run_s"],
            "final_return": float(per_seed.mean()), "per_seed": [round(float(x), 2) for x in per_seed]}


def welch_t(a: list[float], b: list[float]) -> float:
    """Welch's t statistic for the difference of two means; nan with fewer than two samples a side."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    return float((a.mean() - b.mean()) / np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", default=None, help="path to bench_purejaxrl.py (runs PureJaxRL's ppo.py)")
    p.add_argument("--steps", default="1e6", help="comma-separated budgets, env steps per seed")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--torso", default="mlp", help="mlp (PureJaxRL's network), cnn, or mlp,cnn")
    args = p.parse_args()
    print(f"Breakout-MinAtar PPO, PureJaxRL's MinAtar config, {args.seeds} seeds, {jax.devices()[0].platform}")
    for steps in [int(float(s)) for s in args.steps.split(",")]:
        for torso in args.torso.split(","):
            r = bench_pjrl(steps, args.seeds, torso)
            print(f"{steps:>10,} steps | pjrl ({torso}) | return {r['final_return']:6.2f} per seed {r['per_seed']}"
                  f" | compile {r['compile_s']:5.1f}s run {r['run_s']:7.1f}s {r['steps_per_s']:>9,.0f} steps/s",
                  flush=True)
        if args.reference:
            seeds_script = str(Path(__file__).with_name("purejaxrl_seeds.py"))
            ref = run_reference(seeds_script, ["--reference", args.reference, "--env", ENV, "--minatar",
                                               "--steps", str(steps), "--seeds", str(args.seeds)],
                                timeout=300 + 5 * (r["compile_s"] + r["run_s"]))
            if ref:
                ref_speed = steps / ref["run_s_per_seed"]
                print(f"{steps:>10,} steps | PureJaxRL  | return {ref['final_return']:6.2f} per seed {ref['per_seed']}"
                      f" | compile {ref['compile_s']:5.1f}s {ref_speed:>9,.0f} steps/s (one seed at a time)",
                      flush=True)
                print(f"{steps:>10,} steps | PureJaxRL's own lagging metric: {ref['final_return_lagging']:.2f}"
                      f" per seed {ref['per_seed_lagging']}", flush=True)
                gap = r["final_return"] - ref["final_return"]
                t = welch_t(r["per_seed"], ref["per_seed"])
                speed = f" | speed {ratio(r['steps_per_s'], ref_speed)} of PureJaxRL's" if args.seeds == 1 else ""
                print(f"{steps:>10,} steps | pjrl - PureJaxRL = {gap:+.2f} (Welch t {t:+.2f}){speed}", flush=True)


if __name__ == "__main__":
    main()
