"""Parallelised Q-Network (PQN; Gallici et al., "Simplifying Deep Temporal Difference Learning",
ICLR 2025), the whole training loop one jitted `lax.scan`.

    env = pjrl_envs.make("gymnax:CartPole-v1", num_envs=32)
    train = make_train(PQNConfig(), env)
    state, metrics = jax.jit(jax.vmap(train))(jax.random.split(key, 8))  # 8 seeds, one compile

Q-learning without a replay buffer or a target network: many envs roll out
`num_steps` steps epsilon-greedily (over legal actions), Q(lambda) returns are
computed backwards over that rollout with the network that collected it, and then
`num_epochs` passes of `num_minibatches` minibatches regress Q(s, a) onto those
fixed targets. LayerNorm in the Q-network keeps this on-policy-like regression
stable without a target network (the paper's argument). A truncated step's
return stops there and bootstraps from max Q of its pre-reset `final_obs` (over
all actions: that observation's mask is gone); a terminated step's bootstraps
from nothing.
"""
from __future__ import annotations

from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import optax
from flax import struct

from pjrl_agents.algorithms.contract import Agent, Algorithm, Hints
from pjrl_agents.algorithms.networks import TORSOS, choose_torso
from pjrl_agents.algorithms.shared import clip_gradients, learning_rate, permutation, update_metrics, wrap_env
from pjrl_agents.algorithms.shared import make_train as _make_train
from pjrl_agents.algorithms.values import QNetwork, epsilon_greedy, linear_epsilon, masked_argmax, masked_max
from pjrl_agents.config import ConfigError, check_settings, divisors, intervals, make_config, require_positive, static
from pjrl_envs import spaces
from pjrl_envs.core import VecEnv


@struct.dataclass
class PQNConfig:
    """PQN settings. Defaults are purejaxql's CartPole ones (pqn_cartpole.yaml), except the reward scale,
    which is 1 here and 0.1 in CartPole's env defaults."""

    # -- sizes and switches: static, they fix shapes or the program
    total_timesteps: int = static(500_000)
    """env steps per seed, over all envs"""
    num_envs: int = static(32)
    """parallel environments per seed"""
    num_steps: int = static(64)
    """steps each env takes per rollout (one update)"""
    num_epochs: int = static(4)
    """passes over each rollout"""
    num_minibatches: int = static(16)
    """minibatches per epoch; must divide num_envs x num_steps"""
    hidden_sizes: tuple = static((256, 256))
    """Q-network MLP widths (after the CNN torso for images)"""
    activation: str = static("relu")
    """tanh, relu, gelu or silu"""
    torso: str = static("auto")
    """auto (a small CNN for MinAtar-like images, the Nature CNN for Atari-sized frames, else an MLP), mlp, cnn or
    nature"""
    layer_norm: bool = static(True)
    """LayerNorm after each hidden layer: what lets PQN learn without a target network"""
    optimizer: str = static("radam")
    """radam (as purejaxql) or adam"""
    anneal_lr: bool = static(True)
    """decay the learning rate linearly to zero over training's gradient steps"""
    # -- numbers: traced, sweepable
    lr: float = 1e-4
    """learning rate (initial, when annealed)"""
    gamma: float = 0.99
    """discount"""
    lam: float = 0.95
    """Q(lambda)'s lambda: 0 is one-step Q-learning, 1 the Monte Carlo return bootstrapped at the rollout's end"""
    epsilon_start: float = 1.0
    """exploration rate at step 0"""
    epsilon_finish: float = 0.2
    """exploration rate after the anneal (and of `act` with a key)"""
    epsilon_anneal_steps: float = 100_000
    """env steps over which epsilon falls linearly (default: the env's share of total_timesteps, 0.2 unless the
    env's defaults say otherwise)"""
    max_grad_norm: float = 10.0
    """global gradient-norm clip; 0 turns clipping off"""
    reward_scale: float = 1.0
    """rewards are multiplied by it in the targets (the episode returns reported stay unscaled)"""

    @property
    def steps_per_update(self) -> int:
        """env steps in one rollout: num_envs x num_steps"""
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.steps_per_update // self.num_minibatches

    @property
    def gradient_steps(self) -> int:
        """gradient steps per update: num_epochs x num_minibatches"""
        return self.num_epochs * self.num_minibatches

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.steps_per_update


# Per-env defaults (as RL Zoo keeps them), from purejaxql (github.com/mttga/purejaxql, purejaxql/config/alg/).
# CartPole is pqn_cartpole.yaml spelled out (its REW_SCALE 0.1 is reward_scale; epsilon anneals over 0.2 of
# the run, its EPS_DECAY). Measured here with these defaults: 2 seeds x 500k steps, vmapped, on a 2-core CPU (another
# job beside it): greedy return 500 and 500 (32 episodes each), exploring return 462 and 436 over the last 5% of
# updates (epsilon 0.2); compile 6.0 s, run 32.8 s.
ENV_DEFAULTS: dict[str, dict[str, Any]] = {
    "gymnax:CartPole-v1": dict(total_timesteps=500_000, num_envs=32, num_steps=64, num_epochs=4, num_minibatches=16,
                               hidden_sizes=(256, 256), lr=1e-4, anneal_lr=True, max_grad_norm=10.0, gamma=0.99,
                               lam=0.95, epsilon_start=1.0, epsilon_finish=0.2, reward_scale=0.1),
}
# MinAtar is pqn_minatar.yaml (its EPS_DECAY 0.1). purejaxql's network there is a 3x3 VALID convolution of 16
# filters and a 128-unit layer, each LayerNormed; pjrl's MinAtar torso is the same convolution with SAME padding
# and no norm, then the LayerNormed 128-unit layer. Measured here on Breakout with these defaults cut to 1M steps
# (epsilon annealed over the first 100k), 1 seed on a 2-core CPU: greedy return 25.2 (128 episodes), exploring
# return 16.2 over the last 5% of updates; compile 8.7 s, run 90.2 s. purejaxql's own pqn_minatar.py at the same
# budget, 1 seed: greedy 16.2 (its test over 128 envs), exploring 11.7 (one seed each: a sanity check, not a ranking).
_MINATAR = dict(total_timesteps=10_000_000, num_envs=128, num_steps=32, num_epochs=2, num_minibatches=32,
                hidden_sizes=(128,), lr=5e-4, anneal_lr=True, max_grad_norm=10.0, gamma=0.99, lam=0.65,
                epsilon_start=1.0, epsilon_finish=0.05)
for _game in ("Asterix", "Breakout", "Freeway", "SpaceInvaders"):
    ENV_DEFAULTS[f"gymnax:{_game}-MinAtar"] = dict(_MINATAR)

EPSILON_SHARE: dict[str, float] = {f"gymnax:{g}-MinAtar": 0.1 for g in ("Asterix", "Breakout", "Freeway",
                                                                         "SpaceInvaders")}
"""the share of total_timesteps over which epsilon anneals where the user does not set epsilon_anneal_steps
(purejaxql's EPS_DECAY); 0.2 for an env not listed"""


def default_config(env_name: str | None = None, **settings) -> PQNConfig:
    """PQNConfig with the env's defaults (if it has any) and then `settings` applied.

    Where `epsilon_anneal_steps` is not set, exploration anneals over the env's
    `EPSILON_SHARE` of `total_timesteps` (0.2 by default), so a shorter or longer
    run explores for the same share of it, as purejaxql's EPS_DECAY does.
    """
    config = make_config(PQNConfig, ENV_DEFAULTS, env_name, settings)
    total = config.total_timesteps
    if "epsilon_anneal_steps" not in settings and isinstance(total, int) and total > 1:  # (validate reports a bad one)
        config = config.replace(epsilon_anneal_steps=max(1, round(EPSILON_SHARE.get(env_name or "", 0.2) * total)))
    return config


RANGES = intervals({"lr": "(0, inf)", "gamma": "[0, 1]", "lam": "[0, 1]", "epsilon_start": "[0, 1]",
                    "epsilon_finish": "[0, 1]", "epsilon_anneal_steps": "(0, inf)", "max_grad_norm": "[0, inf)",
                    "reward_scale": "(0, inf)"})
"""where each number must lie (checked for every sweep member too)"""


def validate(config: PQNConfig, env: VecEnv | None = None) -> None:
    """Raises ConfigError naming the field and what would work, before anything compiles."""
    check_settings(config, RANGES)
    require_positive(config, "total_timesteps", "num_envs", "num_steps", "num_epochs", "num_minibatches")
    if config.steps_per_update % config.num_minibatches:
        ok = [d for d in divisors(config.steps_per_update) if d <= 64]
        raise ConfigError(f"num_minibatches={config.num_minibatches} does not divide num_envs x num_steps = "
                          f"{config.steps_per_update}; use one of {ok}")
    if config.num_updates < 1:
        raise ConfigError(f"total_timesteps={config.total_timesteps} is less than one update (num_envs x num_steps"
                          f" = {config.steps_per_update}); raise total_timesteps or lower num_envs or num_steps")
    if config.activation not in ("tanh", "relu", "gelu", "silu"):
        raise ConfigError(f"activation={config.activation!r}; use tanh, relu, gelu or silu")
    if config.torso not in TORSOS:
        raise ConfigError(f"torso={config.torso!r}; use {', '.join(TORSOS)}")
    if config.optimizer not in ("radam", "adam"):
        raise ConfigError(f"optimizer={config.optimizer!r}; use radam or adam")
    if env is not None:
        if env.num_envs != config.num_envs:
            raise ConfigError(f"num_envs={config.num_envs} but the env was made with {env.num_envs}")
        if isinstance(env.action_space, spaces.Box):
            raise ConfigError("PQN needs discrete actions; use --algo sac, td3 or ppo")
        if not isinstance(env.action_space, spaces.Discrete):
            raise ConfigError(f"PQN needs one Discrete action, not {type(env.action_space).__name__}; "
                              "use --algo ppo")
        torso = choose_torso(env.observation_space, config.torso)
        if torso != "mlp":
            leaves = spaces.tree_spaces(env.observation_space)
            if len(leaves) != 1 or len(leaves[0].shape) != 3:
                raise ConfigError(f"torso={torso!r} needs one image observation (3 axes), got "
                                  f"{env.observation_space}; use torso='mlp'")


# ---------------------------------------------------------------- state and rollouts


class PQNState(NamedTuple):
    """Everything one seed carries from update to update."""

    params: Any
    opt_state: Any  # RAdam (or Adam) moments
    env_state: Any
    obs: Any  # (B, ...) observation the next action is chosen for
    mask: jax.Array  # (B, A) its action mask
    key: jax.Array
    update: jax.Array  # () int32, updates done
    episode_return: jax.Array  # () last mean return of finished episodes; NaN before the first ends
    episode_length: jax.Array  # ()
    config: PQNConfig  # numeric leaves may be traced


class Transition(NamedTuple):
    """A rollout's steps, leaves `(T, B, ...)`."""

    obs: Any  # the observation the action was chosen for
    mask: jax.Array  # its action mask
    action: jax.Array
    reward: jax.Array  # unscaled
    terminated: jax.Array  # bool
    truncated: jax.Array  # bool
    final_obs: Any  # the pre-reset observation after the step


# ---------------------------------------------------------------- pure maths


def q_lambda_returns(reward, terminated, truncated, next_value, gamma, lam):
    """Q(lambda) targets over a rollout, computed backwards. All arguments `(T, B)`.

    `next_value[t]` is max Q of the observation step t bootstraps from: the
    pre-reset `final_obs` where step t was truncated, the next observation
    otherwise (the one after the rollout for the last step); it is not read
    where step t terminated. Then

        G_t = r_t + gamma * next_value_t                                      if truncated
        G_t = r_t                                                             if terminated
        G_t = r_t + gamma * (lam * G_{t+1} + (1 - lam) * next_value_t)       otherwise,

    with G_T = next_value_{T-1}: the recursion stops at every episode end. lam 0
    is one-step Q-learning, lam 1 the discounted return up to the episode's end
    or the rollout's, bootstrapped there. Returns `(T, B)`.
    """
    alive = 1.0 - (terminated | truncated)
    truncated_only = truncated & ~terminated

    def backward(later, x):
        r, v, alive_t, trunc_t = x
        g = r + gamma * (alive_t * (lam * later + (1.0 - lam) * v) + trunc_t * v)
        return g, g

    _, targets = jax.lax.scan(backward, next_value[-1], (reward, next_value, alive, truncated_only), reverse=True)
    return targets


def q_loss(params, apply_fn, obs, action, target):
    """Half the squared error of Q(obs, action) against fixed targets (purejaxql's loss). `(loss, metrics)`."""
    q = apply_fn(params, obs)  # (N, A)
    q_taken = jnp.take_along_axis(q, action[:, None].astype(jnp.int32), -1)[:, 0]
    value = 0.5 * jnp.square(q_taken - target).mean()
    return value, {"loss": value, "q_value": q_taken.mean()}


# ---------------------------------------------------------------- training


class PQN(Agent):
    """`init(key, config) -> PQNState` and `update(state) -> (state, metrics)` for one seed.

    An update rolls out `num_steps` steps of every env with the current network,
    values in one pass the observation each step's target bootstraps from (its
    `final_obs` where truncated, else the next observation), computes the Q(lambda)
    targets, and takes `num_epochs x num_minibatches` gradient steps on shuffled
    minibatches of the rollout.
    """

    learned = ("params", "opt_state")
    """no target network: the Q-network's parameters and the optimiser's moments are all it learns"""

    def __init__(self, config: PQNConfig, env: VecEnv, axis_name: str | None = None, hints: Hints = Hints()):
        if axis_name is not None:
            raise ConfigError("PQN cannot split one seed's envs over devices; use --num-seeds N (seeds split "
                              "over devices) or --devices 1")
        validate(config, env)
        self.config = config
        self.env = wrap_env(env)
        self.action_space = env.action_space
        self.network = QNetwork(env.action_space.n, tuple(config.hidden_sizes), config.activation,
                                layer_norm=config.layer_norm, torso=choose_torso(env.observation_space, config.torso))
        # the learning rate is applied outside, so that it can be a traced (swept) number
        self.optimizer = optax.scale_by_radam() if config.optimizer == "radam" else optax.scale_by_adam()
        self.num_updates = config.num_updates
        self.steps_per_update = config.steps_per_update

    def init(self, key: jax.Array, config: PQNConfig | None = None) -> PQNState:
        config = self.config if config is None else config
        key, net_key, reset_key = jax.random.split(key, 3)
        params = self.network.init(net_key, spaces.zeros(self.env.observation_space, (1,)))
        env_state, ts = self.env.reset(reset_key)
        none = jnp.full((), jnp.nan, jnp.float32)  # no episode has ended yet
        return PQNState(params=params, opt_state=self.optimizer.init(params), env_state=env_state, obs=ts.obs,
                        mask=ts.action_mask, key=key, update=jnp.zeros((), jnp.int32), episode_return=none,
                        episode_length=none, config=config)

    def _q(self, params, obs) -> jax.Array:
        # flax types `apply` as `output | (output, variables)`; without `mutable` it is the output
        return cast(jax.Array, self.network.apply(params, obs))

    def _env_step(self, state: PQNState, keys: jax.Array, eps):
        act_key, step_key = keys[0], keys[1]
        # SELECT ACTION (params do not change within a rollout)
        action = epsilon_greedy(act_key, self._q(state.params, state.obs), state.mask, eps)
        action = action.astype(self.action_space.dtype)

        # STEP ENV
        env_state, ts = self.env.step(state.env_state, action, step_key)
        transition = Transition(obs=state.obs, mask=state.mask, action=action, reward=ts.reward,
                                terminated=ts.terminated, truncated=ts.truncated, final_obs=ts.final_obs)
        episode = {k: ts.info[k] for k in ("returned_episode", "episode_return", "episode_length")}
        return state._replace(env_state=env_state, obs=ts.obs, mask=ts.action_mask), (transition, episode)

    def rollout(self, state: PQNState, key: jax.Array, eps) -> tuple[PQNState, tuple[Transition, dict]]:
        """`num_steps` epsilon-greedy steps of every env: the state after them, the transitions and the
        episode statistics, each `(T, B, ...)`."""
        keys = jax.random.split(key, 2 * self.config.num_steps)
        keys = keys.reshape((self.config.num_steps, 2) + keys.shape[1:])  # each step's action and env keys
        return jax.lax.scan(lambda s, k: self._env_step(s, k, eps), state, keys)

    def targets(self, params, traj: Transition, last_obs, last_mask, hp: PQNConfig) -> jax.Array:
        """The Q(lambda) targets `(T, B)` of a rollout `traj`, `last_obs`/`last_mask` the observation after it.

        One forward pass values the observation each step bootstraps from: its
        `final_obs` where it was truncated (all actions legal: that observation's
        mask went with the reset), else the next observation with its mask.
        """
        next_obs = jax.tree.map(lambda o, last: jnp.concatenate([o[1:], last[None]]), traj.obs, last_obs)
        next_mask = jnp.concatenate([traj.mask[1:], last_mask[None]])
        pick = lambda final, nxt: jnp.where(traj.truncated.reshape(traj.truncated.shape + (1,) * (nxt.ndim - 2)),
                                            final, nxt)
        boot_obs = jax.tree.map(pick, traj.final_obs, next_obs)
        boot_mask = pick(jnp.ones_like(next_mask), next_mask)
        t, b = traj.reward.shape
        flat = jax.tree.map(lambda x: x.reshape((t * b,) + x.shape[2:]), boot_obs)
        next_value = masked_max(self._q(params, flat).reshape(t, b, -1), boot_mask)
        return q_lambda_returns(hp.reward_scale * traj.reward, traj.terminated, traj.truncated, next_value,
                                hp.gamma, hp.lam)

    def _gradient_step(self, carry, batch, hp: PQNConfig):
        params, opt_state, step = carry
        obs, action, target = batch
        grads, metrics = jax.grad(q_loss, has_aux=True)(params, self.network.apply, obs, action, target)
        grads = clip_gradients(grads, hp.max_grad_norm)
        updates, opt_state = self.optimizer.update(grads, opt_state)
        lr = learning_rate(hp.lr, step, self.num_updates * self.config.gradient_steps, self.config.anneal_lr)
        params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
        return (params, opt_state, step + 1), metrics

    def update(self, state: PQNState) -> tuple[PQNState, dict]:
        """One rollout, its Q(lambda) targets, then `num_epochs` passes of minibatch regression onto them.

        Numbers come from the traced `state.config` (`hp`), sizes from the static `self.config`.
        """
        hp, sizes = state.config, self.config
        key, rollout_key, shuffle_key = jax.random.split(state.key, 3)
        eps = linear_epsilon(hp.epsilon_start, hp.epsilon_finish, hp.epsilon_anneal_steps,
                             state.update * sizes.steps_per_update)

        # COLLECT TRAJECTORIES
        state, (traj, episode) = self.rollout(state, rollout_key, eps)

        # Q(LAMBDA) TARGETS, fixed for the whole update
        targets = self.targets(state.params, traj, state.obs, state.mask, hp)

        # REGRESS Q(s, a) ONTO THEM: num_epochs shuffles of the rollout, each in num_minibatches
        flat = lambda x: x.reshape((sizes.steps_per_update,) + x.shape[2:])
        data = (jax.tree.map(flat, traj.obs), flat(traj.action), flat(targets))

        def epoch(carry, epoch_key):
            order = permutation(epoch_key, sizes.steps_per_update)
            minibatches = jax.tree.map(
                lambda x: jnp.take(x, order, 0).reshape((sizes.num_minibatches, -1) + x.shape[1:]), data)
            return jax.lax.scan(lambda c, mb: self._gradient_step(c, mb, hp), carry, minibatches)

        first_step = state.update * sizes.gradient_steps
        (params, opt_state, _), losses = jax.lax.scan(
            epoch, (state.params, state.opt_state, first_step), jax.random.split(shuffle_key, sizes.num_epochs))

        # METRICS: a few scalars per update
        metrics, ep_return, ep_length = update_metrics(losses, episode, state.episode_return, state.episode_length)
        metrics.update(epsilon=jnp.asarray(eps, jnp.float32))
        state = state._replace(params=params, opt_state=opt_state, key=key, update=state.update + 1,
                               episode_return=ep_return, episode_length=ep_length)
        return state, metrics

    def act(self, params, obs, mask, key=None):
        """Greedy legal actions for a batch of observations; with `key`, epsilon_finish-greedy."""
        q = self._q(params, obs)
        if key is None:
            return masked_argmax(q, mask).astype(self.action_space.dtype)
        return epsilon_greedy(key, q, mask, self.config.epsilon_finish).astype(self.action_space.dtype)


def make_train(config: PQNConfig, env: VecEnv):
    """`train(key, config=None) -> (PQNState, metrics)`, metrics `(num_updates,)` per name (see shared.make_train)."""
    return _make_train(PQN(config, env))


ALGORITHM = Algorithm(name="pqn", config_class=PQNConfig, default_config=default_config, validate=validate,
                      make_agent=PQN, splits_envs=False, env_defaults=ENV_DEFAULTS, ranges=RANGES)
