"""PPO on Jumanji's Game2048-v1: a pytree observation (board + action mask) and masked moves.

    python examples/jumanji_ppo.py                            # 1M steps
    python examples/jumanji_ppo.py --total-timesteps 200000   # about a minute on 2 CPU cores

Prints the trained policy's score next to a uniformly random (legal) policy's: after 200k
steps the sampled policy scores ~2300 against ~700 for the random one (32 episodes each).
"""
import argparse

import jax
import numpy as np

import pjrl_envs
from pjrl_agents.algorithms import ppo
from pjrl_agents.algorithms.shared import make_train
from pjrl_agents.run.evaluate import episodes, evaluate

ENV = "jumanji:Game2048-v1"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--total-timesteps", type=int, default=None, help="env steps (default 1M)")
    p.add_argument("--num-envs", type=int, default=None)
    p.add_argument("--episodes", type=int, default=32, help="evaluation episodes")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    settings = {k: v for k, v in (("total_timesteps", args.total_timesteps), ("num_envs", args.num_envs)) if v}
    config = ppo.default_config(ENV, **settings)
    env = pjrl_envs.make(ENV, num_envs=config.num_envs)
    agent = ppo.PPO(config, env)
    train = jax.jit(make_train(agent))
    state, metrics = train(jax.random.PRNGKey(args.seed))
    curve = np.asarray(metrics["episode_return"])
    for i in range(0, curve.size, max(1, curve.size // 10)):
        shown = f"{curve[i]:8.1f}" if np.isfinite(curve[i]) else "     n/a (no episode has ended yet)"
        print(f"step {(i + 1) * config.steps_per_update:>9d}  episode_return {shown}")

    trained = evaluate(agent, state.params, state.env_state, seed=args.seed + 1, num_episodes=args.episodes)[1]
    uniform = episodes(agent.env, pjrl_envs.random_policy(agent.env), jax.random.PRNGKey(args.seed + 1),
                       args.episodes)["returns"]
    print(f"{ENV} after {config.total_timesteps} steps: PPO score {trained['return_mean']:.0f} "
          f"+- {trained['return_std']:.0f}, random {uniform.mean():.0f} +- {uniform.std():.0f} "
          f"({args.episodes} episodes each)")


if __name__ == "__main__":
    main()
