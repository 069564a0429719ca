"""Brax environments as `brax:<name>`.

    env = pjrl_envs.make("brax:ant", num_envs=2048, backend="positional", episode_length=1000)

Options: `backend` (the physics pipeline), `episode_length` (the time limit,
in env steps), `action_repeat`, `auto_reset` (see below), and any keyword the
brax env's constructor takes (e.g. `ctrl_cost_weight`).

Brax's episode wrapper counts steps and sets `info["truncation"]` when the time
limit ends an episode; that is `truncated`, and only a `done` without it is
`terminated`. Actions are `Box(-1, 1, (action_size,))`.

Auto-reset is done here, batched, rather than by `AutoResetVecEnv`, so that no
step pays for a reset it does not use:
- `auto_reset="cached"` (default, as brax's own training does): each env slot
  restarts from the initial state it drew at `reset`; a step costs one physics
  step and a select.
- `auto_reset="fresh"`: every episode starts from a newly drawn initial state;
  the reset runs on steps where some env in the batch finished.

`render` writes an episode to an HTML page that replays it in the browser
(brax.io.html, from the pipeline states); `fast`, brax's test env, has no model
to draw.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from pjrl_envs import spaces
from pjrl_envs.core import VecEnv
from pjrl_envs.registry import Adapter, OptionError, check_options, require
from pjrl_envs.types import TimeStep

REQUIRES = "brax==0.14.2"
BACKENDS = ("generalized", "positional", "spring", "mjx")
AUTO_RESETS = ("cached", "fresh")
UNDRAWN = ("fast",)  # no system (model) to draw


def _brax_envs():
    return require("brax.envs", REQUIRES)


@struct.dataclass
class BraxVecState:
    inner: Any  # brax State, batched (B, ...), episode-wrapped
    first_pipeline_state: Any  # (B, ...) what each slot restarts from ("cached")
    first_obs: Any  # (B, obs_size)


def _where(done, a, b):
    """Per-env select between two batched pytrees (leaves `(B, ...)`)."""
    def one(x, y):
        return jnp.where(done.reshape(done.shape + (1,) * (x.ndim - 1)), x, y)
    return jax.tree.map(one, a, b)


def _options(env_cls) -> set[str]:
    """Keywords the brax env constructor takes (its own and those of PipelineEnv)."""
    names = set()
    for cls in (env_cls, _brax_envs().PipelineEnv):
        for p in inspect.signature(cls.__init__).parameters.values():
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in ("self", "sys"):
                names.add(p.name)
    return names


class BraxVecEnv(VecEnv):
    """A batch of `num_envs` brax envs under the pjrl protocol, same-step auto-reset included."""

    def __init__(self, env_id: str, num_envs: int, backend: str = "generalized", episode_length: int = 1000,
                 action_repeat: int = 1, auto_reset: str = "cached", **kwargs):
        envs = _brax_envs()
        env_cls = envs._envs[env_id]  # registry of name -> class in brax.envs
        if backend not in BACKENDS:
            raise OptionError(f"brax:{env_id}: backend={backend!r} is not a brax backend; "
                              f"allowed: {', '.join(BACKENDS)}")
        if auto_reset not in AUTO_RESETS:
            raise OptionError(f"brax:{env_id}: auto_reset={auto_reset!r}; allowed: {', '.join(AUTO_RESETS)}")
        if int(episode_length) < 1 or int(action_repeat) < 1:
            raise OptionError(f"brax:{env_id}: episode_length and action_repeat must be >= 1, "
                              f"got {episode_length} and {action_repeat}")
        own = {"backend", "episode_length", "action_repeat", "auto_reset"}
        check_options(f"brax:{env_id}", kwargs, sorted(_options(env_cls) | own))
        from brax.envs.wrappers import training
        self.env_id = env_id
        self.name = f"brax:{env_id}"
        self.max_episode_steps = -(-int(episode_length) // int(action_repeat))  # the wrapper counts repeats
        self.render_suffixes = () if env_id in UNDRAWN else (".html",)
        self.backend = backend
        self.auto_reset = auto_reset
        self.num_envs = int(num_envs)
        self.brax_env = env_cls(backend=backend, **kwargs)
        self.env = training.EpisodeWrapper(self.brax_env, int(episode_length), int(action_repeat))
        self.action_space = spaces.Box(-1.0, 1.0, (self.env.action_size,), jnp.float32)
        obs = jax.eval_shape(lambda k: self.env.reset(k).obs, jax.random.PRNGKey(0))
        self.observation_space = jax.tree.map(
            lambda x: spaces.Box(-float("inf"), float("inf"), x.shape, x.dtype), obs)
        self._mask = spaces.no_mask(self.action_space)

    def _timestep(self, s, final_obs, terminated, truncated):
        b = (self.num_envs,)
        return TimeStep(obs=s.obs, reward=s.reward.astype(jnp.float32), terminated=terminated,
                        truncated=truncated, final_obs=final_obs, action_mask=jnp.broadcast_to(self._mask, b),
                        info=dict(s.metrics))

    def reset(self, key):
        s = jax.vmap(self.env.reset)(jax.random.split(key, self.num_envs))
        false = jnp.zeros((self.num_envs,), jnp.bool_)
        s = s.replace(reward=jnp.zeros_like(s.reward), metrics=jax.tree.map(jnp.zeros_like, s.metrics))
        first_pipeline = s.pipeline_state if self.auto_reset == "cached" else None
        first_obs = s.obs if self.auto_reset == "cached" else None
        return BraxVecState(s, first_pipeline, first_obs), self._timestep(s, s.obs, false, false)

    def step(self, state, action, key):
        s = jax.vmap(self.env.step)(state.inner, action)
        done = s.done > 0
        truncated = done & (s.info["truncation"] > 0)
        terminated = done & ~truncated
        final_obs = s.obs
        if self.auto_reset == "cached":
            pipeline_state = _where(done, state.first_pipeline_state, s.pipeline_state)
            obs = _where(done, state.first_obs, s.obs)
        else:
            def fresh(_):
                r = jax.vmap(self.env.reset)(jax.random.split(key, self.num_envs))
                return _where(done, r.pipeline_state, s.pipeline_state), _where(done, r.obs, s.obs)
            pipeline_state, obs = jax.lax.cond(done.any(), fresh, lambda _: (s.pipeline_state, s.obs), None)
        info = {**s.info, "steps": jnp.where(done, jnp.zeros_like(s.info["steps"]), s.info["steps"])}
        ts = self._timestep(s, final_obs, terminated, truncated)
        s = s.replace(pipeline_state=pipeline_state, obs=obs, done=jnp.zeros_like(s.done), info=info)
        return state.replace(inner=s), ts._replace(obs=obs)

    def render(self, states, path):
        """An HTML page replaying env 0's pipeline states; `states` leaves are `(T, num_envs, ...)`."""
        self.check_render(path)
        html = require("brax.io.html", REQUIRES)
        pipeline = jax.device_get(jax.tree.map(lambda x: x[:, 0], states.inner.pipeline_state))
        frames = [jax.tree.map(lambda x: x[t], pipeline)  # noqa: B023 - called within its iteration
                  for t in range(len(jax.tree.leaves(pipeline)[0]))]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html.render(self.brax_env.sys, frames))


def list_envs() -> list[str]:
    return sorted(_brax_envs()._envs)


def make(env_id: str, num_envs: int = 1, **kwargs) -> BraxVecEnv:
    return BraxVecEnv(env_id, num_envs, **kwargs)


ADAPTER = Adapter(list_envs=list_envs, make=make, requires=REQUIRES)
