"""Deep Q-Networks, the whole training loop one jitted `lax.scan`.

    env = pjrl_envs.make("gymnax:CartPole-v1", num_envs=10)
    train = make_train(DQNConfig(), env)
    state, metrics = jax.jit(jax.vmap(train))(jax.random.split(key, 8))  # 8 seeds, one compile

A replay buffer on device (`replay.Replay`, flashbax's trajectory buffer: one time axis per env,
so n-step sequences are contiguous slices), epsilon-greedy exploration on a
linear schedule, a target network (hard copies or Polyak averaging), double-Q
and n-step returns as options, Huber or squared loss. TD targets bootstrap from
`final_obs` on truncation and not on termination. By default (`bootstrap="replay"`)
the buffer keeps each step's `final_obs` and the target network values it when the
transition is replayed, in place of the next observation it bootstraps from (one
observation per sampled row either way); `bootstrap="collect"`
values it once, after the rollout, and stores one scalar, halving the buffer's
observation memory at the price of a value as old as the transition
(`benchmarks/dqn_truncation.py` measures the bias). Action masks are
respected by the greedy argmax, by exploration and by the max in the target.
"""
from __future__ import annotations

from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import optax
from flax import struct

from pjrl_agents.algorithms.contract import Agent, Algorithm, Hints
from pjrl_agents.algorithms.replay import Replay, check_sizes
from pjrl_agents.algorithms.shared import clip_gradients, learning_rate, update_metrics, wrap_env
from pjrl_agents.algorithms.shared import make_train as _make_train
from pjrl_agents.algorithms.values import QNetwork, epsilon_greedy, linear_epsilon, masked_argmax, masked_max
from pjrl_agents.config import ConfigError, check_settings, divisors, intervals, make_config, require_positive, static
from pjrl_envs import spaces
from pjrl_envs.core import VecEnv


@struct.dataclass
class DQNConfig:
    """DQN settings. Defaults are PureJaxRL's dqn.py CartPole ones, so results compare one to one.

    Intervals and `learning_starts` count env steps summed over all envs, as PureJaxRL does.
    """

    # -- sizes and switches: static, they fix shapes or the program
    total_timesteps: int = static(500_000)
    """env steps per seed, over all envs"""
    num_envs: int = static(10)
    """parallel environments per seed"""
    num_steps: int = static(10)
    """steps each env takes per update (one row of metrics); then the update's gradient steps run"""
    buffer_size: int = static(10_000)
    """replay capacity in transitions, over all envs"""
    batch_size: int = static(128)
    """transitions per gradient step"""
    train_interval: int = static(10)
    """env steps per gradient step; must divide num_envs x num_steps"""
    target_update_interval: int = static(500)
    """env steps between target-network updates, made after the update that passes each multiple
    (so at most one per update; with Polyak averaging set it to num_envs x num_steps for one every update)"""
    n_step: int = static(1)
    """length of the bootstrapped return"""
    double_q: bool = static(False)
    """pick the next action with the online network, value it with the target network"""
    loss: str = static("mse")
    """mse (squared TD error, as PureJaxRL) or huber (delta 1)"""
    bootstrap: str = static("replay")
    """when a truncated step's V(final_obs) is valued: replay (by the target network at replay time; the
    buffer holds a second observation per transition) or collect (once, after collection, stored as one
    scalar: half the observation memory, but the value is as old as the transition)"""
    hidden_sizes: tuple = static((120, 84))
    """Q-network MLP widths"""
    activation: str = static("relu")
    """tanh, relu, gelu or silu"""
    anneal_lr: bool = static(False)
    """decay the learning rate linearly to zero over training"""
    # -- numbers: traced, sweepable
    learning_starts: int = 10_000
    """env steps of pure collection before the first gradient step"""
    lr: float = 2.5e-4
    """Adam learning rate"""
    gamma: float = 0.99
    """discount"""
    tau: float = 1.0
    """target update rate: 1 copies the online network, below 1 is Polyak averaging"""
    epsilon_start: float = 1.0
    """exploration rate at step 0"""
    epsilon_finish: float = 0.05
    """exploration rate after the anneal"""
    epsilon_anneal_steps: float = 250_000
    """env steps over which epsilon falls linearly (default: half of total_timesteps, unless the env's
    defaults set it)"""
    max_grad_norm: float = 0.0
    """global gradient-norm clip; 0 turns clipping off (PureJaxRL does not clip)"""

    @property
    def steps_per_update(self) -> int:
        """env steps in one update: num_envs x num_steps"""
        return self.num_envs * self.num_steps

    @property
    def gradient_steps(self) -> int:
        """gradient steps per update"""
        return self.steps_per_update // self.train_interval

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.steps_per_update


# Per-env defaults (as RL Zoo keeps them). CartPole is PureJaxRL's dqn.py config spelled out, with its
# LR_LINEAR_DECAY option on: the decay keeps late training from unlearning a balanced policy.
ENV_DEFAULTS: dict[str, dict[str, Any]] = {
    "gymnax:CartPole-v1": dict(total_timesteps=500_000, num_envs=10, buffer_size=10_000, batch_size=128,
                               lr=2.5e-4, learning_starts=10_000, train_interval=10,
                               target_update_interval=500, epsilon_start=1.0, epsilon_finish=0.05,
                               epsilon_anneal_steps=250_000, gamma=0.99, tau=1.0, anneal_lr=True),
}
_MINATAR = dict(total_timesteps=1_000_000, num_envs=32, num_steps=8, buffer_size=100_000, batch_size=64,
                train_interval=8, target_update_interval=2_048, learning_starts=10_000, lr=2.5e-4,
                epsilon_anneal_steps=250_000, epsilon_finish=0.01, loss="huber", double_q=True,
                max_grad_norm=10.0, hidden_sizes=(128, 128))
for _game in ("Asterix", "Breakout", "Freeway", "SpaceInvaders"):
    ENV_DEFAULTS[f"gymnax:{_game}-MinAtar"] = dict(_MINATAR)


def default_config(env_name: str | None = None, **settings) -> DQNConfig:
    """DQNConfig with the env's defaults (if it has any) and then `settings` applied.

    Where neither sets `epsilon_anneal_steps`, exploration anneals over the first
    half of `total_timesteps` (as CleanRL's exploration_fraction=0.5), so a short
    run ends greedy enough to show what it learned.
    """
    config = make_config(DQNConfig, ENV_DEFAULTS, env_name, settings)
    total = config.total_timesteps
    if "epsilon_anneal_steps" not in {**ENV_DEFAULTS.get(env_name or "", {}), **settings} and \
            isinstance(total, int) and total > 1:  # (a bad total is reported by validate)
        config = config.replace(epsilon_anneal_steps=total // 2)
    return config


RANGES = intervals({"lr": "(0, inf)", "gamma": "[0, 1]", "epsilon_start": "[0, 1]",
          "epsilon_finish": "[0, 1]", "epsilon_anneal_steps": "(0, inf)", "max_grad_norm": "[0, inf)"})
"""where each number must lie (checked for every sweep member too)"""


def validate(config: DQNConfig, env: VecEnv | None = None) -> None:
    """Raises ConfigError naming the field, before anything compiles."""
    check_settings(config, RANGES)
    require_positive(config, "total_timesteps", "num_envs", "num_steps", "buffer_size", "batch_size",
                     "train_interval", "target_update_interval", "n_step")
    check_sizes(config.buffer_size, config.batch_size, config.num_envs, config.n_step + 1)
    if config.steps_per_update % config.train_interval:
        ok = [d for d in divisors(config.steps_per_update) if d <= 1000]
        raise ConfigError(f"train_interval={config.train_interval} does not divide num_envs x num_steps = "
                          f"{config.steps_per_update}; use one of {ok} or change num_steps")
    if config.num_updates < 1:
        raise ConfigError(f"total_timesteps={config.total_timesteps} is less than one update "
                          f"(num_envs x num_steps = {config.steps_per_update})")
    starts = config.learning_starts
    if isinstance(starts, (int, float)) and not 0 <= starts < config.total_timesteps:
        raise ConfigError(f"learning_starts={starts} must be at least 0 and below total_timesteps="
                          f"{config.total_timesteps}, or nothing is learned; lower learning_starts")
    tau = config.tau
    if isinstance(tau, (int, float)) and not 0 < tau <= 1:
        raise ConfigError(f"tau={tau} must be in (0, 1]: 1 copies the online network, less is Polyak averaging")
    if config.bootstrap not in ("replay", "collect"):
        raise ConfigError(f"bootstrap={config.bootstrap!r}; use replay or collect")
    if config.loss not in ("mse", "huber"):
        raise ConfigError(f"loss={config.loss!r}; use mse or huber")
    if config.activation not in ("tanh", "relu", "gelu", "silu"):
        raise ConfigError(f"activation={config.activation!r}; use tanh, relu, gelu or silu")
    if env is not None:
        if env.num_envs != config.num_envs:
            raise ConfigError(f"num_envs={config.num_envs} but the env was made with {env.num_envs}")
        if isinstance(env.action_space, spaces.Box):
            raise ConfigError("DQN needs discrete actions; use --algo ppo")
        if not isinstance(env.action_space, spaces.Discrete):
            raise ConfigError(f"DQN needs one Discrete action, not {type(env.action_space).__name__}; "
                              "use --algo ppo")


# ---------------------------------------------------------------- state, transitions


class Transition(NamedTuple):
    """One env step as the buffer stores it (leading axes added by the buffer or the rollout)."""

    obs: Any  # the observation the action was chosen for
    mask: jax.Array  # (A,) its action mask
    action: jax.Array  # ()
    reward: jax.Array  # () float32
    terminated: jax.Array  # () bool
    truncated: jax.Array  # () bool
    final_obs: Any  # the pre-reset observation after the step (bootstrap="replay"; else None)
    final_value: jax.Array | None  # () V(final_obs) under the target network just after collection
    # (bootstrap="collect"; None until the update values the collected steps, and with bootstrap="replay")


class Sample(NamedTuple):
    """What one gradient step learns from (a leading `(G,)` axis when all of an update's are drawn)."""

    obs: Any  # (N, ...) the sampled transition's observation
    action: jax.Array  # (N,)
    reward: jax.Array  # (N, n_step) it and the n_step - 1 that follow
    terminated: jax.Array  # (N, n_step)
    truncated: jax.Array  # (N, n_step)
    final_value: jax.Array | None  # (N, n_step) stored V(final_obs) (bootstrap="collect"; else None)
    next_obs: Any  # (N, ...) the observation bootstrapped from; kept for double-Q and where the gradient
    # step values it. With bootstrap="replay", the final_obs of the first step that ends an episode if it
    # was truncated
    next_mask: jax.Array  # (N, A) its action mask (all actions for a final_obs: its mask is gone)
    q_next: jax.Array | None  # (N, A) the target network's Q of it (None where the gradient step values it)


class DQNState(NamedTuple):
    """Everything one seed carries from update to update."""

    params: Any
    target_params: Any
    opt_state: Any  # Adam moments
    buffer: Any  # flashbax TrajectoryBufferState, leaves (B, buffer_size // B, ...)
    env_state: Any
    obs: Any  # (B, ...) observation the next action is chosen for
    mask: jax.Array  # (B, A) its action mask
    key: jax.Array
    timesteps: jax.Array  # () int32, env steps so far over all envs
    update: jax.Array  # () int32, updates done
    episode_return: jax.Array  # () last mean return of finished episodes; NaN before the first ends
    episode_length: jax.Array  # ()
    config: DQNConfig  # numeric leaves may be traced


# ---------------------------------------------------------------- pure maths


def epsilon(config: DQNConfig, timesteps):
    """Linear decay from epsilon_start to epsilon_finish over epsilon_anneal_steps, then flat."""
    return linear_epsilon(config.epsilon_start, config.epsilon_finish, config.epsilon_anneal_steps, timesteps)


def td_target(reward, terminated, truncated, final_value, next_value, gamma):
    """n-step TD targets. `reward`, `terminated`, `truncated`, `final_value`: `(N, n)`; `next_value`: `(N,)`.

    Row i is the n steps that follow the sampled transition, in order, and
    `next_value[i]` the value of the observation after the n-th. The return sums
    discounted rewards up to and including the first step where an episode ends;
    it bootstraps from `final_value` of that step if it was truncated, from
    nothing if it terminated, and from `next_value` if no episode ended. Returns `(N,)`.
    """
    n = reward.shape[1]
    target = jnp.zeros_like(next_value)
    alive = jnp.ones_like(next_value)  # 1 while no episode has ended inside the n steps
    discount = jnp.ones_like(next_value)
    for k in range(n):
        target = target + alive * discount * reward[:, k]
        discount = discount * gamma
        target = target + alive * truncated[:, k] * discount * final_value[:, k]
        alive = alive * (1.0 - (terminated[:, k] | truncated[:, k]))
    return target + alive * discount * next_value


def q_loss(params, apply_fn, obs, action, target, loss: str):
    """Regression of Q(obs, action) on fixed targets. Returns `(loss, metrics)`."""
    q = apply_fn(params, obs)  # (N, A)
    q_taken = jnp.take_along_axis(q, action[:, None].astype(jnp.int32), -1)[:, 0]  # (N,)
    error = q_taken - target
    per_sample = optax.huber_loss(error, delta=1.0) if loss == "huber" else jnp.square(error)
    value = per_sample.mean()
    return value, {"loss": value, "q_value": q_taken.mean(), "td_error": jnp.abs(error).mean()}


# ---------------------------------------------------------------- training


class DQN(Agent):
    """`init(key, config) -> DQNState` and `update(state) -> (state, metrics)` for one seed.

    An update collects `num_steps` steps from every env into the buffer, then,
    once `learning_starts` env steps are in, draws all of its `gradient_steps`
    batches at once (the buffer does not change in between), values their next
    observations with the target network in one pass, and takes the gradient
    steps one after another. The target network follows when an interval is due.

    Where XLA runs independent kernels side by side (`hints.kernels_side_by_side`: a CPU with the
    concurrency-optimised scheduler on, which the run layer turns on from `ALGORITHM.concurrent_runs`,
    16, runs a device), each gradient step values its own batch's next observations instead (`value_in_step`), so
    that the target network's forward pass runs beside the gradient: 16 CartPole seeds on one
    CPU device train 12-20 % faster so; with kernels in sequence one pass is faster. The same
    parameters either way (bit for bit after 150 CartPole updates, with and without double-Q).
    """

    learned = ("params", "target_params", "opt_state")
    holds_keys = True
    """A program of one unbatched run lowers best with `pjrl_envs.prng.held()`: an update derives
    many keys, and with each hash in a kernel of its own one CartPole seed's training compiles in
    3.6 s instead of 4.9 s (the same bits, the same run time); vmapped seeds compile slower held
    (16: 5.3 s against 4.6 s)."""

    def __init__(self, config: DQNConfig, env: VecEnv, axis_name: str | None = None, hints: Hints = Hints()):
        if axis_name is not None:
            raise ConfigError("DQN cannot split one seed's envs over devices; use --num-seeds N (seeds split "
                              "over devices) or --devices 1")
        validate(config, env)
        self.config = config
        self.env = wrap_env(env)
        self.action_space = env.action_space
        self.network = QNetwork(env.action_space.n, tuple(config.hidden_sizes), config.activation)
        self.optimizer = optax.scale_by_adam()
        self.buffer = Replay(config.buffer_size, config.num_envs, config.gradient_steps * config.batch_size,
                             config.n_step + 1)
        self.num_updates = config.num_updates
        self.steps_per_update = config.steps_per_update
        # the target network values each batch inside its gradient step, not an update's batches in one pass
        self.value_in_step = hints.kernels_side_by_side

    def init(self, key: jax.Array, config: DQNConfig | None = None) -> DQNState:
        config = self.config if config is None else config
        key, net_key, reset_key = jax.random.split(key, 3)
        params = self.network.init(net_key, spaces.zeros(self.env.observation_space, (1,)))
        env_state, ts = self.env.reset(reset_key)
        one = jax.tree.map(lambda x: x[0], ts)
        replay = self.config.bootstrap == "replay"
        example = Transition(one.obs, one.action_mask, jnp.zeros((), self.action_space.dtype), one.reward,
                             one.terminated, one.truncated, one.final_obs if replay else None,
                             None if replay else one.reward)
        none = jnp.full((), jnp.nan, jnp.float32)  # no episode has ended yet
        return DQNState(params, params, self.optimizer.init(params), self.buffer.init(example), env_state,
                        ts.obs, ts.action_mask, key,
                        jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), none, none, config)

    def _env_step(self, state: DQNState, keys: jax.Array):
        # SELECT ACTION (params do not change within a rollout: one forward pass per env step)
        act_key, step_key = keys[0], keys[1]
        eps = epsilon(state.config, state.timesteps)
        q = self.network.apply(state.params, state.obs)
        action = epsilon_greedy(act_key, q, state.mask, eps).astype(self.action_space.dtype)

        # STEP ENV
        env_state, ts = self.env.step(state.env_state, action, step_key)

        final_obs = ts.final_obs if self.config.bootstrap == "replay" else None
        transition = Transition(state.obs, state.mask, action, ts.reward, ts.terminated, ts.truncated, final_obs,
                                None)
        episode = {k: ts.info[k] for k in ("returned_episode", "episode_return", "episode_length")}
        state = state._replace(env_state=env_state, obs=ts.obs, mask=ts.action_mask,
                               timesteps=state.timesteps + self.env.num_envs)
        return state, (transition, ts.final_obs, episode)

    def _next_value(self, params, q_target, obs, mask):
        """V(obs) for TD targets `(...,)`: max of the target network's Q, or its Q at the online argmax."""
        if self.config.double_q:
            return jnp.take_along_axis(q_target, masked_argmax(self.network.apply(params, obs), mask)[..., None],
                                       -1)[..., 0]
        return masked_max(q_target, mask)

    def _gradient_step(self, carry, batch: Sample, lr, hp: DQNConfig, target_params):
        params, opt_state = carry

        # TD TARGET: the target network's Q of the batch's next observations, computed here
        # (value_in_step) or for all of this update's batches at once (`_sample`)
        q_next = self.network.apply(target_params, batch.next_obs) if self.value_in_step else batch.q_next
        next_value = self._next_value(params, q_next, batch.next_obs, batch.next_mask)
        final_value = batch.final_value
        if final_value is None:  # replay: next_value is V(final_obs) where the first step to end was truncated
            final_value = jnp.broadcast_to(next_value[:, None], batch.reward.shape)
        target = td_target(batch.reward, batch.terminated, batch.truncated, final_value, next_value, hp.gamma)

        # UPDATE NETWORK
        grads, metrics = jax.grad(q_loss, has_aux=True)(
            params, self.network.apply, batch.obs, batch.action, target, self.config.loss)
        grads = clip_gradients(grads, hp.max_grad_norm)
        updates, opt_state = self.optimizer.update(grads, opt_state)
        params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
        return (params, opt_state), metrics

    def _sample(self, buffer, key, target_params) -> Sample:
        """Every batch of the update in one draw: leaves `(G, N, ...)`.

        A target bootstraps from one observation: the one `n_step` later if no episode ended
        within the steps, the final_obs of the first step that ended one if it was truncated
        (bootstrap="replay"), none if it terminated. So each row values one observation: here, in
        one pass, unless the gradient steps value their own (`value_in_step`).
        """
        n, shape = self.config.n_step, (self.config.gradient_steps, self.config.batch_size)
        seq = self.buffer.sample(buffer, key, shape)  # leaves (G, N, n_step + 1, ...)
        terminated, truncated = seq.terminated[:, :, :n], seq.truncated[:, :, :n]
        next_obs, next_mask, final_value = jax.tree.map(lambda x: x[:, :, n], seq.obs), seq.mask[:, :, n], None
        if self.config.bootstrap == "replay":
            ended = terminated | truncated
            first = jnp.argmax(ended, -1)  # the first step that ended an episode (0 where none did)
            at_first = lambda x: jnp.take_along_axis(x, first.reshape(first.shape + (1,) * (x.ndim - 2)), 2)[:, :, 0]
            from_final = ended.any(-1) & at_first(truncated)
            pick = lambda a, b: jnp.where(from_final.reshape(from_final.shape + (1,) * (a.ndim - 2)), a, b)
            next_obs = jax.tree.map(lambda f, o: pick(at_first(f[:, :, :n]), o), seq.final_obs, next_obs)
            next_mask = pick(jnp.ones_like(next_mask), next_mask)
        else:
            final_value = seq.final_value[:, :, :n]
        q_next = None
        if not self.value_in_step:
            flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), next_obs)
            # flax types `apply` as `output | (output, variables)`; without `mutable` it is the output
            q_next = cast(jax.Array, self.network.apply(target_params, flat)).reshape(shape + (-1,))
        keep_next = self.value_in_step or self.config.double_q
        return Sample(jax.tree.map(lambda x: x[:, :, 0], seq.obs), seq.action[:, :, 0], seq.reward[:, :, :n],
                      terminated, truncated, final_value, next_obs if keep_next else None, next_mask, q_next)

    def update(self, state: DQNState) -> tuple[DQNState, dict]:
        """`num_steps` steps of every env into the buffer, then `gradient_steps` gradient steps.

        Numbers come from the traced `state.config` (`hp`), sizes from the static `self.config`.
        """
        hp, sizes = state.config, self.config
        # every key of the update from one split: the next key, the learning key, and each env step's two
        keys = jax.random.split(state.key, 2 + 2 * sizes.num_steps)
        key, learn_key, step_keys = keys[0], keys[1], keys[2:].reshape((sizes.num_steps, 2) + keys.shape[1:])
        # env steps so far, from the update count (shared by every run in a chunk: conds on it stay conds)
        start = (state.update * sizes.steps_per_update).astype(state.timesteps.dtype)
        state = state._replace(timesteps=start)

        # COLLECT TRANSITIONS
        state, (traj, final_obs, episode) = jax.lax.scan(
            self._env_step, state, step_keys)

        if sizes.bootstrap == "collect":
            # VALUE THE PRE-RESET OBSERVATIONS in one pass: a scalar each, used where truncated. The mask
            # of a final_obs after a reset is gone, so all actions count.
            flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), final_obs)
            q_final = cast(jax.Array, self.network.apply(state.target_params, flat))  # as in `_sample`
            final_value = self._next_value(state.params, q_final, flat, jnp.ones(q_final.shape, jnp.bool_))
            traj = traj._replace(final_value=final_value.reshape(traj.reward.shape))
        buffer = self.buffer.add(state.buffer, traj)

        # LEARN, once learning_starts env steps are in and the buffer holds a full n-step sequence
        warm = sizes.num_envs * (sizes.n_step + 1)
        learning = (state.timesteps >= hp.learning_starts) & (state.timesteps >= warm)
        zeros = {k: jnp.zeros((sizes.gradient_steps,), jnp.float32) for k in ("loss", "q_value", "td_error")}
        lr = learning_rate(hp.lr, state.update, self.num_updates, sizes.anneal_lr)

        def learn(carry):
            batches = self._sample(buffer, learn_key, state.target_params)
            return jax.lax.scan(lambda c, b: self._gradient_step(c, b, lr, hp, state.target_params), carry, batches)

        (params, opt_state), losses = jax.lax.cond(
            learning, learn, lambda carry: (carry, zeros), (state.params, state.opt_state))

        # UPDATE TARGET NETWORK after the update in which an interval boundary was crossed
        interval = sizes.target_update_interval
        due = state.timesteps // interval != start // interval
        target_params = jax.tree.map(lambda t, p: jnp.where(due, t + hp.tau * (p - t), t),
                                     state.target_params, params)

        # METRICS: a few scalars per update
        metrics, ep_return, ep_length = update_metrics(losses, episode, state.episode_return, state.episode_length)
        metrics.update(epsilon=epsilon(hp, state.timesteps), learning=learning.astype(jnp.float32))
        state = state._replace(params=params, target_params=target_params, opt_state=opt_state, buffer=buffer,
                               key=key, update=state.update + 1, episode_return=ep_return,
                               episode_length=ep_length)
        return state, metrics

    def act(self, params, obs, mask, key=None):
        """Greedy legal actions for a batch of observations; with `key`, epsilon_finish-greedy."""
        q = self.network.apply(params, obs)
        if key is None:
            return masked_argmax(q, mask).astype(self.action_space.dtype)
        return epsilon_greedy(key, q, mask, self.config.epsilon_finish).astype(self.action_space.dtype)


def make_train(config: DQNConfig, env: VecEnv):
    """`train(key, config=None) -> (DQNState, metrics)`, metrics `(num_updates,)` per name (see common.make_train)."""
    return _make_train(DQN(config, env))


ALGORITHM = Algorithm(name="dqn", config_class=DQNConfig, default_config=default_config, validate=validate,
                      make_agent=DQN, splits_envs=False, env_defaults=ENV_DEFAULTS, ranges=RANGES,
                      concurrent_runs=16)
