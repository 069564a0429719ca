"""Masked PPO learns tic-tac-toe against pgx's random opponent, then plays it and counts outcomes.

    python examples/pgx_tictactoe.py                          # 500k steps, about a minute on 2 CPU cores
    python examples/pgx_tictactoe.py --total-timesteps 100000

The adapter seats the learner at random each game and plays the opponent's moves inside
`step`; the reward is the learner's (win 1, draw 0, loss -1) and illegal moves are masked out.
At the default 500k steps the greedy policy wins ~91%, draws ~4% and loses ~5% of 1000 games
(mean return 0.87) and never picks an illegal move.
"""
import argparse

import jax
import numpy as np

import pjrl_envs
from pjrl_agents.algorithms import ppo
from pjrl_agents.algorithms.shared import make_train

ENV = "pgx:tic_tac_toe"


def play(agent, params, key, games: int, deterministic: bool):
    """Outcomes of the first `games` finished games, and how many illegal moves the policy chose."""
    env = agent.env
    steps = games // env.num_envs * 10 + 10  # a game lasts at most 5 of the learner's moves

    def policy(obs, mask, key):
        return agent.act(params, obs, mask, None if deterministic else key)

    def record(before, action, after, ts):
        return ts.info["returned_episode"], ts.info["episode_return"], ts.info["illegal_action"]

    _, (done, ret, illegal) = jax.jit(lambda k: pjrl_envs.rollout(env, policy, k, steps, record=record))(key)
    done, ret, illegal = map(np.asarray, (done, ret, illegal))
    return ret[done][:games], int(illegal.sum())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--total-timesteps", type=int, default=None, help="env steps (default 500k)")
    p.add_argument("--num-envs", type=int, default=None)
    p.add_argument("--games", type=int, default=1000, help="evaluation games")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    settings = {k: v for k, v in (("total_timesteps", args.total_timesteps), ("num_envs", args.num_envs)) if v}
    config = ppo.default_config(ENV, **settings)
    env = pjrl_envs.make(ENV, num_envs=config.num_envs)  # opponent="random" is the default
    agent = ppo.PPO(config, env)
    train = jax.jit(make_train(agent))
    state, metrics = train(jax.random.PRNGKey(args.seed))
    print(f"trained {config.total_timesteps} steps; "
          f"last rollout's mean return {float(metrics['episode_return'][-1]):.2f}")

    key = jax.random.PRNGKey(args.seed + 1)
    for deterministic in (True, False):
        outcomes, illegal = play(agent, state.params, key, args.games, deterministic)
        win, draw, loss = ((outcomes > 0.5).mean(), (np.abs(outcomes) <= 0.5).mean(), (outcomes < -0.5).mean())
        print(f"{'greedy ' if deterministic else 'sampled'} policy, {outcomes.size} games vs random: "
              f"win {win:.1%}  draw {draw:.1%}  loss {loss:.1%}  (mean return {outcomes.mean():.2f}, "
              f"illegal moves {illegal})")


if __name__ == "__main__":
    main()
