"""Proximal Policy Optimisation, the whole training loop one jitted `lax.scan`.

    env = pjrl_envs.make("gymnax:CartPole-v1", num_envs=4)
    train = make_train(PPOConfig(), env)
    state, metrics = jax.jit(jax.vmap(train))(jax.random.split(key, 8))  # 8 seeds, one compile

Discrete and multi-discrete (categoricals, with action masks) and continuous (diagonal Gaussian)
actions. GAE bootstraps from `final_obs` on truncation and not on termination.

`torso="gru"` or `"lstm"` gives the agent memory (PureJaxRL's ppo_rnn as a setting): a
recurrent core after the feature torso, its state kept per env in the agent state and
zeroed where an episode ends. A truncated step's V(final_obs) is valued with the state of
the episode that ended; the rollout keeps each env's initial state and episode starts, and
minibatches split the envs (whole sequences), so the loss recomputes exactly the states
the rollout saw.
The numbers in `PPOConfig` are traced leaves: `jax.vmap(train)(keys, configs)`
over a stacked config trains a population of hyperparameters in one call.
"""
from __future__ import annotations

from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import optax
from flax import struct

from pjrl_agents.algorithms.contract import Agent, Algorithm, Hints
from pjrl_agents.algorithms.distributions import Categorical, DiagGaussian, Distribution, MultiCategorical
from pjrl_agents.algorithms.networks import CELLS, TORSOS, ActorCritic, RecurrentActorCritic, choose_torso, zero_memory
from pjrl_agents.algorithms.shared import clip_gradients, learning_rate, permutation, update_metrics, wrap_env
from pjrl_agents.algorithms.shared import make_train as _make_train
from pjrl_agents.config import ConfigError, check_settings, divisors, intervals, make_config, require_positive, static
from pjrl_envs import spaces
from pjrl_envs.core import VecEnv


@struct.dataclass
class PPOConfig:
    """PPO settings. Defaults are PureJaxRL's CartPole ones, so results compare one to one."""

    # -- sizes and switches: static, they fix shapes or the program
    total_timesteps: int = static(500_000)
    """env steps per seed, over all envs"""
    num_envs: int = static(4)
    """parallel environments per seed"""
    num_steps: int = static(128)
    """steps each env takes per rollout"""
    update_epochs: int = static(4)
    """passes over each rollout"""
    num_minibatches: int = static(4)
    """minibatches per epoch; must divide num_envs * num_steps"""
    hidden_sizes: tuple = static((64, 64))
    """actor and critic MLP widths"""
    activation: str = static("tanh")
    """tanh, relu, gelu or silu"""
    torso: str = static("auto")
    """auto (a small CNN for MinAtar-like images, the Nature CNN for Atari-sized frames, else an MLP), mlp, cnn or
    nature; or gru or lstm: a recurrent core of memory_size after the automatic feature torso"""
    memory_size: int = static(128)
    """state size of the recurrent core (torso=gru or lstm)"""
    anneal_lr: bool = static(True)
    """decay the learning rate linearly to zero over training"""
    normalize_obs: bool = static(False)
    """standardise observations with running statistics (kept in the env state)"""
    normalize_reward: bool = static(False)
    """scale rewards by the running std of the discounted return"""
    # -- numbers: traced, sweepable
    lr: float = 2.5e-4
    """Adam learning rate (initial, when annealed)"""
    gamma: float = 0.99
    """discount"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    clip_eps: float = 0.2
    """policy-ratio and value clipping range"""
    ent_coef: float = 0.01
    """entropy bonus weight"""
    vf_coef: float = 0.5
    """value loss weight"""
    max_grad_norm: float = 0.5
    """global gradient-norm clip"""

    @property
    def steps_per_update(self) -> int:
        """env steps in one rollout: num_envs x num_steps"""
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.steps_per_update // self.num_minibatches

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.steps_per_update


# Per-env defaults where PureJaxRL's CartPole settings do not fit (as RL Zoo keeps them).
ENV_DEFAULTS: dict[str, dict[str, Any]] = {
    "gymnax:Pendulum-v1": dict(total_timesteps=1_000_000, num_envs=16, num_steps=128, update_epochs=10,
                               num_minibatches=32, lr=1e-3, gamma=0.95, ent_coef=0.0, normalize_obs=True,
                               normalize_reward=True, hidden_sizes=(64, 64)),
    "gymnax:Breakout-MinAtar": dict(total_timesteps=10_000_000, num_envs=64, num_steps=128,
                                    num_minibatches=8, lr=5e-3, activation="relu"),
    # vs the random opponent: mean return ~0.86 (win 1, draw 0, loss -1) after 500k steps
    "pgx:tic_tac_toe": dict(total_timesteps=500_000, num_envs=64, num_steps=32, lr=1e-3, hidden_sizes=(128, 128)),
    # return ~6000 of brax's ~9350 ceiling after 200k steps on a CPU (random: ~130)
    "brax:inverted_double_pendulum": dict(total_timesteps=500_000, num_envs=32, num_steps=64, num_minibatches=8,
                                          lr=1e-3, gamma=0.97, ent_coef=0.0, normalize_obs=True,
                                          normalize_reward=True),
    # DM Control through MJX: return ~960 of 1000 after 500k steps (greedy ~999) on a CPU, 2 seeds; random ~350,
    # the zero action ~700 (short sweep: lr 1e-3 / 3e-4, 16 or 32 envs, with and without normalisation)
    "playground:CartpoleBalance": dict(total_timesteps=500_000, num_envs=32, num_steps=64, num_minibatches=8,
                                       lr=1e-3, ent_coef=0.0, normalize_obs=True, normalize_reward=True),
    # return ~3.6 after 100k steps and ~4.2 after 400k on a CPU (random: 1.49 over 1024 episodes); 4.7k steps/s
    "craftax:Craftax-Classic-Symbolic-v1": dict(total_timesteps=1_000_000, num_envs=64, num_steps=64,
                                                num_minibatches=8, lr=3e-4, hidden_sizes=(256, 256)),
    # score ~3900 after 500k steps (random: ~1100)
    "jumanji:Game2048-v1": dict(total_timesteps=1_000_000, num_envs=64, num_steps=32, lr=1e-3,
                                hidden_sizes=(128, 128), normalize_reward=True),
}


def default_config(env_name: str | None = None, **settings) -> PPOConfig:
    """PPOConfig with the env's defaults (if it has any) and then `settings` applied."""
    return make_config(PPOConfig, ENV_DEFAULTS, env_name, settings)


RANGES = intervals({"lr": "(0, inf)", "gamma": "[0, 1]", "gae_lambda": "[0, 1]", "clip_eps": "(0, inf)",
          "ent_coef": "[0, inf)", "vf_coef": "[0, inf)", "max_grad_norm": "[0, inf)"})
"""where each number must lie (checked for every sweep member too)"""


def validate(config: PPOConfig, env: VecEnv | None = None) -> None:
    """Raises ConfigError naming the field, before anything compiles."""
    check_settings(config, RANGES)
    require_positive(config, "total_timesteps", "num_envs", "num_steps", "update_epochs", "num_minibatches")
    if config.steps_per_update % config.num_minibatches:
        ok = [d for d in divisors(config.steps_per_update) if d <= 64]
        raise ConfigError(f"num_minibatches={config.num_minibatches} does not divide num_envs x num_steps = "
                          f"{config.steps_per_update}; use one of {ok}")
    if config.num_updates < 1:
        raise ConfigError(f"total_timesteps={config.total_timesteps} is less than one rollout "
                          f"(num_envs x num_steps = {config.steps_per_update})")
    if config.activation not in ("tanh", "relu", "gelu", "silu"):
        raise ConfigError(f"activation={config.activation!r}; use tanh, relu, gelu or silu")
    if config.torso not in TORSOS + CELLS:
        raise ConfigError(f"torso={config.torso!r}; use {', '.join(TORSOS + CELLS)}")
    if config.torso in CELLS and config.num_envs % config.num_minibatches:
        ok = [d for d in divisors(config.num_envs) if d <= 64]
        raise ConfigError(f"torso={config.torso} splits minibatches by env (whole sequences): num_minibatches="
                          f"{config.num_minibatches} must divide num_envs={config.num_envs}; use one of {ok}")
    if env is not None:
        if env.num_envs != config.num_envs:
            raise ConfigError(f"num_envs={config.num_envs} but the env was made with {env.num_envs}")
        if not isinstance(env.action_space, (spaces.Discrete, spaces.MultiDiscrete, spaces.Box)):
            raise ConfigError(f"PPO cannot act in {env.action_space}; it supports Discrete, MultiDiscrete "
                              "and Box actions")
        torso = choose_torso(env.observation_space, "auto" if config.torso in CELLS else config.torso)
        if torso != "mlp" and config.torso not in CELLS:
            leaves = spaces.tree_spaces(env.observation_space)
            if len(leaves) != 1 or len(leaves[0].shape) != 3:
                raise ConfigError(f"torso={torso!r} needs one image observation (3 axes), got "
                                  f"{env.observation_space}; use torso='mlp'")
            if torso == "nature" and sorted(leaves[0].shape)[1] < 36:
                raise ConfigError(f"torso='nature' needs frames of 36x36 pixels or more, got "
                                  f"{leaves[0].shape}; use torso='cnn'")


# ---------------------------------------------------------------- state and batches


class PPOState(NamedTuple):
    """Everything one seed carries from update to update."""

    params: Any
    opt_state: Any  # Adam moments
    env_state: Any
    obs: Any  # (B, ...) observation the next action is chosen for
    mask: jax.Array  # (B, *mask) its action mask
    actor_out: Any  # network output for `obs`
    value: jax.Array  # (B,) V(obs)
    key: jax.Array
    update: jax.Array  # () int32, updates done
    episode_return: jax.Array  # () last mean return of finished episodes; NaN before the first ends
    episode_length: jax.Array  # ()
    config: PPOConfig  # numeric leaves may be traced
    memory: Any = None  # (B, ...) recurrent state `obs` is seen with (zeroed at episode starts); None: no memory
    next_memory: Any = None  # the state after seeing `obs`: for the next step, and for V(final_obs) if it ends
    start: Any = None  # (B,) bool: `obs` begins an episode


class Transition(NamedTuple):
    obs: Any  # (T, B, ...)
    mask: jax.Array  # (T, B, *mask)
    action: jax.Array  # (T, B, ...)
    log_prob: jax.Array  # (T, B)
    value: jax.Array | None  # (T, B) V(s_t); None from a split critic's rollout until `_value_rollout`
    next_value: jax.Array | None  # (T, B) V(s'_t), s' the pre-reset next observation; None likewise
    reward: jax.Array  # (T, B)
    terminated: jax.Array  # (T, B) bool
    truncated: jax.Array  # (T, B) bool
    start: Any = None  # (T, B) bool: obs begins an episode (recurrent only)
    final_obs: Any = None  # (T, B, ...) the pre-reset next observation, while the critic has yet to value it


class Batch(NamedTuple):
    obs: Any  # (N, ...)
    mask: jax.Array
    action: jax.Array
    log_prob: jax.Array  # (N,) behaviour policy
    value: jax.Array  # (N,) behaviour value
    advantage: jax.Array  # (N,)
    target: jax.Array  # (N,) value target
    memory: Any = None  # recurrent: (Bm, ...) each sequence's initial state; the leaves above are (T, Bm)
    start: Any = None  # recurrent: (T, Bm) episode starts, where the state is zeroed


# ---------------------------------------------------------------- pure maths


def compute_gae(reward, value, next_value, terminated, truncated, gamma, gae_lambda):
    """Generalised advantage estimates over a rollout. All arguments `(T, B)`.

    `next_value[t]` is V of the observation that followed step t before any reset,
    so truncated steps bootstrap from it; terminated steps do not. The recursion
    stops at every episode end. Returns `(advantages, value_targets)`, each `(T, B)`.
    """
    delta = reward + gamma * next_value * (1.0 - terminated) - value
    decay = gamma * gae_lambda * (1.0 - (terminated | truncated))

    def backward(gae, x):
        delta_t, decay_t = x
        gae = delta_t + decay_t * gae
        return gae, gae

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(delta[0]), (delta, decay), reverse=True, unroll=16)
    return advantages, advantages + value


def normalize_advantage(advantage, axis_name=None):
    """Zero mean, unit std over the minibatch; with `axis_name`, over every device's equal share of it."""
    if axis_name is None:
        return (advantage - advantage.mean()) / (advantage.std() + 1e-8)
    mean = jax.lax.pmean(advantage.mean(), axis_name)
    var = jax.lax.pmean(jnp.square(advantage - mean).mean(), axis_name)
    return (advantage - mean) / (jnp.sqrt(var) + 1e-8)


def clipped_surrogate(ratio, log_ratio, adv, clip_eps):
    """PPO's per-sample objective (maximised): `min(r A, clip(r, 1 - eps, 1 + eps) A)`."""
    return jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv)


def ppo_loss(params, apply_fn, dist, batch: Batch, clip_eps, vf_coef, ent_coef, axis_name=None,
             objective=None):
    """Policy surrogate + clipped value loss - entropy bonus. Returns `(loss, metrics)`.

    `objective(ratio, log_ratio, advantage)` is the per-sample policy objective to
    maximise (default: PPO's clipped surrogate with `clip_eps`; DPO passes its
    drift-penalised one). `axis_name` (under `shard_map`) normalises advantages over
    the whole minibatch that the devices on that mesh axis share.
    """
    actor_out, value = apply_fn(params, batch.obs)
    log_prob = dist.log_prob(actor_out, batch.action, batch.mask)
    entropy = dist.entropy(actor_out, batch.mask).mean()

    value_clipped = batch.value + jnp.clip(value - batch.value, -clip_eps, clip_eps)
    value_loss = 0.5 * jnp.maximum(jnp.square(value - batch.target),
                                   jnp.square(value_clipped - batch.target)).mean()

    log_ratio = log_prob - batch.log_prob
    ratio = jnp.exp(log_ratio)
    adv = normalize_advantage(batch.advantage, axis_name)
    if objective is None:
        policy_loss = -clipped_surrogate(ratio, log_ratio, adv, clip_eps).mean()
    else:
        policy_loss = -objective(ratio, log_ratio, adv).mean()

    loss = policy_loss + vf_coef * value_loss - ent_coef * entropy
    metrics = {"loss": loss, "policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy,
               "approx_kl": ((ratio - 1.0) - log_ratio).mean(),
               "clip_frac": (jnp.abs(ratio - 1.0) > clip_eps).mean()}
    return loss, metrics


# ---------------------------------------------------------------- training


class PPO(Agent):
    """`init(key, config) -> PPOState` and `update(state) -> (state, metrics)` for one seed.

    Built once per (static config, env); both are pure, so they jit, scan and vmap.
    With `axis_name` (a `shard_map` mesh axis; see pjrl_agents.distributed) each
    device runs this agent on its own `env` and the devices act as one agent:
    gradients, advantage statistics and metrics are averaged over the axis, and
    each device draws its own env and action randomness.
    """

    def __init__(self, config: PPOConfig, env: VecEnv, axis_name: str | None = None, hints: Hints = Hints()):
        validate(config, env)
        self.config = config
        self.axis_name = axis_name
        self.env = wrap_env(env, config.normalize_obs, config.normalize_reward, config.gamma)
        space = env.action_space
        continuous = isinstance(space, spaces.Box)
        self.dist: Distribution
        if continuous:
            self.dist, action_dim = DiagGaussian, int(jnp.prod(jnp.asarray(space.shape)))
        elif isinstance(space, spaces.MultiDiscrete):
            self.dist, action_dim = MultiCategorical(space.nvec), int(sum(space.nvec))
        else:
            self.dist, action_dim = Categorical, space.n
        self.recurrent = config.torso in CELLS
        self.network: ActorCritic | RecurrentActorCritic
        if self.recurrent:
            torso = choose_torso(env.observation_space, "auto")
            self.network = RecurrentActorCritic(action_dim, tuple(config.hidden_sizes), config.activation, continuous,
                                                torso, config.torso, config.memory_size)
        else:
            torso = choose_torso(env.observation_space, config.torso)
            self.network = ActorCritic(action_dim, tuple(config.hidden_sizes), config.activation, continuous, torso)
        # the Gaussian acts on a flat vector; Box spaces of any shape get it reshaped
        self._env_action = (lambda a: a.reshape(a.shape[:1] + space.shape)) if continuous else (lambda a: a)
        # Actor and critic that share nothing (the MLP torso): the rollout runs only the actor, step by
        # step, and the critic values the whole rollout's observations afterwards in one batched pass.
        self.split_critic = not self.recurrent and not self.network.shares_torso
        self.optimizer = optax.scale_by_adam(eps=1e-5)
        self.num_updates = config.num_updates
        self.steps_per_update = config.steps_per_update

    def initial_memory(self, num_envs: int) -> Any:
        """The recurrent state of `num_envs` envs at an episode start; None for a feed-forward agent."""
        return zero_memory(self.config.torso, (num_envs,), self.config.memory_size) if self.recurrent else None

    def _apply(self, params, obs, memory):
        """`(actor_out, value, next_memory)` for a batch of observations (next_memory None without memory)."""
        if not self.recurrent:
            return (*self.network.apply(params, obs), None)
        memory, actor_out, value = self.network.apply(params, memory, obs)
        return actor_out, value, memory

    def init(self, key: jax.Array, config: PPOConfig | None = None) -> PPOState:
        config = self.config if config is None else config
        key, net_key, reset_key = jax.random.split(key, 3)
        one = spaces.zeros(self.env.observation_space, (1,))
        params = (self.network.init(net_key, self.initial_memory(1), one) if self.recurrent
                  else self.network.init(net_key, one))
        env_state, ts = self.env.reset(self._per_device(reset_key))
        memory = self.initial_memory(self.env.num_envs)
        actor_out, value, next_memory = self._apply(params, ts.obs, memory)
        none = jnp.full((), jnp.nan, jnp.float32)  # no episode has ended yet
        start = jnp.ones((self.env.num_envs,), jnp.bool_) if self.recurrent else None
        return PPOState(params, self.optimizer.init(params), env_state, ts.obs, ts.action_mask, actor_out, value,
                        key, jnp.zeros((), jnp.int32), none, none, config, memory, next_memory, start)

    def _rollout(self, state: PPOState, key: jax.Array):
        """`num_steps` steps of every env: scans `_env_step` over `split(key, num_steps)`, with each step's
        action noise and env key drawn up front, in one batched draw for the whole rollout (a random draw
        inside the loop is a kernel of its own per step). The same numbers as the step-by-step draws."""
        keys = jax.vmap(jax.random.split)(jax.random.split(key, self.config.num_steps))  # (T, 2): action, env
        noise = jax.vmap(lambda k: self.dist.noise(k, state.actor_out))(keys[:, 0])
        return jax.lax.scan(self._step, state, (keys[:, 1], noise))

    def _env_step(self, state: PPOState, key: jax.Array):
        """One step of every env, its action drawn with `key`."""
        act_key, step_key = jax.random.split(key)
        return self._step(state, (step_key, self.dist.noise(act_key, state.actor_out)))

    def _step(self, state: PPOState, inputs):
        step_key, noise = inputs
        # SELECT ACTION (with a split critic the actor runs here; else the network already ran on state.obs)
        actor_out = (self.network.apply(state.params, state.obs, method=self.network.actor) if self.split_critic
                     else state.actor_out)
        action = self.dist.sample_from(noise, actor_out, state.mask)
        log_prob = self.dist.log_prob(actor_out, action, state.mask)

        # STEP ENV
        env_state, ts = self.env.step(state.env_state, self._env_action(action), step_key)
        episode = {k: ts.info[k] for k in ("returned_episode", "episode_return", "episode_length")}
        if self.split_critic:  # values come after the rollout (`_value_rollout`)
            transition = Transition(state.obs, state.mask, action, log_prob, None, None, ts.reward, ts.terminated,
                                    ts.truncated, final_obs=ts.final_obs)
            return state._replace(env_state=env_state, obs=ts.obs, mask=ts.action_mask), (transition, episode)

        # EVALUATE the next and the pre-reset observations in one forward pass. With memory, the next
        # observation is seen with the state zeroed where an episode ended, the pre-reset one with the
        # state of the episode that ended.
        n = self.env.num_envs
        both = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), ts.obs, ts.final_obs)
        ended = ts.terminated | ts.truncated
        memory = None
        if self.recurrent:
            memory = jax.tree.map(lambda m: jnp.where(ended[:, None], 0.0, m), state.next_memory)
            both_memory = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), memory, state.next_memory)
        actor_out, values, next_memory = self._apply(state.params, both, both_memory if self.recurrent else None)
        actor_out = jax.tree.map(lambda x: x[:n], actor_out)

        transition = Transition(state.obs, state.mask, action, log_prob, state.value, values[n:],
                                ts.reward, ts.terminated, ts.truncated, state.start)
        state = state._replace(env_state=env_state, obs=ts.obs, mask=ts.action_mask,
                               actor_out=actor_out, value=values[:n])
        if self.recurrent:
            state = state._replace(memory=memory, next_memory=jax.tree.map(lambda x: x[:n], next_memory),
                                   start=ended)
        return state, (transition, episode)

    def _unroll(self, params, memory, start, obs):
        """The network over a rollout's sequences as the rollout saw them: `obs` `(T, Bm, ...)` from
        initial `memory`, zeroed where `start`; returns `(actor_out, value)`, each `(T, Bm, ...)`.
        Only the recurrent core runs step by step; the torso and heads see the whole batch at once."""
        net = self.network
        x = net.apply(params, obs, 2, method=net.embed)
        cell = params["params"]["core_cell"]
        if self.config.torso == "gru":
            # flax's GRUCell, computed as one input projection of the whole sequence outside the loop
            # and one fused recurrent matmul inside it
            size = self.config.memory_size
            w_x = jnp.concatenate([cell[k]["kernel"] for k in ("ir", "iz", "in")], axis=1)
            b_x = jnp.concatenate([cell[k]["bias"] for k in ("ir", "iz", "in")])
            w_h = jnp.concatenate([cell[k]["kernel"] for k in ("hr", "hz", "hn")], axis=1)
            b_hn = cell["hn"]["bias"]
            xs = (x @ w_x + b_x, start)

            def step(h, inputs):
                gx, start_t = inputs
                h = jnp.where(start_t[:, None], 0.0, h)
                gh = h @ w_h
                r = jax.nn.sigmoid(gx[:, :size] + gh[:, :size])
                z = jax.nn.sigmoid(gx[:, size:2 * size] + gh[:, size:2 * size])
                n = jnp.tanh(gx[:, 2 * size:] + r * (gh[:, 2 * size:] + b_hn))
                h = (1.0 - z) * n + z * h
                return h, h
        else:
            core = {"params": {"core_cell": cell}}  # all the scan needs
            xs = (x, start)

            def step(memory, inputs):
                x_t, start_t = inputs
                memory = jax.tree.map(lambda m: jnp.where(start_t[:, None], 0.0, m), memory)
                return net.apply(core, memory, x_t, method=net.core)

        _, y = jax.lax.scan(step, memory, xs)
        return net.apply(params, y, method=net.heads)

    def objective(self, hp: PPOConfig):
        """The per-sample policy objective `(ratio, log_ratio, advantage) -> value` the loss maximises, with
        its traced numbers from `hp`: the clipped surrogate here (subclasses such as DPO replace it)."""
        return lambda ratio, log_ratio, adv: clipped_surrogate(ratio, log_ratio, adv, hp.clip_eps)

    def _minibatch_step(self, carry, batch: Batch, lr, hp: PPOConfig):
        params, opt_state = carry
        apply = (lambda p, obs: self._unroll(p, batch.memory, batch.start, obs)) if self.recurrent \
            else self.network.apply
        grads, metrics = jax.grad(ppo_loss, has_aux=True)(
            params, apply, self.dist, batch, hp.clip_eps, hp.vf_coef, hp.ent_coef, self.axis_name,
            self.objective(hp))
        if self.axis_name is not None:  # one agent over the mesh: average every device's gradient
            grads = jax.lax.pmean(grads, self.axis_name)
        grads = clip_gradients(grads, hp.max_grad_norm)
        updates, opt_state = self.optimizer.update(grads, opt_state)
        params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
        return (params, opt_state), metrics

    def update(self, state: PPOState) -> tuple[PPOState, dict]:
        """One rollout of `num_steps` and `update_epochs` passes of minibatch SGD over it.

        Numbers come from the traced `state.config` (`hp`), sizes from the static `self.config`.
        """
        hp, sizes = state.config, self.config
        key, rollout_key, shuffle_key = jax.random.split(state.key, 3)
        rollout_key, shuffle_key = self._per_device(rollout_key), self._per_device(shuffle_key)
        first_memory = state.memory  # each env's state at the rollout's first step (recurrent)
        # every epoch's minibatch order, drawn before the rollout (it depends on no result of it)
        orders = jax.vmap(self._order)(jax.random.split(shuffle_key, sizes.update_epochs))

        # COLLECT TRAJECTORIES
        state, (traj, episode) = self._rollout(state, rollout_key)

        if self.split_critic:
            traj = self._value_rollout(state.params, traj)

        # CALCULATE ADVANTAGE
        advantages, targets = compute_gae(traj.reward, traj.value, traj.next_value, traj.terminated,
                                          traj.truncated, hp.gamma, hp.gae_lambda)
        batch = Batch(traj.obs, traj.mask, traj.action, traj.log_prob, traj.value, advantages, targets)

        # UPDATE NETWORK
        lr = learning_rate(hp.lr, state.update, self.num_updates, sizes.anneal_lr)

        if self.recurrent:
            batch = batch._replace(memory=first_memory, start=traj.start)
        else:
            batch = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), batch)

        def epoch(carry, order):
            minibatches = self._minibatches(batch, order)
            return jax.lax.scan(lambda c, b: self._minibatch_step(c, b, lr, hp), carry, minibatches)

        (params, opt_state), losses = jax.lax.scan(epoch, (state.params, state.opt_state), orders)

        # METRICS: a few scalars per update
        metrics, ep_return, ep_length = update_metrics(losses, episode, state.episode_return, state.episode_length,
                                                       self.axis_name)
        # the value of the observation the next rollout starts from, under the new params
        actor_out, value, next_memory = self._apply(params, state.obs, state.memory)
        state = state._replace(params=params, opt_state=opt_state, actor_out=actor_out, value=value, key=key,
                               update=state.update + 1, episode_return=ep_return, episode_length=ep_length,
                               next_memory=next_memory)
        return state, metrics

    def _value_rollout(self, params, traj: Transition) -> Transition:
        """`value` and `next_value` of a rollout in one critic pass over its observations and pre-reset
        next observations `(2T, B, ...)`: the numbers the per-step evaluation gives, in one batched pass."""
        both = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), traj.obs, traj.final_obs)
        # flax types `apply` as `output | (output, variables)`; without `mutable` it is the output
        values = cast(jax.Array, self.network.apply(params, both, 2, method=self.network.critic))
        t = traj.reward.shape[0]
        return traj._replace(value=values[:t], next_value=values[t:], final_obs=None)

    def _order(self, key: jax.Array) -> jax.Array:
        """One epoch's random order: of the transitions (feed-forward), or of the envs (recurrent)."""
        return permutation(key, self.env.num_envs if self.recurrent else self.config.steps_per_update)

    def _minibatches(self, batch: Batch, perm: jax.Array) -> Batch:
        """One epoch's minibatches in the order `perm` (`_order`), leaves `(num_minibatches, ...)`.

        Feed-forward: shuffled transitions of the flat `(N, ...)` batch. Recurrent: the envs are
        shuffled and split, so each minibatch holds whole sequences `(T, Bm, ...)` with each
        sequence's initial memory `(Bm, ...)`.
        """
        mb = self.config.num_minibatches
        if not self.recurrent:
            return jax.tree.map(lambda x: jnp.take(x, perm, 0).reshape((mb, -1) + x.shape[1:]), batch)

        def split(x, axis):  # env axis `axis` -> (mb, ..., B / mb at `axis`, ...)
            x = jnp.moveaxis(jnp.take(x, perm, axis), axis, 0)
            return jnp.moveaxis(x.reshape((mb, -1) + x.shape[1:]), 1, axis + 1)

        minibatches = jax.tree.map(lambda x: split(x, 1), batch._replace(memory=None))
        return minibatches._replace(memory=jax.tree.map(lambda x: split(x, 0), batch.memory))

    def _per_device(self, key: jax.Array) -> jax.Array:
        """`key` itself on one device; under a mesh axis, a different key on each device."""
        if self.axis_name is None:
            return key
        return jax.random.fold_in(key, jax.lax.axis_index(self.axis_name))

    def act(self, params, obs, mask, key=None, memory=None):
        """The policy's action for a batch of observations: sampled with `key`, else the mode.

        A recurrent agent takes its `memory` (from `initial_memory`, zeroed by the caller where an
        episode begins) and returns `(action, memory)`.
        """
        actor_out, _, memory = self._apply(params, obs, memory)
        action = self.dist.mode(actor_out, mask) if key is None else self.dist.sample(key, actor_out, mask)
        action = self._env_action(action)
        return (action, memory) if self.recurrent else action


def make_train(config: PPOConfig, env: VecEnv):
    """`train(key, config=None) -> (PPOState, metrics)`, metrics `(num_updates,)` per name (see common.make_train)."""
    return _make_train(PPO(config, env))


ALGORITHM = Algorithm(name="ppo", config_class=PPOConfig, default_config=default_config, validate=validate,
                      make_agent=PPO, splits_envs=True, env_defaults=ENV_DEFAULTS, ranges=RANGES)
