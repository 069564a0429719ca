"""Soft Actor-Critic (Haarnoja et al., 2018), the whole training loop one jitted `lax.scan`.

    env = pjrl_envs.make("gymnax:Pendulum-v1", num_envs=1)
    train = make_train(default_config("gymnax:Pendulum-v1"), env)
    state, metrics = jax.jit(jax.vmap(train))(jax.random.split(key, 8))  # 8 seeds, one compile

Twin Q critics with Polyak-averaged targets, a tanh-squashed Gaussian actor whose log-probability carries
the squashing's correction (`distributions.TanhGaussian`), and a temperature tuned toward a target entropy
(`autotune`; else fixed at `alpha`). The collection loop, the replay buffer and bootstrapping from
`final_obs` on truncation are `offpolicy.OffPolicyAgent`'s. Each gradient step updates the critics on
the batch, then the actor against the updated critics, then the temperature, then the targets.
"""
from __future__ import annotations

from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import optax
from flax import struct

from pjrl_agents.algorithms.contract import Algorithm, Hints
from pjrl_agents.algorithms.distributions import TanhGaussian
from pjrl_agents.algorithms.networks import GaussianActor, QCritics
from pjrl_agents.algorithms.offpolicy import OffPolicyAgent, Transition, adam_step, polyak, validate_common
from pjrl_agents.algorithms.shared import clip_gradients
from pjrl_agents.algorithms.shared import make_train as _make_train
from pjrl_agents.config import ConfigError, intervals, make_config, static
from pjrl_envs import spaces
from pjrl_envs.core import VecEnv


@struct.dataclass
class SACConfig:
    """SAC settings. Defaults are CleanRL's sac_continuous_action.py ones at a CPU-sized budget and buffer.

    `learning_starts` counts env steps summed over all envs.
    """

    # -- sizes and switches: static, they fix shapes or the program
    total_timesteps: int = static(100_000)
    """env steps per seed, over all envs"""
    num_envs: int = static(1)
    """parallel environments per seed"""
    num_steps: int = static(8)
    """steps each env takes per update (one row of metrics); then the update's gradient steps run"""
    utd_ratio: float = static(1.0)
    """update-to-data ratio: gradient steps per env step (over all envs); num_envs x num_steps x utd_ratio
    gradient steps follow each update's collection, and must be a whole number"""
    buffer_size: int = static(100_000)
    """replay capacity in transitions, over all envs"""
    batch_size: int = static(256)
    """transitions per gradient step"""
    hidden_sizes: tuple = static((256, 256))
    """actor and critic MLP widths"""
    activation: str = static("relu")
    """tanh, relu, gelu or silu"""
    num_critics: int = static(2)
    """Q networks; targets take the minimum over them (clipped double Q)"""
    autotune: bool = static(True)
    """tune the temperature toward target_entropy; off: keep it at alpha"""
    normalize_obs: bool = static(False)
    """normalise observations by running statistics"""
    # -- numbers: traced, sweepable
    learning_starts: int = 5_000
    """env steps of uniform random actions before the first gradient step"""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor"""
    critic_lr: float = 1e-3
    """Adam learning rate of the critics"""
    alpha_lr: float = 1e-3
    """Adam learning rate of the log temperature"""
    gamma: float = 0.99
    """discount"""
    tau: float = 0.005
    """target-network Polyak rate per gradient step: 1 copies the critics"""
    alpha: float = 0.2
    """the initial temperature (the fixed one without autotune)"""
    target_entropy_scale: float = 1.0
    """target entropy = -target_entropy_scale x action dimensions (Haarnoja et al.'s heuristic at 1)"""
    max_grad_norm: float = 0.0
    """global gradient-norm clip of each network's gradient; 0 turns clipping off"""


# Per-env defaults (as RL Zoo keeps them). Pendulum: rejax's SAC Pendulum settings (one env, batch 256, a 10k
# buffer, lr 0.01 for every network, Polyak 0.02, swish, 64x64) with RL Zoo's gamma 0.98 and without rejax's
# observation normalisation (4 seeds of 20k steps, greedy: with it -192 and one seed at -295; without, gamma
# 0.99: -161; gamma 0.98: -153, every seed above -185).
ENV_DEFAULTS: dict[str, dict[str, Any]] = {
    "gymnax:Pendulum-v1": dict(total_timesteps=20_000, num_envs=1, num_steps=8, buffer_size=10_000,
                               batch_size=256, learning_starts=256, actor_lr=0.01, critic_lr=0.01, alpha_lr=0.01,
                               alpha=1.0, tau=0.02, gamma=0.98, hidden_sizes=(64, 64), activation="silu"),
}


def default_config(env_name: str | None = None, **settings) -> SACConfig:
    """SACConfig with the env's defaults (if it has any) and then `settings` applied."""
    return make_config(SACConfig, ENV_DEFAULTS, env_name, settings)


RANGES = intervals({"actor_lr": "(0, inf)", "critic_lr": "(0, inf)", "alpha_lr": "(0, inf)", "gamma": "[0, 1]",
                    "tau": "(0, 1]", "alpha": "(0, inf)", "target_entropy_scale": "(-inf, inf)",
                    "max_grad_norm": "[0, inf)", "learning_starts": "[0, inf)"})
"""where each number must lie (checked for every sweep member too)"""


def validate(config: SACConfig, env: VecEnv | None = None) -> None:
    """Raises ConfigError naming the field, before anything compiles."""
    validate_common(config, env, "SAC", RANGES)
    if not isinstance(config.num_critics, int) or config.num_critics < 1:
        raise ConfigError(f"num_critics={config.num_critics}: use 1 or more (2 is clipped double Q)")


class Learner(NamedTuple):
    """What SAC learns beside the actor."""

    critic: Any  # stacked (num_critics, ...) Q-network parameters
    target_critic: Any
    actor_opt: Any
    critic_opt: Any
    log_alpha: jax.Array  # () the log temperature
    alpha_opt: Any


class SAC(OffPolicyAgent):
    """`init(key, config) -> OffPolicyState` and `update(state) -> (state, metrics)` for one seed."""

    metric_names = ("critic_loss", "actor_loss", "q_value", "alpha", "entropy")

    def __init__(self, config: SACConfig, env: VecEnv, axis_name: str | None = None, hints: Hints = Hints()):
        if axis_name is not None:
            raise ConfigError("SAC cannot split one seed's envs over devices; use --num-seeds N (seeds split "
                              "over devices) or --devices 1")
        validate(config, env)
        super().__init__(config, env, normalize_obs=config.normalize_obs)
        self.actor = GaussianActor(self.action_dim, tuple(config.hidden_sizes), config.activation)
        self.critic = QCritics(config.num_critics, tuple(config.hidden_sizes), config.activation)
        self.optimizer = optax.scale_by_adam()
        self.target_entropy = -float(self.action_dim)
        """before `target_entropy_scale`, of the env's actions (`log_scale` converts)"""

    def init_actor(self, key):
        return self.actor.init(key, spaces.zeros(self.env.observation_space, (1,)))

    def init_learner(self, key, params, config):
        critic = self.critic.init(key, spaces.zeros(self.env.observation_space, (1,)), jnp.zeros((1, self.action_dim)))
        log_alpha = jnp.log(jnp.asarray(config.alpha, jnp.float32))
        return Learner(critic, critic, self.optimizer.init(params), self.optimizer.init(critic), log_alpha,
                       self.optimizer.init(log_alpha))

    def _sample(self, params, obs, key):
        """Squashed actions `(B, D)` and their log-densities over the env's actions `(B,)`."""
        action, log_prob = TanhGaussian.sample_and_log_prob(key, self.actor.apply(params, obs))
        return action, log_prob - self.log_scale

    def explore(self, params, obs, key, config):
        return self._sample(params, obs, key)[0]

    def policy(self, params, obs, key):
        if key is None:
            return TanhGaussian.mode(self.actor.apply(params, obs))
        return self._sample(params, obs, key)[0]

    def gradient_step(self, params, learner: Learner, batch: Transition, key, hp: SACConfig, step):
        next_key, actor_key = jax.random.split(key)
        alpha = jnp.exp(learner.log_alpha)

        # CRITICS: regress on r + gamma (1 - terminated) (min_i Q'_i(s', a') - alpha log pi(a'|s')), a' ~ pi(s')
        next_action, next_log_prob = self._sample(params, batch.next_obs, next_key)
        # flax types `apply` as `output | (output, variables)`; without `mutable` it is the output
        next_q = cast(jax.Array, self.critic.apply(learner.target_critic, batch.next_obs, next_action)).min(0)
        target = batch.reward + hp.gamma * (1.0 - batch.terminated) * (next_q - alpha * next_log_prob)

        def critic_loss(critic):
            q = self.critic.apply(critic, batch.obs, batch.action)  # (num_critics, N)
            return jnp.square(q - target).mean(-1).sum(), q

        (c_loss, q), grads = jax.value_and_grad(critic_loss, has_aux=True)(learner.critic)
        critic, critic_opt = adam_step(self.optimizer, clip_gradients(grads, hp.max_grad_norm),
                                       learner.critic_opt, learner.critic, hp.critic_lr)

        # ACTOR: maximise min_i Q_i(s, a) - alpha log pi(a|s), a ~ pi(s), against the updated critics
        def actor_loss(p):
            action, log_prob = self._sample(p, batch.obs, actor_key)
            return (alpha * log_prob - self.critic.apply(critic, batch.obs, action).min(0)).mean(), log_prob

        (a_loss, log_prob), grads = jax.value_and_grad(actor_loss, has_aux=True)(params)
        params, actor_opt = adam_step(self.optimizer, clip_gradients(grads, hp.max_grad_norm),
                                      learner.actor_opt, params, hp.actor_lr)

        # TEMPERATURE: toward the target entropy (the loss's gradient in log alpha is -(log pi + target))
        log_alpha, alpha_opt = learner.log_alpha, learner.alpha_opt
        if self.config.autotune:
            target_entropy = hp.target_entropy_scale * self.target_entropy
            grad = -(jax.lax.stop_gradient(log_prob) + target_entropy).mean()
            log_alpha, alpha_opt = adam_step(self.optimizer, grad, alpha_opt, log_alpha, hp.alpha_lr)

        # TARGETS
        target_critic = polyak(learner.target_critic, critic, hp.tau)
        metrics = {"critic_loss": c_loss, "actor_loss": a_loss, "q_value": q.mean(), "alpha": alpha,
                   "entropy": -log_prob.mean()}
        return params, Learner(critic, target_critic, actor_opt, critic_opt, log_alpha, alpha_opt), metrics


def make_train(config: SACConfig, env: VecEnv):
    """`train(key, config=None) -> (OffPolicyState, metrics)`, metrics `(num_updates,)` per name."""
    return _make_train(SAC(config, env))


ALGORITHM = Algorithm(name="sac", config_class=SACConfig, default_config=default_config, validate=validate,
                      make_agent=SAC, splits_envs=False, env_defaults=ENV_DEFAULTS, ranges=RANGES)
