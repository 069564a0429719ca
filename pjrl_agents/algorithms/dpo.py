"""Discovered Policy Optimisation (Lu et al., 2022): PPO with its clipped trust region replaced by a drift.

The objective found by meta-learning over whole training runs, written in closed
form: with r the probability ratio and A the normalised advantage, each sample
contributes `r A - drift(r, A)`, where

    drift = relu((r - 1) A - alpha tanh((r - 1) A / alpha))    for A >= 0
    drift = relu(log(r) A - beta tanh(log(r) A / beta))        for A < 0

The drift is zero with zero gradient at r = 1, grows like |(r - 1) A| for large
positive-advantage moves (alpha) and like |log(r) A| for negative ones (beta).
Everything else (rollout, GAE, value loss, minibatches, recurrent cores, device
splitting) is PPO's; `alpha` and `beta` are traced, so they sweep like any number.

    pjrl train --algo dpo --env gymnax:Pendulum-v1
    pjrl train --algo dpo --sweep alpha=1,2,4
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from pjrl_agents.algorithms import ppo
from pjrl_agents.algorithms.contract import Algorithm, Hints
from pjrl_agents.config import check_settings, intervals, make_config
from pjrl_envs.core import VecEnv


@struct.dataclass
class DPOConfig(ppo.PPOConfig):
    """DPO settings: PPO's, and the drift's two numbers (defaults from the DPO paper)."""

    alpha: float = 2.0
    """drift scale for positive advantages: how far the ratio may rise before the drift bites"""
    beta: float = 0.6
    """drift scale for negative advantages, on the log ratio"""


ENV_DEFAULTS = dict(ppo.ENV_DEFAULTS)
"""PPO's per-env settings: DPO changes only the policy objective"""

RANGES = {**ppo.RANGES, **intervals({"alpha": "(0, inf)", "beta": "(0, inf)"})}


def default_config(env_name: str | None = None, **settings) -> DPOConfig:
    return make_config(DPOConfig, ENV_DEFAULTS, env_name, settings)


def validate(config: DPOConfig, env: VecEnv | None = None) -> None:
    ppo.validate(config, env)
    check_settings(config, RANGES)


def drift(ratio: jax.Array, log_ratio: jax.Array, adv: jax.Array, alpha, beta) -> jax.Array:
    """DPO's drift per sample (see the module's docstring); zero with zero gradient at ratio 1."""
    up = (ratio - 1.0) * adv
    down = log_ratio * adv
    return jnp.where(adv >= 0, jax.nn.relu(up - alpha * jnp.tanh(up / alpha)),
                     jax.nn.relu(down - beta * jnp.tanh(down / beta)))


def objective(ratio, log_ratio, adv, alpha, beta) -> jax.Array:
    """DPO's per-sample policy objective (maximised): `r A - drift`."""
    return ratio * adv - drift(ratio, log_ratio, adv, alpha, beta)


class DPO(ppo.PPO):
    """PPO's agent with DPO's objective."""

    def __init__(self, config: DPOConfig, env: VecEnv, axis_name: str | None = None, hints: Hints = Hints()):
        validate(config, env)
        super().__init__(config, env, axis_name, hints)

    def objective(self, hp: ppo.PPOConfig):
        # PPO passes the state's config, which for a DPO agent is a DPOConfig (traced leaves, same class)
        assert isinstance(hp, DPOConfig)
        return lambda ratio, log_ratio, adv: objective(ratio, log_ratio, adv, hp.alpha, hp.beta)


def make_train(config: DPOConfig, env: VecEnv):
    """`train(key, config=None) -> (PPOState, metrics)`, as `ppo.make_train`."""
    from pjrl_agents.algorithms.shared import make_train as _make_train
    return _make_train(DPO(config, env))


ALGORITHM = Algorithm(name="dpo", config_class=DPOConfig, default_config=default_config, validate=validate,
                      make_agent=DPO, splits_envs=True, env_defaults=ENV_DEFAULTS, ranges=RANGES)
