"""CartPole PPO over 1, 2 and 4 devices: env steps/s and parallel efficiency.

    python benchmarks/scale.py                       # 64 seeds on 1, 2, 4 fake CPU devices
    python benchmarks/scale.py --platform gpu        # the same on the real GPUs there are
    python benchmarks/scale.py --layout envs         # one seed, its --num-envs split instead

Each device count runs in its own process (the CPU device count is fixed when
JAX starts: XLA_FLAGS=--xla_force_host_platform_device_count=N). The whole
training (every update; init apart) is one call of the sharded, jitted program
that `pjrl train --devices N` runs; compile time is kept apart, run time is the
median of --repeats calls. Parallel efficiency = steps/s on N devices /
(N x steps/s on one). Fake CPU devices share the machine's cores, so expect
no more gain than there are idle cores.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ENV = "gymnax:CartPole-v1"


def measure(devices: int, seeds: int, num_envs: int, steps: int, repeats: int) -> dict:
    """One device count, in this process."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import pjrl_envs
    from benchmarks.common import time_compiled
    from pjrl_agents.algorithms import ppo
    from pjrl_agents.config import stack_configs
    from pjrl_agents.numeric import final_returns
    from pjrl_agents.run import devices

    config = ppo.PPOConfig(total_timesteps=steps, num_envs=num_envs)
    plan = devices.plan(devices, config.num_envs, num_seeds=seeds, splits_envs=True)
    env = pjrl_envs.make(ENV, num_envs=plan.num_envs)
    agent = ppo.PPO(plan.local(config), env, axis_name=plan.axis_name)

    def run(state):
        return jax.lax.scan(lambda s, _: agent.update(s), state, None, agent.num_updates)

    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    configs = jax.tree.map(lambda x: jnp.repeat(x, seeds), stack_configs([config]))
    keys, configs = plan.put(keys, configs)
    state = plan.jit(agent.init, in_axes=(0, 0), one_run_at_a_time=True)(keys, configs)
    fn = plan.jit(run, in_axes=(0,), metrics=True)  # every update, one call; init apart
    r = time_compiled(fn, state, repeats=repeats)
    final = final_returns(np.asarray(r.pop("out")[1]["episode_return"])).mean()  # over runs
    env_steps = agent.num_updates * config.steps_per_update * seeds
    return {"devices": devices, "device_kind": jax.devices()[0].device_kind, "layout": plan.layout,
            "seeds": seeds, "num_envs": num_envs, "env_steps": env_steps, "compile_s": round(r["compile_s"], 2),
            "run_s": round(r["run_s"], 3), "steps_per_s": round(env_steps / r["run_s"]),
            "final_return": round(float(final), 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", default="1,2,4", help="device counts to compare")
    p.add_argument("--platform", default="cpu", help="cpu (fake devices) or the real backend: gpu, tpu")
    p.add_argument("--layout", default="seeds", choices=["seeds", "envs"],
                   help="seeds: --seeds runs split over devices; envs: one seed, its --num-envs split")
    p.add_argument("--seeds", type=int, default=64)
    p.add_argument("--num-envs", type=int, default=None, help="envs per seed (default 4; 64 with --layout envs)")
    p.add_argument("--steps", type=int, default=65536, help="env steps per seed")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # internal: run one count here
    args = p.parse_args()
    seeds = args.seeds if args.layout == "seeds" else 1
    num_envs = args.num_envs or (4 if args.layout == "seeds" else 64)

    if args.one is not None:
        print(json.dumps(measure(args.one, seeds, num_envs, args.steps, args.repeats)))
        return

    results = []
    for n in [int(x) for x in args.devices.split(",")]:
        env = dict(os.environ, PJRL_CACHE_DIR="off")
        if args.platform == "cpu":
            env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
        else:
            env["JAX_PLATFORMS"] = args.platform
        cmd = [sys.executable, __file__, "--one", str(n), "--layout", args.layout, "--seeds", str(seeds),
               "--num-envs", str(num_envs), "--steps", str(args.steps), "--repeats", str(args.repeats)]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if res.returncode != 0:
            print(f"{n} devices: failed: {res.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        first = results[0] if results else r
        per_device = first["steps_per_s"] / first["devices"]  # one device's rate (the first count's, per device)
        r["speedup"] = round(r["steps_per_s"] / per_device, 2)
        r["efficiency"] = round(r["steps_per_s"] / (per_device * r["devices"]), 2)
        results.append(r)
        print(f"{r['devices']} x {r['device_kind']:<12} {r['layout']:<5} seeds {r['seeds']:>3} envs {r['num_envs']:>3}"
              f" | compile {r['compile_s']:6.1f}s | run {r['run_s']:7.2f}s | {r['steps_per_s']:>11,} steps/s"
              f" | speedup {r['speedup']:.2f}x | efficiency {r['efficiency']:.0%} | return {r['final_return']}",
              flush=True)
    print(json.dumps({"cores": os.cpu_count(), "results": results}))


if __name__ == "__main__":
    main()
