"""PPO on an Atari game from envpool, stepped on the host from inside the jitted training scan.

    python examples/envpool_atari.py                          # Pong-v5, 10M steps
    python examples/envpool_atari.py --env Breakout-v5 --total-timesteps 2e6

envpool does the Atari preprocessing in C++ (84x84 grey frames, 4 stacked,
frame skip 4, no-op starts); any envpool option can be added to `ENV_OPTIONS`.
The policy is PPO with the Nature CNN (chosen from the `(4, 84, 84)` uint8
observation) and the actor and critic heads right on its 512 features, at the
usual Atari PPO settings (8 envs x 128 steps, 4 epochs, 4 minibatches, clip 0.1).
"""
from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import pjrl_envs
from pjrl_agents.algorithms import ppo

ENV_OPTIONS = dict(reward_clip=True, episodic_life=False)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="Pong-v5", help="an envpool Atari id, see `pjrl envs --library envpool`")
    p.add_argument("--total-timesteps", type=float, default=10e6)
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--num-steps", type=int, default=128)
    p.add_argument("--reports", type=int, default=20, help="progress lines over the run")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    env = pjrl_envs.make(f"envpool:{args.env}", num_envs=args.num_envs, **ENV_OPTIONS)
    config = ppo.PPOConfig(total_timesteps=int(args.total_timesteps), num_envs=args.num_envs,
                           num_steps=args.num_steps, update_epochs=4, num_minibatches=4, torso="nature",
                           hidden_sizes=(), lr=2.5e-4, clip_eps=0.1, ent_coef=0.01)
    agent = ppo.PPO(config, env)

    # TRAIN in chunks of updates, each chunk one jitted scan, so progress can be printed between them
    chunk_len = max(1, agent.num_updates // args.reports)
    run_chunk = jax.jit(lambda s: jax.lax.scan(lambda s, _: agent.update(s), s, None, chunk_len))
    state = jax.jit(agent.init)(jax.random.PRNGKey(args.seed))
    start = time.perf_counter()
    for done in range(chunk_len, agent.num_updates + 1, chunk_len):
        state, metrics = run_chunk(state)
        steps = done * config.steps_per_update
        ret = float(metrics["episode_return"][-1])  # NaN until the first episode ends
        shown = f"{ret:7.2f}" if np.isfinite(ret) else "    n/a"
        print(f"step {steps:>10,} | return {shown} | loss {float(metrics['loss'][-1]):8.4f} | "
              f"{steps / (time.perf_counter() - start):,.0f} steps/s", flush=True)
    env.close()
    return {k: float(v[-1]) for k, v in metrics.items()}


if __name__ == "__main__":
    main()
