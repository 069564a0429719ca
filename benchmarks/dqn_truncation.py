"""DQN's truncation bootstrap valued at collection vs at replay, on a probe whose values are known.

    python benchmarks/dqn_truncation.py [--seeds 8]

The probe: one observation that never changes, reward 1 every step, no
termination, the episode truncated every `--period` steps. Time is not in the
observation, so every state is worth 1 / (1 - gamma) = 10 at gamma 0.9, and a
truncated step must bootstrap from that value. DQN learns with a buffer that
holds the whole run, so transitions are replayed long after they were
collected:

- `bootstrap="collect"` stores the target network's V(final_obs) when the step
  is collected: a transition from the first updates carries a value near the
  untrained network's forever after.
- `bootstrap="replay"` stores the final observation and values it with the
  target network when it is replayed, as every next observation is valued.

Prints the mean Q of the replayed batches against the true 10 at points of the
run (mean over seeds), and the buffer's memory in each mode.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np

from pjrl_agents.algorithms import dqn
from pjrl_envs import spaces
from pjrl_envs.core import Env
from pjrl_envs.types import TimeStep

GAMMA = 0.9
TRUE_VALUE = 1 / (1 - GAMMA)


class TruncatedForever(Env):
    """Reward 1 each step from one unchanging observation; truncated every `period` steps, never terminated."""

    def __init__(self, period: int):
        self.period = period
        self.observation_space = spaces.Box(0.0, 1.0, (1,), jnp.float32)
        self.action_space = spaces.Discrete(2)
        self.max_episode_steps = period

    def _ts(self, reward, truncated):
        obs = jnp.ones((1,), jnp.float32)
        return TimeStep(obs=obs, reward=jnp.float32(reward), terminated=jnp.bool_(False),
                        truncated=jnp.asarray(truncated), final_obs=obs,
                        action_mask=spaces.no_mask(self.action_space), info={})

    def reset(self, key):
        return jnp.zeros((), jnp.int32), self._ts(0.0, False)

    def step(self, state, action, key):
        t = state + 1
        truncated = t >= self.period
        return jnp.where(truncated, 0, t), self._ts(1.0, truncated)


def run(bootstrap: str, seeds: int, period: int, total: int) -> tuple[np.ndarray, int]:
    config = dqn.DQNConfig(total_timesteps=total, num_envs=4, num_steps=8, buffer_size=total, batch_size=64,
                           train_interval=8, target_update_interval=256, learning_starts=256, lr=1e-3,
                           gamma=GAMMA, epsilon_anneal_steps=1, hidden_sizes=(16,), bootstrap=bootstrap)
    env = TruncatedForever(period).to_vec(config.num_envs)
    agent = dqn.DQN(config, env)
    train = jax.jit(jax.vmap(dqn.make_train(config, env)))
    state, metrics = train(jax.random.split(jax.random.PRNGKey(0), seeds))
    buffer_bytes = sum(x.nbytes for x in jax.tree.leaves(state.buffer)) // seeds
    learning = np.asarray(metrics["learning"]).astype(bool)
    q = np.where(learning, np.asarray(metrics["q_value"]), np.nan)
    del agent
    return q, buffer_bytes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--period", type=int, default=10)
    p.add_argument("--steps", type=int, default=40_000)
    args = p.parse_args()
    results = {mode: run(mode, args.seeds, args.period, args.steps) for mode in ("collect", "replay")}
    updates = results["collect"][0].shape[1]
    points = [updates // 10, updates // 4, updates // 2, updates - 1]
    print(f"probe: truncated every {args.period} steps, gamma {GAMMA}, true Q = {TRUE_VALUE:.2f}; "
          f"buffer holds the whole run ({args.steps:,} steps); mean over {args.seeds} seeds")
    print(f"{'update':>8s} " + " ".join(f"{m + ' Q':>12s} {m + ' error':>14s}" for m in results))
    for u in points:
        cells = []
        for q, _ in results.values():
            value = float(np.nanmean(q[:, u]))
            cells.append(f"{value:12.3f} {value - TRUE_VALUE:+14.3f}")
        print(f"{u + 1:8d} " + " ".join(cells))
    for mode, (_, nbytes) in results.items():
        print(f"probe buffer per seed, bootstrap={mode}: {nbytes / 2**20:.2f} MiB (its observation is one float)")
    import pjrl_envs
    for name in ("gymnax:CartPole-v1", "gymnax:Breakout-MinAtar"):
        sizes = {}
        for mode in ("collect", "replay"):
            config = dqn.default_config(name, bootstrap=mode)
            agent = dqn.DQN(config, pjrl_envs.make(name, num_envs=config.num_envs))
            shape = jax.eval_shape(agent.init, jax.random.PRNGKey(0))
            sizes[mode] = sum(np.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(shape.buffer))
        print(f"{name} default buffer ({config.buffer_size:,} transitions) per seed: collect "
              f"{sizes['collect'] / 2**20:.1f} MiB, replay {sizes['replay'] / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
