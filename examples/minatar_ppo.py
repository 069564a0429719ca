"""PPO on MinAtar Breakout, from gymnax or from pgx: same game, two libraries, one agent.

    python examples/minatar_ppo.py                       # gymnax:Breakout-MinAtar, PureJaxRL's MinAtar config
    python examples/minatar_ppo.py --source pgx          # pgx:minatar-breakout
    python examples/minatar_ppo.py --total-timesteps 500000 --num-seeds 2

Observations are 10x10xC images, so PPO picks its small CNN torso by itself.
"""
import argparse
import time

import jax
import numpy as np

import pjrl_envs
from pjrl_agents.algorithms import ppo

ENVS = {"gymnax": "gymnax:Breakout-MinAtar", "pgx": "pgx:minatar-breakout"}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", choices=sorted(ENVS), default="gymnax")
    p.add_argument("--total-timesteps", type=int, default=None, help="env steps per seed (default 1e7)")
    p.add_argument("--num-envs", type=int, default=None)
    p.add_argument("--num-seeds", type=int, default=1, help="seeds trained side by side with vmap")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    env_name = ENVS[args.source]
    # Both sources share the MinAtar settings PureJaxRL uses for gymnax's Breakout.
    settings = dict(ppo.ENV_DEFAULTS["gymnax:Breakout-MinAtar"])
    for name in ("total_timesteps", "num_envs"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    config = ppo.default_config(**settings)
    env = pjrl_envs.make(env_name, num_envs=config.num_envs)
    train = jax.jit(jax.vmap(ppo.make_train(config, env)))

    start = time.perf_counter()
    _, metrics = jax.block_until_ready(train(jax.random.split(jax.random.PRNGKey(args.seed), args.num_seeds)))
    seconds = time.perf_counter() - start
    curve = np.asarray(metrics["episode_return"])  # (seeds, updates)
    for i in range(0, curve.shape[1], max(1, curve.shape[1] // 10)):
        ended = np.isfinite(curve[:, i])  # NaN until a seed's first episode ends
        shown = f"{curve[ended, i].mean():6.2f}" if ended.any() else "   n/a (no episode has ended yet)"
        print(f"step {(i + 1) * config.steps_per_update:>10d}  episode_return {shown}")
    print(f"{env_name}: {config.total_timesteps} steps x {args.num_seeds} seed(s) in {seconds:.0f} s "
          f"(compile included); final return {curve[:, -1].mean():.2f} "
          f"(per seed: {' '.join(f'{x:.2f}' for x in curve[:, -1])})")


if __name__ == "__main__":
    main()
