"""The loop the off-policy actor-critic agents share (SAC, TD3), the whole of it one jitted `lax.scan`.

An update steps every env `num_steps` times with the exploring policy (uniform random actions until
`learning_starts` env steps are in), adds the steps to a replay buffer on device (`replay.Replay`), then,
once learning has started, draws all of the update's `gradient_steps` batches at once (the buffer does
not change in between) and takes the gradient steps one after another. What a gradient step does is the
algorithm's own (`OffPolicyAgent.gradient_step`); so are the actor, the exploration and the greedy policy.

Actions live in (-1, 1)^D, the policy's scale, in the buffer and in the networks; `to_env` maps them
affinely onto the Box's bounds, which must be finite. Every transition keeps the observation after its
step before any reset (`TimeStep.final_obs`) and bootstraps from it unless the episode terminated: a
time limit is bootstrapped through, an ending is not.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pjrl_agents.algorithms.contract import Agent
from pjrl_agents.algorithms.replay import Replay, check_sizes
from pjrl_agents.algorithms.shared import update_metrics, wrap_env
from pjrl_agents.config import ConfigError, check_settings, require_positive
from pjrl_envs import spaces
from pjrl_envs.core import VecEnv


class Transition(NamedTuple):
    """One env step as the buffer stores it (leading axes added by the buffer or the rollout)."""

    obs: Any  # the observation the action was chosen for
    action: jax.Array  # (D,) in (-1, 1)^D, the policy's scale
    reward: jax.Array  # () float32
    terminated: jax.Array  # () bool: the episode ended; nothing to bootstrap from
    next_obs: Any  # the observation after the step, before any reset (`final_obs`)


class OffPolicyState(NamedTuple):
    """Everything one seed carries from update to update."""

    params: Any  # the actor's parameters: what `act` takes
    learner: Any  # the algorithm's own: critics, target networks, optimiser states, temperature ...
    buffer: Any  # the replay buffer's state, leaves (B, buffer_size // B, ...)
    env_state: Any
    obs: Any  # (B, ...) the observation the next action is chosen for
    key: jax.Array
    update: jax.Array  # () int32, updates done
    episode_return: jax.Array  # () last mean return of finished episodes; NaN before the first ends
    episode_length: jax.Array  # ()
    config: Any  # numeric leaves may be traced


def gradient_steps(config: Any) -> int:
    """Gradient steps in one update: `num_envs x num_steps x utd_ratio` (validated to be whole)."""
    return round(config.num_envs * config.num_steps * config.utd_ratio)


def validate_common(config: Any, env: VecEnv | None, name: str, ranges: dict) -> None:
    """The checks SAC and TD3 share; raises ConfigError naming the setting and what would work."""
    check_settings(config, ranges)
    require_positive(config, "total_timesteps", "num_envs", "num_steps", "buffer_size", "batch_size",
                     "utd_ratio")
    check_sizes(config.buffer_size, config.batch_size, config.num_envs)
    steps = config.num_envs * config.num_steps
    ratio = config.utd_ratio
    if isinstance(ratio, (int, float)) and (abs(steps * ratio - round(steps * ratio)) > 1e-9 or
                                            round(steps * ratio) < 1):
        raise ConfigError(f"utd_ratio={ratio:g} gives {steps * ratio:g} gradient steps per update of num_envs x "
                          f"num_steps = {steps} env steps; it must be a whole number >= 1: use a multiple of "
                          f"1/{steps}")
    if config.total_timesteps < steps:
        raise ConfigError(f"total_timesteps={config.total_timesteps} is less than one update "
                          f"(num_envs x num_steps = {steps})")
    starts = config.learning_starts
    if isinstance(starts, (int, float)) and not 0 <= starts < config.total_timesteps:
        raise ConfigError(f"learning_starts={starts} must be at least 0 and below total_timesteps="
                          f"{config.total_timesteps}, or nothing is learned; lower learning_starts")
    if config.activation not in ("tanh", "relu", "gelu", "silu"):
        raise ConfigError(f"activation={config.activation!r}; use tanh, relu, gelu or silu")
    if env is None:
        return
    if env.num_envs != config.num_envs:
        raise ConfigError(f"num_envs={config.num_envs} but the env was made with {env.num_envs}")
    space = env.action_space
    if not isinstance(space, spaces.Box):
        raise ConfigError(f"{name} needs continuous (Box) actions, not {type(space).__name__}; use --algo dqn, "
                          "pqn or ppo")
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)) and np.all(space.high > space.low)):
        raise ConfigError(f"{name} squashes its actions into the action space's bounds, and this env's are not "
                          f"finite (low {space.low.tolist()}, high {space.high.tolist()}); use --algo ppo")


class OffPolicyAgent(Agent):
    """`init`, `update` and `act` for an actor-critic that learns from replay; a subclass gives the actor
    and the learner's pieces (`init_learner`, `explore`, `policy`, `gradient_step`, `metric_names`).

    Sizes come from the static `config` given here, numbers from the traced `state.config`.
    """

    learned = ("params", "learner")
    holds_keys = True
    """A program of one unbatched run lowers faster with each Threefry hash in a kernel of its own: one
    Pendulum seed at rejax's settings compiles in 5.4 s instead of 8.4-9.8 s (TD3), 7.4 s instead of
    7.9-9.0 s (SAC); the same bits either way."""
    metric_names: tuple[str, ...] = ()
    """the learning metrics `gradient_step` returns (each averaged over an update's gradient steps)"""

    def __init__(self, config: Any, env: VecEnv, normalize_obs: bool = False):
        self.config = config
        self.env = wrap_env(env, normalize_obs=normalize_obs)
        space = env.action_space
        self.action_shape = tuple(space.shape)
        self.action_dim = int(np.prod(space.shape))
        low, high = (np.asarray(b, np.float32).reshape(-1) for b in (space.low, space.high))
        self._centre, self._half = jnp.asarray((high + low) / 2), jnp.asarray((high - low) / 2)
        self.log_scale = float(np.log((high - low) / 2).sum())
        """log |det| of `to_env`: a density over (-1, 1)^D less this is one over the env's actions"""
        self.gradient_steps = gradient_steps(config)
        self.buffer = Replay(config.buffer_size, config.num_envs, self.gradient_steps * config.batch_size)
        self.num_updates = config.total_timesteps // (config.num_envs * config.num_steps)
        self.steps_per_update = config.num_envs * config.num_steps

    # ------------------------------------------------------------ what an algorithm gives

    def init_actor(self, key: jax.Array) -> Any:
        """The actor's parameters."""
        raise NotImplementedError

    def init_learner(self, key: jax.Array, params: Any, config: Any) -> Any:
        """The learner's state (a NamedTuple) for the actor `params`."""
        raise NotImplementedError

    def explore(self, params: Any, obs: Any, key: jax.Array, config: Any) -> jax.Array:
        """Exploring actions `(B, D)` in (-1, 1)^D."""
        raise NotImplementedError

    def policy(self, params: Any, obs: Any, key: jax.Array | None) -> jax.Array:
        """`(B, D)` in (-1, 1)^D: the greedy actions, or with `key` the exploring ones at the end of training."""
        raise NotImplementedError

    def gradient_step(self, params: Any, learner: Any, batch: Transition, key: jax.Array, config: Any,
                      step: jax.Array) -> tuple[Any, Any, dict]:
        """One gradient step on `batch` (leaves `(N, ...)`); `step` counts the run's gradient steps from 0
        (unbatched under `vmap`, so a condition on it stays a condition). Returns `(params, learner, metrics)`."""
        raise NotImplementedError

    # ------------------------------------------------------------ the loop

    def to_env(self, action: jax.Array) -> jax.Array:
        """Actions `(B, D)` in (-1, 1)^D onto the env's Box: `(B, *shape)` within its bounds."""
        return (self._centre + self._half * action).reshape(action.shape[:1] + self.action_shape)

    def init(self, key: jax.Array, config: Any = None) -> OffPolicyState:
        config = self.config if config is None else config
        key, actor_key, learner_key, reset_key = jax.random.split(key, 4)
        params = self.init_actor(actor_key)
        env_state, ts = self.env.reset(reset_key)
        one = jax.tree.map(lambda x: x[0], ts)
        example = Transition(one.obs, jnp.zeros((self.action_dim,), jnp.float32), one.reward, one.terminated,
                             one.final_obs)
        none = jnp.full((), jnp.nan, jnp.float32)  # no episode has ended yet
        return OffPolicyState(params, self.init_learner(learner_key, params, config), self.buffer.init(example),
                              env_state, ts.obs, key, jnp.zeros((), jnp.int32), none, none, config)

    def _env_step(self, state: OffPolicyState, keys: jax.Array, timesteps: jax.Array):
        random_key, explore_key, step_key = keys[0], keys[1], keys[2]
        shape = (self.env.num_envs, self.action_dim)
        random = jax.random.uniform(random_key, shape, minval=-1.0, maxval=1.0)
        action = jnp.where(timesteps < state.config.learning_starts, random,
                           self.explore(state.params, state.obs, explore_key, state.config))
        env_state, ts = self.env.step(state.env_state, self.to_env(action), step_key)
        transition = Transition(state.obs, action, ts.reward, ts.terminated, ts.final_obs)
        episode = {k: ts.info[k] for k in ("returned_episode", "episode_return", "episode_length")}
        return state._replace(env_state=env_state, obs=ts.obs), (transition, episode)

    def update(self, state: OffPolicyState) -> tuple[OffPolicyState, dict]:
        """`num_steps` steps of every env into the buffer, then `gradient_steps` gradient steps."""
        hp, sizes, g = state.config, self.config, self.gradient_steps
        keys = jax.random.split(state.key, 2 + 3 * sizes.num_steps)
        key, learn_key, step_keys = keys[0], keys[1], keys[2:].reshape((sizes.num_steps, 3) + keys.shape[1:])
        # env steps so far, from the update count (shared by every run in a chunk: conds on it stay conds)
        start = state.update * self.steps_per_update
        times = start + sizes.num_envs * jnp.arange(sizes.num_steps)

        # COLLECT TRANSITIONS
        state, (rollout, episode) = jax.lax.scan(
            lambda s, x: self._env_step(s, *x), state, (step_keys, times))
        buffer = self.buffer.add(state.buffer, rollout)

        # LEARN, once learning_starts env steps are in
        learning = start + self.steps_per_update >= hp.learning_starts
        zeros = {k: jnp.zeros((g,), jnp.float32) for k in self.metric_names}

        def learn(carry):
            sample_key, step_key = jax.random.split(learn_key)
            batches = jax.tree.map(lambda x: x[:, :, 0], self.buffer.sample(buffer, sample_key, (g, sizes.batch_size)))
            xs = (batches, jax.random.split(step_key, g), state.update * g + jnp.arange(g))

            def step(c, x):
                params, learner, metrics = self.gradient_step(*c, *x[:2], hp, x[2])
                return (params, learner), metrics

            return jax.lax.scan(step, carry, xs)

        (params, learner), losses = jax.lax.cond(
            learning, learn, lambda carry: (carry, zeros), (state.params, state.learner))

        # METRICS: a few scalars per update
        metrics, ep_return, ep_length = update_metrics(losses, episode, state.episode_return, state.episode_length)
        metrics.update(learning=learning.astype(jnp.float32))
        state = state._replace(params=params, learner=learner, buffer=buffer, key=key, update=state.update + 1,
                               episode_return=ep_return, episode_length=ep_length)
        return state, metrics

    def act(self, params, obs, mask, key=None):
        """The greedy actions for a batch of observations, within the env's bounds; with `key` exploring ones."""
        return self.to_env(self.policy(params, obs, key))


def polyak(target: Any, online: Any, tau) -> Any:
    """`target + tau (online - target)`, leaf by leaf: Polyak averaging (`tau` 1 copies)."""
    return jax.tree.map(lambda t, p: t + tau * (p - t), target, online)


def adam_step(optimizer, grads, opt_state, params, lr):
    """One step of a `scale_by_adam` optimiser at the (possibly traced) learning rate `lr`."""
    updates, opt_state = optimizer.update(grads, opt_state)
    return jax.tree.map(lambda p, u: p - lr * u, params, updates), opt_state

