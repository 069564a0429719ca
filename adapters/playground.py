"""MuJoCo Playground environments as `playground:<name>`.

    env = pjrl_envs.make("playground:CartpoleBalance", num_envs=1024, episode_length=1000)

The envs are Playground's DM Control suite (`mujoco_playground.dm_control_suite`),
whose models ship with the package. Its locomotion and manipulation envs are not
offered: their robot models come from MuJoCo Menagerie, which playground clones
with git when such an env is made, and no installed package ships them.

Options: `impl`, `episode_length`, `action_repeat`, `auto_reset` (see below),
and any other key of the env's Playground config (e.g. `ctrl_dt`, `njmax`).
- `impl` is the MJX physics pipeline: "jax" (XLA, any device) or "warp" (NVIDIA
  Warp kernels, Playground's own default, made for CUDA GPUs; it runs on a CPU
  too, but its kernels take far longer to build there). The default is "warp"
  where JAX has a CUDA device and "jax" elsewhere.
- `episode_length` is the time limit in physics-control steps, as in Playground's
  config; with `action_repeat` each agent step runs the action that many
  control steps and sums their rewards, so an episode lasts
  `ceil(episode_length / action_repeat)` agent steps (`max_episode_steps`).
  Stepping stops early within a repeat once the env terminates.
- `vision=True` (the pixel variant of the cartpole tasks) is refused: it renders
  through a Warp context built for one fixed batch, which breaks under `vmap`
  (over seeds, say), and it needs `impl="warp"`.

The time limit is `truncated`; the env's own `done` (a DM Control env raises it
only when the physics diverges to NaN) is `terminated`; never both on a step.
Playground's own auto-reset wrapper hands back the first observation of the next
episode on the step an episode ends and loses the last one; here the step's
`final_obs` is that last observation, as the env's own `step` returned it.
Observations keep Playground's structure (an array, or a dict of arrays), each
leaf an unbounded `Box`; actions are `Box(-1, 1, (action_size,))`; `info` holds
the env's per-step metrics (reward components).

Auto-reset is done here, batched:
- `auto_reset="cached"` (default, as Playground's own training does): each env
  slot restarts from the initial state it drew at `reset` (physics data,
  observation and the env's info); a step costs one physics step and a select.
- `auto_reset="fresh"`: every episode starts from a newly drawn initial state;
  the reset runs on steps where some env in the batch finished.
"""
from __future__ import annotations

import importlib.util
import numbers
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from pjrl_envs import spaces
from pjrl_envs.core import VecEnv
from pjrl_envs.registry import Adapter, OptionError, UnknownEnvError, check_options, require
from pjrl_envs.types import TimeStep

REQUIRES = "playground==0.2.0"
IMPLS = ("jax", "warp")
AUTO_RESETS = ("cached", "fresh")
# Config keys that are not options: the settings of the refused pixel variant.
NOT_OPTIONS = ("vision_config",)


def _playground():
    return require("mujoco_playground", REQUIRES)


def default_impl() -> str:
    """The MJX pipeline used when `impl` is not given: "warp" on a CUDA GPU (warp installed), else "jax"."""
    try:
        cuda = bool(jax.devices("cuda"))
    except RuntimeError:  # no CUDA backend
        cuda = False
    return "warp" if cuda and importlib.util.find_spec("warp") is not None else "jax"


@struct.dataclass
class PlaygroundVecState:
    inner: Any  # Playground State, batched (B, ...)
    steps: jax.Array  # (B,) int32 agent steps taken in each slot's episode
    first: Any  # ("cached") (data, obs, info) each slot restarts from; None for "fresh"


def _where(done, a, b):
    """Per-env select between two batched pytrees; leaves without the batch axis keep `b`.

    Warp's physics data holds buffers shared by the whole batch (contacts, sized by
    `naconmax`); those have no per-env axis and are scratch space rewritten every step.
    """
    n = done.shape[0]

    def one(x, y):
        if x.ndim == 0 or x.shape[0] != n:
            return y
        return jnp.where(done.reshape((n,) + (1,) * (x.ndim - 1)), x, y)

    return jax.tree.map(one, a, b)


class PlaygroundVecEnv(VecEnv):
    """A batch of `num_envs` Playground envs under the pjrl protocol, same-step auto-reset included."""

    def __init__(self, env_id: str, num_envs: int, impl: str | None = None, auto_reset: str = "cached",
                 **overrides):
        pg = _playground()
        self.name = f"playground:{env_id}"
        config = pg.dm_control_suite.get_default_config(env_id)
        allowed = ["impl", "episode_length", "action_repeat", "auto_reset"]
        allowed += [k for k in config.keys() if k not in allowed and k not in NOT_OPTIONS]
        check_options(self.name, overrides, allowed)
        impl = default_impl() if impl is None else impl
        if impl not in IMPLS:
            raise OptionError(f"{self.name}: impl={impl!r} is not an MJX pipeline; allowed: {', '.join(IMPLS)}")
        if auto_reset not in AUTO_RESETS:
            raise OptionError(f"{self.name}: auto_reset={auto_reset!r}; allowed: {', '.join(AUTO_RESETS)}")
        for key in ("episode_length", "action_repeat"):
            value = overrides.get(key, config[key])
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise OptionError(f"{self.name}: {key} must be a whole number >= 1, got {value!r}")
            overrides[key] = int(value)
        if overrides.get("vision", False):
            raise OptionError(f"{self.name}: vision=True is not supported: Playground renders its pixels through a "
                              f"Warp context built for one fixed batch, which breaks under vmap; use vision=False")
        for key, value in {**overrides, "impl": impl}.items():
            try:
                config[key] = value
            except (TypeError, ValueError) as e:  # ConfigDict refuses a value of another type
                raise OptionError(f"{self.name}: option {key}={value!r} does not fit the config's "
                                  f"{config[key]!r}: {str(e).splitlines()[0]}") from None
        self.env_id = env_id
        self.impl = impl
        self.auto_reset = auto_reset
        self.num_envs = int(num_envs)
        self.action_repeat = int(config.action_repeat)
        self.max_episode_steps = -(-int(config.episode_length) // self.action_repeat)
        self.playground_env = pg.dm_control_suite.load(env_id, config=config)
        self.action_space = spaces.Box(-1.0, 1.0, (self.playground_env.action_size,), jnp.float32)
        obs = jax.eval_shape(lambda k: self.playground_env.reset(k).obs, jax.random.PRNGKey(0))
        self.observation_space = jax.tree.map(
            lambda x: spaces.Box(-float("inf"), float("inf"), x.shape, x.dtype), obs)
        self._mask = spaces.no_mask(self.action_space)

    def _reset_batch(self, key):
        return jax.vmap(self.playground_env.reset)(jax.random.split(key, self.num_envs))

    def _advance(self, s, action):
        """One agent step: `action_repeat` env steps, rewards summed, none after a termination."""
        step = jax.vmap(self.playground_env.step)
        if self.action_repeat == 1:
            return step(s, action)

        def body(carry, _):
            s, total = carry
            ended = s.done > 0  # terminated in an earlier repeat: hold the state
            n = _where(ended, s, step(s, action))
            return (n, total + jnp.where(ended, 0.0, n.reward)), None

        (s, total), _ = jax.lax.scan(body, (s, jnp.zeros_like(s.reward)), None, length=self.action_repeat)
        return s.replace(reward=total)

    def _timestep(self, s, obs, final_obs, terminated, truncated):
        b = (self.num_envs,)
        return TimeStep(obs=obs, reward=s.reward.astype(jnp.float32), terminated=terminated,
                        truncated=truncated, final_obs=final_obs,
                        action_mask=jnp.broadcast_to(self._mask, b), info=dict(s.metrics))

    def reset(self, key):
        s = self._reset_batch(key)
        s = s.replace(reward=jnp.zeros_like(s.reward), done=jnp.zeros_like(s.done),
                      metrics=jax.tree.map(jnp.zeros_like, s.metrics))
        false = jnp.zeros((self.num_envs,), jnp.bool_)
        first = (s.data, s.obs, s.info) if self.auto_reset == "cached" else None
        steps = jnp.zeros((self.num_envs,), jnp.int32)
        return PlaygroundVecState(s, steps, first), self._timestep(s, s.obs, s.obs, false, false)

    def step(self, state, action, key):
        s = self._advance(state.inner, action)
        steps = state.steps + 1
        terminated = s.done > 0
        truncated = (steps >= self.max_episode_steps) & ~terminated
        done = terminated | truncated
        ongoing = (s.data, s.obs, s.info)
        if self.auto_reset == "cached":
            restart = state.first
        else:
            def fresh(_):
                r = self._reset_batch(key)
                return r.data, r.obs, r.info
            restart = jax.lax.cond(done.any(), fresh, lambda _: ongoing, None)
        data, obs, info = _where(done, restart, ongoing)
        ts = self._timestep(s, obs, s.obs, terminated, truncated)
        inner = s.replace(data=data, obs=obs, info=info, done=jnp.zeros_like(s.done))
        return state.replace(inner=inner, steps=jnp.where(done, 0, steps)), ts


def unlisted(env_id: str) -> str | None:
    """Why a Playground env outside the DM Control suite is not offered; None for an id Playground lacks."""
    pg = _playground()
    if env_id in pg.locomotion.ALL_ENVS or env_id in pg.manipulation.ALL_ENVS:
        return ("its robot model comes from MuJoCo Menagerie, which playground clones with git when the env is "
                "made; only the DM Control suite ships its models (`pjrl envs --library playground`)")
    return None


def list_envs() -> list[str]:
    return sorted(_playground().dm_control_suite.ALL_ENVS)


def make(env_id: str, num_envs: int = 1, **options) -> PlaygroundVecEnv:
    if env_id not in list_envs():
        why = unlisted(env_id)
        raise UnknownEnvError(f"playground:{env_id} is not offered: {why}" if why else
                              f"unknown env 'playground:{env_id}'; `pjrl envs --library playground` lists them all")
    return PlaygroundVecEnv(env_id, num_envs, **options)


ADAPTER = Adapter(list_envs=list_envs, make=make, requires=REQUIRES, unlisted=unlisted)
