"""Continuous-action PPO on a Brax env, the whole run one compiled `lax.scan`.

    python examples/brax_ppo.py                                   # halfcheetah, sized for a GPU
    python examples/brax_ppo.py --env brax:inverted_double_pendulum --total-timesteps 200000 --num-envs 32

The second line learns on a 2-core CPU in about 30 s, compile included (deterministic return
~4800 after 200k steps; random ~130).
"""
import argparse
import time

import jax
import numpy as np

import pjrl_envs
from pjrl_agents.algorithms import ppo
from pjrl_agents.algorithms.shared import make_train
from pjrl_agents.run.evaluate import evaluate

# Brax-style settings for thousands of envs on one accelerator; envs listed in
# ppo.ENV_DEFAULTS (inverted_double_pendulum) use those instead.
GPU_DEFAULTS = dict(total_timesteps=50_000_000, num_envs=2048, num_steps=32, num_minibatches=32, update_epochs=4,
                    lr=3e-4, gamma=0.97, ent_coef=0.0, hidden_sizes=(256, 256), activation="silu",
                    normalize_obs=True, normalize_reward=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="brax:halfcheetah")
    p.add_argument("--total-timesteps", type=int, default=None)
    p.add_argument("--num-envs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    settings = {} if args.env in ppo.ENV_DEFAULTS else dict(GPU_DEFAULTS)
    for name in ("total_timesteps", "num_envs"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    config = ppo.default_config(args.env, **settings)
    env = pjrl_envs.make(args.env, num_envs=config.num_envs)
    agent = ppo.PPO(config, env)
    train = jax.jit(make_train(agent))

    start = time.perf_counter()
    state, metrics = jax.block_until_ready(train(jax.random.PRNGKey(args.seed)))
    seconds = time.perf_counter() - start
    curve = np.asarray(metrics["episode_return"])  # NaN until the first episode ends
    for i in range(0, len(curve), max(1, len(curve) // 10)):
        shown = f"{curve[i]:9.1f}" if np.isfinite(curve[i]) else "  (no episode has ended yet)"
        print(f"step {(i + 1) * config.steps_per_update:>10d}  episode_return {shown}")
    result = evaluate(agent, state.params, state.env_state, seed=args.seed + 1, num_episodes=4)[0]
    print(f"{args.env}: {config.total_timesteps} steps in {seconds:.0f} s (compile included); "
          f"deterministic policy return {result['return_mean']:.1f} over {result['episodes']} episodes")


if __name__ == "__main__":
    main()
