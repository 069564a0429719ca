"""SAC and TD3 throughput on gymnax Pendulum-v1 beside rejax's own SAC and TD3 at the same config, 1 and 16 seeds.

    python benchmarks/offpolicy_speed.py --rejax-site DIR [--algos sac,td3] [--seeds 1,16] [--steps 10000]
                                         [--rounds 3] [--repeats 1] [--no-train]

Both run rejax's Pendulum configs (`configs/gymnax/pendulum.yaml`: one env, its batch, buffer, learning
rates, Polyak rates, noise, 64x64 swish networks, normalised observations, one gradient step per env step;
pjrl takes an update's 8 env steps, then its 8 gradient steps), spelled in each library's settings below
(pjrl's own Pendulum defaults differ where they learned better). rejax runs in a process of its own
(`benchmarks/rejax_reference.py`, its evaluation callback a no-op while timed; `--rejax-site` holds rejax
and distrax). Prints per algorithm and seed count: pjrl's compile_s and run_s (lower + compile apart from
running; above one seed also split over one CPU device per core, as `pjrl train` lays seeds out), rejax's,
their ratios (above 1: pjrl is faster), pjrl's final training return (last 5 % of updates) beside rejax's
greedy one, and what users run (`pjrl train`, files and TensorBoard on) beside the compiled core. Medians
over --rounds rounds side by side (`benchmarks.common.paired_rounds`).
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
from pjrl_agents.algorithms import sac, td3
from pjrl_agents.numeric import final_returns
from pjrl_agents.run import loop, xla_cpu

ENV = "gymnax:Pendulum-v1"
MODULES = {"sac": sac, "td3": td3}
REFERENCE = str(Path(__file__).resolve().parent / "rejax_reference.py")

# rejax's Pendulum configs, as (pjrl settings, rejax settings)
CONFIGS = {
    "sac": (dict(num_envs=1, num_steps=8, buffer_size=10_000, batch_size=256, learning_starts=256, actor_lr=0.01,
                 critic_lr=0.01, alpha_lr=0.01, alpha=1.0, tau=0.02, gamma=0.99, hidden_sizes=(64, 64),
                 activation="silu", normalize_obs=True),
            dict(agent_kwargs={"activation": "swish"}, num_envs=1, buffer_size=10_000, fill_buffer=256,
                 batch_size=256, learning_rate=0.01, num_epochs=1, gamma=0.99, polyak=0.98,
                 target_entropy_ratio=None, normalize_observations=True)),
    "td3": (dict(num_envs=1, num_steps=8, buffer_size=10_000, batch_size=100, learning_starts=1_000, actor_lr=1e-3,
                 critic_lr=1e-3, tau=0.05, gamma=0.99, exploration_noise=0.3, target_noise=0.2, target_noise_clip=0.5,
                 policy_delay=2, hidden_sizes=(64, 64), critic_hidden_sizes=(64, 64), activation="silu",
                 normalize_obs=True),
            dict(actor_kwargs={"activation": "swish"}, critic_kwargs={"activation": "swish"}, num_envs=1,
                 buffer_size=10_000, fill_buffer=1_000, batch_size=100, learning_rate=0.001, num_epochs=1, gamma=0.99,
                 polyak=0.95, max_grad_norm=100, exploration_noise=0.3, target_noise=0.2, target_noise_clip=0.5,
                 policy_delay=2, normalize_observations=True)),
}


def program(name: str, steps: int, num_seeds: int, cores: bool = False) -> Program:
    """The training of `num_seeds` seeds on one device, or (`cores`) split over the devices."""
    module = MODULES[name]
    config = module.default_config(ENV, total_timesteps=steps, **CONFIGS[name][0])
    env = pjrl_envs.make(ENV, num_envs=config.num_envs)
    agent = module.ALGORITHM.make_agent(config, env)
    fn, keys = seeds_program(module.make_train(config, env), jax.random.split(jax.random.PRNGKey(0), num_seeds),
                             cores)
    return Program(fn, keys, lowering=functools.partial(loop.chunk_lowering, type(agent), num_seeds == 1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rejax-site", required=True, help="a directory holding rejax and distrax (see rejax_reference.py)")
    p.add_argument("--algos", default="sac,td3")
    p.add_argument("--seeds", default="1,16", help="comma-separated seed counts")
    p.add_argument("--steps", type=int, default=10_000, help="env steps per seed (rejax's Pendulum budget)")
    add_round_flags(p)
    a = p.parse_args()
    check_round_flags(p, a)
    xla_cpu.use_cpu_cores()  # before JAX starts, as `pjrl train` does
    print(f"# {jax.devices()[0].platform} x{jax.device_count()}, jax {jax.__version__}; {a.rounds} round(s), "
          "medians over them", flush=True)
    for name in a.algos.split(","):
        for n in (int(s) for s in a.seeds.split(",")):
            programs, core = layouts(functools.partial(program, name, a.steps, n), n,
                                     MODULES[name].ALGORITHM.concurrent_runs or xla_cpu.CONCURRENT_RUNS)
            reference = functools.partial(run_reference, REFERENCE, [
                "--site", a.rejax_site, "--algo", name, "--env", "Pendulum-v1", "--seeds", str(n), "--steps",
                str(a.steps), "--repeats", str(a.repeats),
                *(x for k, v in CONFIGS[name][1].items() for x in ("--set", f"{k}={json.dumps(v)}"))])
            train = None if a.no_train else TrainCommand(a.steps, n, algo=name, env=ENV, settings=CONFIGS[name][0])
            res = paired_rounds(a.rounds, a.repeats, programs, reference, train, core)
            for layout, prog in programs.items():
                r = res[layout]
                print(json.dumps({"ref": "pjrl", "layout": layout, "algo": name, "env": ENV, "seeds": n,
                                  "steps": a.steps, "compile_s": round(r["compile_s"], 3),
                                  "run_s": round(r["run_s"], 3), "steps_per_s": round(a.steps * n / r["run_s"]),
                                  "final_return": round(float(np.nanmean(final_returns(
                                      np.asarray(prog.out[1]["episode_return"]).reshape(n, -1)))), 1),
                                  "speedup_run": round(r["speedup_run"], 2),
                                  "speedup_compile": round(r["speedup_compile"], 2)}), flush=True)
                prog.close()
            ref = res["reference"]
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in ref.items()}), flush=True)
            if train:
                cli = res["pjrl_train"]
                print(json.dumps({"algo": name, "seeds": n, "pjrl_train": {
                    k: round(v, 3) if isinstance(v, float) else v for k, v in cli.items()}}), flush=True)


if __name__ == "__main__":
    main()
