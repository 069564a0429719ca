"""Twin Delayed DDPG (Fujimoto et al., 2018), the whole training loop one jitted `lax.scan`.

    env = pjrl_envs.make("gymnax:Pendulum-v1", num_envs=1)
    train = make_train(default_config("gymnax:Pendulum-v1"), env)
    state, metrics = jax.jit(jax.vmap(train))(jax.random.split(key, 8))  # 8 seeds, one compile

A deterministic tanh actor explored with Gaussian noise; twin Q critics whose targets take the minimum
of the target critics (clipped double Q; `clipped_double_q=False` takes their mean, as FastTD3 does for
some tasks) at the target actor's action plus clipped noise (target policy smoothing); the actor and all
target networks updated every `policy_delay` gradient steps. The collection loop, the replay buffer and
bootstrapping from `final_obs` on truncation are `offpolicy.OffPolicyAgent`'s.

FastTD3 (Seo et al., 2025) is this algorithm run with many parallel envs, large batches, normalised
observations and wide critics; `FASTTD3` holds those settings for `--set`, and `benchmarks/gpu.sh` runs
them where a GPU is lent.
"""
from __future__ import annotations

from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import optax
from flax import struct

from pjrl_agents.algorithms.contract import Algorithm, Hints
from pjrl_agents.algorithms.networks import DeterministicActor, QCritics
from pjrl_agents.algorithms.offpolicy import OffPolicyAgent, Transition, adam_step, polyak, validate_common
from pjrl_agents.algorithms.shared import clip_gradients
from pjrl_agents.algorithms.shared import make_train as _make_train
from pjrl_agents.config import ConfigError, intervals, make_config, static
from pjrl_envs import spaces
from pjrl_envs.core import VecEnv


@struct.dataclass
class TD3Config:
    """TD3 settings. Defaults are CleanRL's td3_continuous_action.py ones at a CPU-sized budget and buffer.

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
    """actor MLP widths"""
    critic_hidden_sizes: tuple = static((256, 256))
    """critic MLP widths"""
    activation: str = static("relu")
    """tanh, relu, gelu or silu"""
    policy_delay: int = static(2)
    """gradient steps per actor and target-network update"""
    clipped_double_q: bool = static(True)
    """targets take the minimum of the two target critics; off: their mean"""
    normalize_obs: bool = static(False)
    """normalise observations by running statistics"""
    # -- numbers: traced, sweepable
    learning_starts: int = 5_000
    """env steps of uniform random actions before the first gradient step"""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor"""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics"""
    gamma: float = 0.99
    """discount"""
    tau: float = 0.005
    """target-network Polyak rate per actor update: 1 copies"""
    exploration_noise: float = 0.1
    """std of the Gaussian noise added to the actor's actions while collecting, in units of half the
    action range"""
    target_noise: float = 0.2
    """std of the target policy smoothing noise, in units of half the action range"""
    target_noise_clip: float = 0.5
    """the smoothing noise is clipped to +-target_noise_clip"""
    max_grad_norm: float = 0.0
    """global gradient-norm clip of each network's gradient; 0 turns clipping off"""


FASTTD3: dict[str, Any] = dict(num_envs=128, num_steps=1, utd_ratio=2 / 128, batch_size=32_768,
                               buffer_size=1_048_576, hidden_sizes=(512, 256, 128),
                               critic_hidden_sizes=(1024, 512, 256), normalize_obs=True, tau=0.1,
                               actor_lr=3e-4, critic_lr=3e-4, learning_starts=32_768, gamma=0.99)
"""the FastTD3 recipe (Seo et al., 2025: many envs, two gradient steps of a large batch per vector step,
wide critics, normalised observations), for GPU-sized runs; the paper's distributional critic is not here"""

# Per-env defaults (as RL Zoo keeps them). Pendulum: rejax's TD3 Pendulum network and batch (one env, batch
# 100, a 10k buffer, lr 1e-3, swish, 64x64) with RL Zoo's gamma 0.98, CleanRL's Polyak 0.005 and exploration
# noise 0.1, and no observation normalisation (4 seeds of 20k steps, greedy: rejax's settings -813; without
# normalisation -246; as here -158, every seed above -190).
ENV_DEFAULTS: dict[str, dict[str, Any]] = {
    "gymnax:Pendulum-v1": dict(total_timesteps=20_000, num_envs=1, num_steps=8, buffer_size=10_000,
                               batch_size=100, learning_starts=1_000, actor_lr=1e-3, critic_lr=1e-3, tau=0.005,
                               gamma=0.98, exploration_noise=0.1, hidden_sizes=(64, 64), critic_hidden_sizes=(64, 64),
                               activation="silu"),
}


def default_config(env_name: str | None = None, **settings) -> TD3Config:
    """TD3Config with the env's defaults (if it has any) and then `settings` applied."""
    return make_config(TD3Config, ENV_DEFAULTS, env_name, settings)


RANGES = intervals({"actor_lr": "(0, inf)", "critic_lr": "(0, inf)", "gamma": "[0, 1]", "tau": "(0, 1]",
                    "exploration_noise": "[0, inf)", "target_noise": "[0, inf)", "target_noise_clip": "[0, inf)",
                    "max_grad_norm": "[0, inf)", "learning_starts": "[0, inf)"})
"""where each number must lie (checked for every sweep member too)"""


def validate(config: TD3Config, env: VecEnv | None = None) -> None:
    """Raises ConfigError naming the field, before anything compiles."""
    validate_common(config, env, "TD3", RANGES)
    if not isinstance(config.policy_delay, int) or config.policy_delay < 1:
        raise ConfigError(f"policy_delay={config.policy_delay}: use a whole number >= 1 (2 in TD3)")


class Learner(NamedTuple):
    """What TD3 learns beside the actor."""

    critic: Any  # stacked (2, ...) Q-network parameters
    target_critic: Any
    target_actor: Any
    actor_opt: Any
    critic_opt: Any


class TD3(OffPolicyAgent):
    """`init(key, config) -> OffPolicyState` and `update(state) -> (state, metrics)` for one seed."""

    metric_names = ("critic_loss", "actor_loss", "q_value")

    def __init__(self, config: TD3Config, env: VecEnv, axis_name: str | None = None, hints: Hints = Hints()):
        if axis_name is not None:
            raise ConfigError("TD3 cannot split one seed's envs over devices; use --num-seeds N (seeds split "
                              "over devices) or --devices 1")
        validate(config, env)
        super().__init__(config, env, normalize_obs=config.normalize_obs)
        self.actor = DeterministicActor(self.action_dim, tuple(config.hidden_sizes), config.activation)
        self.critic = QCritics(2, tuple(config.critic_hidden_sizes), config.activation)
        self.optimizer = optax.scale_by_adam()

    def init_actor(self, key):
        return self.actor.init(key, spaces.zeros(self.env.observation_space, (1,)))

    def init_learner(self, key, params, config):
        critic = self.critic.init(key, spaces.zeros(self.env.observation_space, (1,)), jnp.zeros((1, self.action_dim)))
        return Learner(critic, critic, params, self.optimizer.init(params), self.optimizer.init(critic))

    def explore(self, params, obs, key, config):
        action = self.actor.apply(params, obs)
        return jnp.clip(action + config.exploration_noise * jax.random.normal(key, action.shape), -1.0, 1.0)

    def policy(self, params, obs, key):
        if key is None:
            return self.actor.apply(params, obs)
        return self.explore(params, obs, key, self.config)

    def gradient_step(self, params, learner: Learner, batch: Transition, key, hp: TD3Config, step):
        # CRITICS: regress on r + gamma (1 - terminated) min_i Q'_i(s', clip(mu'(s') + clipped noise))
        # flax types `apply` as `output | (output, variables)`; without `mutable` it is the output
        next_action = cast(jax.Array, self.actor.apply(learner.target_actor, batch.next_obs))
        noise = jnp.clip(hp.target_noise * jax.random.normal(key, next_action.shape),
                         -hp.target_noise_clip, hp.target_noise_clip)
        next_q = cast(jax.Array, self.critic.apply(learner.target_critic, batch.next_obs,
                                                   jnp.clip(next_action + noise, -1.0, 1.0)))
        next_q = next_q.min(0) if self.config.clipped_double_q else next_q.mean(0)
        target = batch.reward + hp.gamma * (1.0 - batch.terminated) * next_q

        def critic_loss(critic):
            q = self.critic.apply(critic, batch.obs, batch.action)  # (2, N)
            return jnp.square(q - target).mean(-1).sum(), q

        (c_loss, q), grads = jax.value_and_grad(critic_loss, has_aux=True)(learner.critic)
        critic, critic_opt = adam_step(self.optimizer, clip_gradients(grads, hp.max_grad_norm),
                                       learner.critic_opt, learner.critic, hp.critic_lr)

        # ACTOR: maximise Q_1(s, mu(s)) every policy_delay steps, the target networks following it
        def actor_loss(p):
            return -self.critic.apply(critic, batch.obs, self.actor.apply(p, batch.obs))[0].mean()

        def delayed(p):
            a_loss, grads = jax.value_and_grad(actor_loss)(p)
            p, actor_opt = adam_step(self.optimizer, clip_gradients(grads, hp.max_grad_norm), learner.actor_opt,
                                     p, hp.actor_lr)
            targets = polyak(learner.target_actor, p, hp.tau), polyak(learner.target_critic, critic, hp.tau)
            return (p, actor_opt, *targets, a_loss)

        def wait(p):
            return p, learner.actor_opt, learner.target_actor, learner.target_critic, actor_loss(p)

        params, actor_opt, target_actor, target_critic, a_loss = jax.lax.cond(
            step % self.config.policy_delay == 0, delayed, wait, params)
        metrics = {"critic_loss": c_loss, "actor_loss": a_loss, "q_value": q.mean()}
        return params, Learner(critic, target_critic, target_actor, actor_opt, critic_opt), metrics


def make_train(config: TD3Config, env: VecEnv):
    """`train(key, config=None) -> (OffPolicyState, metrics)`, metrics `(num_updates,)` per name."""
    return _make_train(TD3(config, env))


ALGORITHM = Algorithm(name="td3", config_class=TD3Config, default_config=default_config, validate=validate,
                      make_agent=TD3, splits_envs=False, env_defaults=ENV_DEFAULTS, ranges=RANGES)
