"""PQN throughput on gymnax CartPole-v1 at purejaxql's CartPole config: pjrl's against purejaxql's own code.

    python benchmarks/pqn_speed.py --purejaxql DIR [--seeds 1,16] [--steps 500000] [--steps-multi 100000]
                                   [--rounds 3] [--repeats 1] [--no-train]

`DIR` is a checkout of github.com/mttga/purejaxql (measured at commit 47af6d7): the
reference is its own `purejaxql/pqn_gymnax.py`, imported unchanged, run with its
`pqn_cartpole.yaml` (total and decay steps set to the run's, its evaluation during
training off, as pjrl's program has none). It was written for gymnax's five-value step;
its LogWrapper is given gymnax 1.x's six values folded back into five (`done` is
terminated or truncated, as it was). That module imports hydra, omegaconf and
safetensors for its command line and checkpoints only; where they are not installed,
empty stand-ins take their place for the import (its training code uses none of them).
It runs in a process of its own (`benchmarks.common.run_reference`), seeds vmapped in
one compile as its `single_run` does, even for one seed.

pjrl runs `pqn.default_config("gymnax:CartPole-v1")`, the same settings. Per seed count
it prints one JSON line per layout (pjrl's: vmapped on one device, and above one seed
also split over one CPU device per core as `pjrl train` lays them out), then the
reference's line and the ratios (above 1: pjrl is faster): compile_s (lower + compile,
apart from running), run_s, steps_per_s and final_return (pjrl: mean return over the
last 5% of updates; purejaxql: its own `returned_episode_returns`, the mean over the
last 5% of updates of the per-update mean of LogWrapper's running figure). Every figure
is the median over --rounds rounds run side by side (`benchmarks.common.paired_rounds`).
With `pjrl train --algo pqn` installed (and not --no-train), also what users run.

Measured on a 2-core CPU (jax 0.10.2, another job sharing it, so single runs varied by up to 2x;
`--seeds 1,16 --rounds 3`, purejaxql at 47af6d7):

| seeds, steps each | pjrl compile / run | purejaxql compile / run | run speedup (median of rounds) |
|---|---|---|---|
| 1, 499,712 | 7.5 s / 19.0 s | 10.5 s / 34.8 s | 1.76x |
| 16, 98,304, vmapped on one device | 7.0 s / 56.1 s | 7.7 s / 52.4 s | 1.00x |
| 16, 98,304, split over the 2 cores | 6.3 s / 41.5 s | (as above) | 1.26x |

Final returns, each in its own metric (above): 1 seed 482 (purejaxql 470); 16 seeds at 98k steps 374 (purejaxql 342).
`pjrl train --algo pqn`: 1 seed compiles in 9.4 s cold, 1.7 s warm, and runs in 19.3 s; 16 seeds 5.9 s cold,
2.0 s warm, run 36.9 s.
"""
from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ENV = "gymnax:CartPole-v1"


# ---------------------------------------------------------------- the reference, in its own process


def _stand_ins() -> None:
    """Empty modules for the imports pqn_gymnax.py makes for its command line and checkpoints, where missing."""
    import importlib.util
    if importlib.util.find_spec("hydra") is None:
        sys.modules["hydra"] = types.SimpleNamespace(main=lambda *a, **k: (lambda f: f))  # type: ignore[assignment]
    if importlib.util.find_spec("omegaconf") is None:
        sys.modules["omegaconf"] = types.SimpleNamespace(OmegaConf=None)  # type: ignore[assignment]
    if importlib.util.find_spec("safetensors") is None:
        flax_io = types.SimpleNamespace(load_file=None, save_file=None)
        sys.modules["safetensors"] = types.SimpleNamespace(flax=flax_io)  # type: ignore[assignment]
        sys.modules["safetensors.flax"] = flax_io  # type: ignore[assignment]


def reference(checkout: str, seeds: int, steps: int, repeats: int) -> None:
    """Compiles and runs purejaxql's own PQN on CartPole; prints one JSON line."""
    import jax
    import numpy as np
    import yaml

    _stand_ins()
    sys.path.insert(0, checkout)
    from purejaxql import pqn_gymnax

    class LogWrapper(pqn_gymnax.LogWrapper):
        """gymnax 1.x's LogWrapper handing back the five-value step pqn_gymnax.py unpacks (`done` is terminated or
        truncated), without the `final_observation` gymnax 1.x adds to `info`, which the gymnax it was
        written for did not have (pqn_gymnax.py averages every info entry into its metrics)."""

        def step(self, key, state, action, params=None):
            obs, state, reward, terminated, truncated, info = super().step(key, state, action, params)
            info = {k: v for k, v in info.items() if k != "final_observation"}
            return obs, state, reward, terminated | truncated, info

    pqn_gymnax.LogWrapper = LogWrapper

    config = yaml.safe_load((Path(checkout) / "purejaxql/config/alg/pqn_cartpole.yaml").read_text())
    config.update(TOTAL_TIMESTEPS=steps, TOTAL_TIMESTEPS_DECAY=steps, TEST_DURING_TRAINING=False,
                  WANDB_MODE="disabled", NUM_SEEDS=seeds, SEED=0)
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    train = jax.jit(jax.vmap(pqn_gymnax.make_train(config)))
    t0 = time.perf_counter()
    compiled = train.lower(keys).compile()
    compile_s = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(keys))
        runs.append(time.perf_counter() - t0)
    returns = np.asarray(out["metrics"]["returned_episode_returns"])  # (seeds, updates)
    last = returns[:, -max(1, returns.shape[1] // 20):]
    updates = steps // (config["NUM_ENVS"] * config["NUM_STEPS"])
    print(json.dumps({"ref": "purejaxql", "algo": "pqn", "env": ENV, "seeds": seeds,
                      "steps": updates * config["NUM_ENVS"] * config["NUM_STEPS"], "compile_s": compile_s,
                      "run_s": statistics.median(runs), "run_s_all": runs,
                      "final_return": round(float(last.mean()), 2)}), flush=True)


# ---------------------------------------------------------------- pjrl, and the rounds


def program(config, num_seeds: int, cores: bool = False):
    """pjrl's training of `num_seeds` seeds on one device, or (`cores`) split over the devices."""
    import jax

    import pjrl_envs
    from benchmarks.common import Program, seeds_program
    from pjrl_agents.algorithms import pqn
    from pjrl_agents.run import loop

    env = pjrl_envs.make(ENV, num_envs=config.num_envs)
    fn, keys = seeds_program(pqn.make_train(config, env), jax.random.split(jax.random.PRNGKey(0), num_seeds), cores)
    return Program(fn, keys, lowering=functools.partial(loop.chunk_lowering, pqn.PQN, num_seeds == 1))


def child() -> None:
    """The reference's own process: it imports nothing of pjrl, whose import sets XLA flags of its own."""
    c = argparse.ArgumentParser()
    c.add_argument("--child", action="store_true")
    c.add_argument("--purejaxql", required=True)
    c.add_argument("--seeds", type=int, default=1)
    c.add_argument("--steps", type=int, default=500_000)
    c.add_argument("--repeats", type=int, default=1)
    a = c.parse_args()
    reference(a.purejaxql, a.seeds, a.steps, a.repeats)


def main() -> None:
    if "--child" in sys.argv[1:]:
        child()
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--purejaxql", required=True, help="a checkout of github.com/mttga/purejaxql")
    p.add_argument("--seeds", default="1,16", help="comma-separated seed counts")
    p.add_argument("--steps", type=float, default=500_000, help="env steps per seed at 1 seed")
    p.add_argument("--steps-multi", type=float, default=100_000, help="env steps per seed above 1 seed")
    from benchmarks.common import add_round_flags, check_round_flags
    add_round_flags(p)
    a = p.parse_args()
    check_round_flags(p, a)
    if not (Path(a.purejaxql) / "purejaxql" / "pqn_gymnax.py").is_file():
        p.error(f"--purejaxql {a.purejaxql}: no purejaxql/pqn_gymnax.py there; clone github.com/mttga/purejaxql")

    from pjrl_agents.run import xla_cpu
    xla_cpu.use_cpu_cores()  # before JAX starts, as `pjrl train` does
    import jax
    import numpy as np

    from benchmarks.common import TrainCommand, layouts, paired_rounds, run_reference
    from pjrl_agents import algorithms
    from pjrl_agents.algorithms import pqn
    from pjrl_agents.numeric import final_returns

    print(f"# {jax.devices()[0].platform} x{jax.device_count()}, jax {jax.__version__}; {a.rounds} round(s), "
          "medians over them", flush=True)
    installed = "pqn" in algorithms.names()
    if not installed and not a.no_train:
        print("# pjrl train --algo pqn is not installed here (no entry point): left out", flush=True)
    for n in (int(s) for s in a.seeds.split(",")):
        steps = int(a.steps if n == 1 else a.steps_multi)
        config = pqn.default_config(ENV, total_timesteps=steps)
        total = config.num_updates * config.steps_per_update
        programs, core = layouts(functools.partial(program, config, n), n,
                                 pqn.ALGORITHM.concurrent_runs or xla_cpu.CONCURRENT_RUNS)
        ref = functools.partial(run_reference, str(Path(__file__).resolve()), [
            "--child", "--purejaxql", a.purejaxql, "--seeds", str(n), "--steps", str(steps),
            "--repeats", str(a.repeats)])
        train = None if a.no_train or not installed else TrainCommand(steps, n, algo="pqn", env=ENV)
        res = paired_rounds(a.rounds, a.repeats, programs, ref, train, core)
        for name, prog in programs.items():
            r = res[name]
            returns = np.asarray(prog.out[1]["episode_return"])  # (seeds, updates)
            print(json.dumps({"ref": "pjrl", "layout": name, "algo": "pqn", "env": ENV, "seeds": n, "steps": total,
                              "compile_s": round(r["compile_s"], 3), "run_s": round(r["run_s"], 3),
                              "run_s_rounds": [round(x, 3) for x in r["run_s_rounds"]],
                              "steps_per_s": round(total * n / r["run_s"]),
                              "final_return": round(float(final_returns(returns).mean()), 2)}), flush=True)
            prog.close()
        ref_res = res["reference"]
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in ref_res.items()}), flush=True)
        for name in programs:
            print(json.dumps({"seeds": n, "layout": name, "speedup_run": round(res[name]["speedup_run"], 2),
                              "speedup_compile": round(res[name]["speedup_compile"], 2)}), flush=True)
        if train:
            cli = res["pjrl_train"]
            print(json.dumps({"seeds": n, "pjrl_train": {k: round(v, 3) if isinstance(v, float) else v
                                                         for k, v in cli.items()}}), flush=True)


if __name__ == "__main__":
    main()
