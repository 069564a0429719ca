"""Advantage actor-critic (A2C) with an actor and a critic that share nothing, each with its own optimiser.

The worked example of docs/writing-an-algorithm.md: an algorithm from outside pjrl whose learned state
is more than `params` (the actor, which `act` takes): the critic and both optimiser states, which it
lists in `learned` so that population-based training copies all of them.

    pjrl train --algo a2c --env gymnax:CartPole-v1 --num-seeds 4
"""
from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from pjrl_agents.algorithms import Agent, Algorithm, Hints
from pjrl_agents.algorithms.networks import MLP, flatten_obs
from pjrl_agents.algorithms.shared import clip_gradients, update_metrics, wrap_env
from pjrl_agents.config import ConfigError, check_settings, intervals, make_config, require_positive, static
from pjrl_envs import spaces
from pjrl_envs.core import VecEnv


@struct.dataclass
class A2CConfig:
    """A2C settings: sizes are static (they fix shapes), numbers are traced (sweepable, PBT can perturb them)."""

    total_timesteps: int = static(50_000)
    """env steps per seed, over all envs"""
    num_envs: int = static(8)
    """parallel environments per seed"""
    num_steps: int = static(16)
    """steps each env takes per update"""
    hidden_sizes: tuple = static((64, 64))
    """actor and critic MLP widths"""
    lr: float = 7e-4
    """the actor's learning rate"""
    critic_lr: float = 1e-3
    """the critic's learning rate"""
    gamma: float = 0.99
    """discount"""
    ent_coef: float = 0.01
    """entropy bonus"""
    max_grad_norm: float = 0.5
    """global gradient norm each network's gradient is clipped to; 0: no clipping"""

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.steps_per_update


RANGES = intervals({"lr": "(0, inf)", "critic_lr": "(0, inf)", "gamma": "[0, 1]", "ent_coef": "[0, inf)",
                    "max_grad_norm": "[0, inf)"})


def default_config(env_name: str | None = None, **settings) -> A2CConfig:
    return make_config(A2CConfig, {}, env_name, settings)


def validate(config: A2CConfig, env: VecEnv | None = None) -> None:
    """Raises ConfigError naming the setting, before anything compiles."""
    check_settings(config, RANGES)
    require_positive(config, "total_timesteps", "num_envs", "num_steps")
    if config.num_updates < 1:
        raise ConfigError(f"total_timesteps={config.total_timesteps} is less than one update of "
                          f"num_envs x num_steps = {config.steps_per_update} env steps")
    if env is not None and not isinstance(env.action_space, spaces.Discrete):
        raise ConfigError(f"a2c acts in Discrete action spaces; {env.name} has {type(env.action_space).__name__}")


class Head(nn.Module):
    """An MLP and one linear output of `size`."""

    hidden_sizes: tuple
    size: int

    @nn.compact
    def __call__(self, obs):
        return nn.Dense(self.size)(MLP(self.hidden_sizes)(flatten_obs(obs)))


class A2CState(NamedTuple):
    params: Any  # the actor's parameters: what `act` takes
    critic_params: Any
    actor_opt: Any
    critic_opt: Any
    env_state: Any
    obs: Any
    mask: jax.Array
    key: jax.Array
    update: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array
    config: A2CConfig


class A2C(Agent):
    """`init(key, config) -> A2CState` and `update(state) -> (state, metrics)` for one seed."""

    learned = ("params", "critic_params", "actor_opt", "critic_opt")

    def __init__(self, config: A2CConfig, env: VecEnv, axis_name: str | None = None, hints: Hints = Hints()):
        if axis_name is not None:
            raise ConfigError("a2c cannot split one seed's envs over devices; use --num-seeds N or --devices 1")
        validate(config, env)
        self.config = config
        self.env = wrap_env(env)
        self.actor = Head(tuple(config.hidden_sizes), env.action_space.n)
        self.critic = Head(tuple(config.hidden_sizes), 1)
        self.optimizer = optax.scale_by_adam()
        self.num_updates = config.num_updates
        self.steps_per_update = config.steps_per_update

    def init(self, key: jax.Array, config: A2CConfig | None = None) -> A2CState:
        config = self.config if config is None else config
        key, actor_key, critic_key, reset_key = jax.random.split(key, 4)
        one = spaces.zeros(self.env.observation_space, (1,))
        params, critic_params = self.actor.init(actor_key, one), self.critic.init(critic_key, one)
        env_state, ts = self.env.reset(reset_key)
        none = jnp.full((), jnp.nan, jnp.float32)  # no episode has ended yet
        return A2CState(params=params, critic_params=critic_params, actor_opt=self.optimizer.init(params),
                        critic_opt=self.optimizer.init(critic_params), env_state=env_state, obs=ts.obs,
                        mask=ts.action_mask, key=key, update=jnp.zeros((), jnp.int32), episode_return=none,
                        episode_length=none, config=config)

    def _logits(self, params, obs, mask):
        return jnp.where(mask, self.actor.apply(params, obs), -1e9)

    def _value(self, critic_params, obs):
        return self.critic.apply(critic_params, obs)[..., 0]

    def act(self, params, obs, mask, key=None, memory=None):
        logits = self._logits(params, obs, mask)
        return jnp.argmax(logits, -1) if key is None else jax.random.categorical(key, logits)

    def update(self, state: A2CState) -> tuple[A2CState, dict]:
        hp = state.config

        def step(carry, key):
            env_state, obs, mask = carry
            act_key, env_key = jax.random.split(key)
            action = self.act(state.params, obs, mask, act_key)
            env_state, ts = self.env.step(env_state, action, env_key)
            # a truncated episode is bootstrapped from its last observation, not the next episode's first
            final_value = self._value(state.critic_params, ts.final_obs)
            record = (obs, mask, action, ts.reward, ts.terminated, ts.truncated, final_value, ts.info)
            return (env_state, ts.obs, ts.action_mask), record

        key, *keys = jax.random.split(state.key, self.config.num_steps + 1)
        (env_state, obs, mask), (b_obs, b_mask, action, reward, terminated, truncated, final_value, info) = \
            jax.lax.scan(step, (state.env_state, state.obs, state.mask), jnp.stack(keys))

        def returns_from(bootstrap):
            def back(next_return, x):
                r, term, trunc, v_final = x
                ret = r + hp.gamma * jnp.where(trunc, v_final, next_return) * (1.0 - term)
                return ret, ret
            return jax.lax.scan(back, bootstrap, (reward, terminated, truncated, final_value), reverse=True)[1]

        targets = returns_from(self._value(state.critic_params, obs))

        over_time = lambda f, *args: jax.vmap(f, in_axes=(None,) + (0,) * (len(args) - 1))(*args)

        def critic_loss(critic_params):
            return 0.5 * jnp.mean((over_time(self._value, critic_params, b_obs) - targets) ** 2)

        def actor_loss(params):
            advantage = jax.lax.stop_gradient(targets - over_time(self._value, state.critic_params, b_obs))
            logp = jax.nn.log_softmax(over_time(self._logits, params, b_obs, b_mask))
            chosen = jnp.take_along_axis(logp, action[..., None], -1)[..., 0]
            entropy = -jnp.sum(jnp.exp(logp) * logp, -1).mean()
            return -jnp.mean(chosen * advantage) - hp.ent_coef * entropy, entropy

        (policy_loss, entropy), actor_grad = jax.value_and_grad(actor_loss, has_aux=True)(state.params)
        value_loss, critic_grad = jax.value_and_grad(critic_loss)(state.critic_params)
        params, actor_opt = self._adam(state.params, actor_grad, state.actor_opt, hp.lr, hp.max_grad_norm)
        critic_params, critic_opt = self._adam(state.critic_params, critic_grad, state.critic_opt, hp.critic_lr,
                                               hp.max_grad_norm)
        losses = {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy}
        metrics, ep_return, ep_length = update_metrics(losses, info, state.episode_return, state.episode_length)
        state = state._replace(params=params, critic_params=critic_params, actor_opt=actor_opt,
                               critic_opt=critic_opt, env_state=env_state, obs=obs, mask=mask, key=key,
                               update=state.update + 1, episode_return=ep_return, episode_length=ep_length)
        return state, metrics

    def _adam(self, params, grads, opt_state, lr, max_norm):
        direction, opt_state = self.optimizer.update(clip_gradients(grads, max_norm), opt_state)
        return jax.tree.map(lambda p, u: p - lr * u, params, direction), opt_state


ALGORITHM = Algorithm(name="a2c", config_class=A2CConfig, default_config=default_config, validate=validate,
                      make_agent=A2C, ranges=RANGES)
