"""PureJaxRL's own ppo.py over several seeds, with each seed's final return.

    python benchmarks/purejaxrl_seeds.py --reference ../shared/reference/bench_purejaxrl.py \
        --env Breakout-MinAtar --minatar --steps 1e6 --seeds 8

`bench_purejaxrl.py` prints one mean over seeds, in PureJaxRL's own metric (every
env's last finished episode, averaged over every step, so it lags). To compare
learning curves seed for seed, this script imports the same `ppo.py` and config,
runs the seeds `split(PRNGKey(0), n)` (the keys pjrl's benchmarks use), and
prints one JSON line holding both metrics per seed:

- `final_return`: mean return of the episodes that ended in each update, averaged
  over the last 5% of updates (pjrl's `experiment.final_returns`);
- `final_return_lagging`: PureJaxRL's own figure, as `bench_purejaxrl.py` prints it.

The seeds run one after another through one compiled, unvmapped `train`: on CPU,
vmapping them can hang for good in flax's batched QR init (the deadlock that
`pjrl_agents.algorithms.networks.orthogonal` avoids). Take speed ratios from
`bench_purejaxrl.py`, not from here.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

# The PPO settings bench_purejaxrl.py passes (PureJaxRL's defaults), and its MinAtar changes.
CONFIG = {"LR": 2.5e-4, "NUM_ENVS": 4, "NUM_STEPS": 128, "UPDATE_EPOCHS": 4, "NUM_MINIBATCHES": 4,
          "GAMMA": 0.99, "GAE_LAMBDA": 0.95, "CLIP_EPS": 0.2, "ENT_COEF": 0.01, "VF_COEF": 0.5,
          "MAX_GRAD_NORM": 0.5, "ACTIVATION": "tanh", "ANNEAL_LR": True, "DEBUG": False}
MINATAR = {"LR": 5e-3, "NUM_ENVS": 64, "NUM_STEPS": 128, "NUM_MINIBATCHES": 8, "ACTIVATION": "relu"}


def load_ppo(reference: str):
    """Imports the reference's ppo.py, with gymnax 1.x envs handed back the five-value step it unpacks.

    gymnax 1.x's compatibility wrapper also puts `final_observation` into `info`,
    which ppo.py returns for every step: 16 GB per seed at 1e7 MinAtar steps. The
    gymnax that ppo.py was written for had no such key, so it is dropped here.
    """
    import gymnax
    from gymnax.wrappers.compat import LegacyStepAPIWrapper

    class LegacyStep(LegacyStepAPIWrapper):
        def step(self, *args, **kwargs):
            obs, state, reward, done, info = super().step(*args, **kwargs)
            return obs, state, reward, done, {k: v for k, v in info.items() if k != "final_observation"}

    if not hasattr(jax, "tree_map"):
        jax.tree_map = jax.tree.map
    sys.path.insert(0, str(Path(reference).resolve().parent / "purejaxrl"))
    make = gymnax.make
    gymnax.make = lambda name, **kw: (lambda env, params: (LegacyStep(env), params))(*make(name, **kw))
    import ppo

    return ppo


def per_seed_returns(metrics: dict) -> tuple[np.ndarray, np.ndarray]:
    """`(ended-episode metric, lagging metric)`, each `(seeds,)`, from metrics `(seeds, updates, steps, envs)`."""
    rets = np.asarray(metrics["returned_episode_returns"], np.float64)
    done = np.asarray(metrics["returned_episode"], bool)
    seeds, updates = rets.shape[:2]
    rets, done = rets.reshape(seeds, updates, -1), done.reshape(seeds, updates, -1)
    tail = max(1, updates // 20)
    lagging = rets.mean(-1)[:, -tail:].mean(-1)
    per_update = np.full((seeds, updates), np.nan)
    counts = done.sum(-1)
    sums = np.where(done, rets, 0.0).sum(-1)
    per_update[counts > 0] = sums[counts > 0] / counts[counts > 0]
    for s in range(seeds):  # carry the last value over updates where no episode ended, as pjrl does
        for u in range(1, updates):
            if np.isnan(per_update[s, u]):
                per_update[s, u] = per_update[s, u - 1]
    ended = np.nan_to_num(per_update)[:, -tail:].mean(-1)
    return ended, lagging


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", required=True, help="path to bench_purejaxrl.py (its purejaxrl/ folder is used)")
    p.add_argument("--env", default="Breakout-MinAtar")
    p.add_argument("--minatar", action="store_true", help="PureJaxRL's MinAtar config")
    p.add_argument("--steps", type=float, default=1e6)
    p.add_argument("--seeds", type=int, default=4)
    a = p.parse_args()
    config = dict(CONFIG, ENV_NAME=a.env, TOTAL_TIMESTEPS=a.steps, **(MINATAR if a.minatar else {}))
    train = load_ppo(a.reference).make_train(config)
    keys = jax.random.split(jax.random.PRNGKey(0), a.seeds)
    t0 = time.perf_counter()
    compiled = jax.jit(train).lower(keys[0]).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    per_key = [jax.device_get(compiled(k)["metrics"]) for k in keys]
    run_s = (time.perf_counter() - t0) / a.seeds
    metrics = {k: np.stack([m[k] for m in per_key]) for k in ("returned_episode_returns", "returned_episode")}
    ended, lagging = per_seed_returns(metrics)
    print(json.dumps({"ref": "purejaxrl", "env": a.env, "seeds": a.seeds, "steps": int(a.steps),
                      "compile_s": round(compile_s, 3), "run_s_per_seed": round(run_s, 3),
                      "final_return": round(float(ended.mean()), 3), "per_seed": [round(float(x), 2) for x in ended],
                      "final_return_lagging": round(float(lagging.mean()), 3),
                      "per_seed_lagging": [round(float(x), 2) for x in lagging]}))


if __name__ == "__main__":
    main()
