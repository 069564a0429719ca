"""Learned Policy Optimisation: PPO whose policy objective's drift is a small network, found by evolution.

In the LPO formulation (Lu et al., 2022) each sample contributes `r A - drift(r, A)`
with r the probability ratio and A the normalised advantage. Here the drift is

    drift_theta(r, A) = (r - 1)^2 * softplus(MLP_theta(r - 1, log r, A, (r - 1) A, log(r) A))

so for every theta it is non-negative, zero at r = 1 and has zero gradient there:
every member of the family is a valid trust-region method, and at r = 1 the
gradient is PPO's (A). theta is a flat vector of `NUM_PARAMS` numbers; at
`initial_theta()` the drift is (r - 1)^2, a quadratic penalty. `pjrl evolve`
searches theta with an evolution strategy over whole training runs; then

    pjrl train --algo lpo --objective DIR --env gymnax:Acrobot-v1

trains with the best objective found (`DIR/best_objective.npy`).
"""
from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from pjrl_agents.algorithms import ppo
from pjrl_agents.algorithms.contract import Algorithm, Hints
from pjrl_agents.config import ConfigError, check_settings, make_config, static
from pjrl_envs.core import VecEnv

FEATURES = 5
HIDDEN = 16
NUM_PARAMS = FEATURES * HIDDEN + HIDDEN + HIDDEN + 1
"""theta: a (5, 16) layer with its bias, then a (16, 1) layer with its bias"""


def initial_theta() -> np.ndarray:
    """theta with drift exactly (r - 1)^2: the hidden layer small, the output bias softplus^-1(1)."""
    theta = np.zeros(NUM_PARAMS, np.float32)
    theta[-1] = np.log(np.e - 1.0)
    return theta


def _unpack(theta: jax.Array):
    w1 = theta[:FEATURES * HIDDEN].reshape(FEATURES, HIDDEN)
    b1 = theta[FEATURES * HIDDEN:FEATURES * HIDDEN + HIDDEN]
    w2 = theta[FEATURES * HIDDEN + HIDDEN:FEATURES * HIDDEN + 2 * HIDDEN]
    return w1, b1, w2, theta[-1]


def drift(theta: jax.Array, ratio: jax.Array, log_ratio: jax.Array, adv: jax.Array) -> jax.Array:
    """The learned drift per sample (see the module's docstring)."""
    w1, b1, w2, b2 = _unpack(theta)
    x = jnp.stack([ratio - 1.0, log_ratio, adv, (ratio - 1.0) * adv, log_ratio * adv], -1)
    scale = jax.nn.softplus(jnp.tanh(x @ w1 + b1) @ w2 + b2)
    return jnp.square(ratio - 1.0) * scale


def objective(theta, ratio, log_ratio, adv) -> jax.Array:
    """LPO's per-sample policy objective (maximised): `r A - drift_theta(r, A)`."""
    return ratio * adv - drift(theta, ratio, log_ratio, adv)


@struct.dataclass
class LPOConfig(ppo.PPOConfig):
    """LPO settings: PPO's, and where the drift's parameters come from."""

    objective: str = static("")
    """a directory `pjrl evolve` wrote (its best_objective.npy) or a .npy file of the drift's parameters;
    empty: the quadratic drift evolution starts from"""


ENV_DEFAULTS = dict(ppo.ENV_DEFAULTS)
RANGES = dict(ppo.RANGES)


def default_config(env_name: str | None = None, **settings) -> LPOConfig:
    return make_config(LPOConfig, ENV_DEFAULTS, env_name, settings)


def load_theta(where: str) -> np.ndarray:
    """The drift's parameters from `where` (see LPOConfig.objective); ConfigError naming the fix."""
    if not where:
        return initial_theta()
    path = Path(where)
    if path.is_dir():
        path = path / "best_objective.npy"
    try:
        theta = np.load(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"--objective {where}: cannot read {path} ({e}); give a directory pjrl evolve wrote "
                          "or its best_objective.npy") from None
    if theta.shape != (NUM_PARAMS,) or not np.isfinite(theta).all():
        raise ConfigError(f"--objective {where}: {path} holds {theta.shape} numbers where the drift has "
                          f"{NUM_PARAMS} finite ones")
    return theta.astype(np.float32)


def validate(config: LPOConfig, env: VecEnv | None = None) -> None:
    ppo.validate(config, env)
    check_settings(config, RANGES)
    load_theta(config.objective)


class LPO(ppo.PPO):
    """PPO's agent with a learned drift. `theta` (possibly traced, for evolution) overrides the config's."""

    def __init__(self, config: LPOConfig, env: VecEnv, axis_name: str | None = None, hints: Hints = Hints(),
                 theta=None):
        super().__init__(config, env, axis_name, hints)
        self.theta = load_theta(config.objective) if theta is None else theta

    def objective(self, hp):
        theta = jnp.asarray(self.theta)
        return lambda ratio, log_ratio, adv: objective(theta, ratio, log_ratio, adv)


ALGORITHM = Algorithm(name="lpo", config_class=LPOConfig, default_config=default_config, validate=validate,
                      make_agent=LPO, splits_envs=True, env_defaults=ENV_DEFAULTS, ranges=RANGES)
