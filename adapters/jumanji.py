"""Jumanji environments as `jumanji:<id>`.

    env = pjrl_envs.make("jumanji:Snake-v1", num_envs=64)

- `step_type`/`discount` become the flags: a last step with discount 0 is
  `terminated`, a last step with discount > 0 is `truncated` (some jumanji envs
  end on their step limit with discount 0; that stays termination, as they say).
- Observations stay the env's own structured pytree (a NamedTuple of arrays);
  `observation_space` is the same structure with a space per leaf, bounds from
  the specs and dtypes from what the env really returns.
- An `action_mask` field of the observation is also `TimeStep.action_mask`,
  laid out as `pjrl_envs.spaces.mask_shape` says. Where the env's mask allows
  no action at all (FlatPack goes on after no block fits), every action is
  allowed: the env treats each as a no-op.
- Actions: `DiscreteArray` -> `Discrete`; `MultiDiscreteArray` (and bounded
  integer arrays starting at 0) -> `MultiDiscrete`, with a per-choice mask
  `(num_choices, n)` flattened; a bounded float array -> `Box`. A mask over the
  JOINT choice (shape `nvec`, as in Sudoku, Minesweeper, Tetris, BinPack) cannot
  be split into independent per-choice masks, so by default such an env gets
  `Discrete(prod(nvec))` with the joint mask flattened and the index unravelled
  before the env sees it; `joint_actions=False` keeps `MultiDiscrete` with the
  per-choice marginals of the mask (which can still allow illegal pairs).
- Multi-agent envs: per-agent rewards are summed and discounts maxed (as
  jumanji's `MultiToSingleWrapper` does); the agents' actions are one
  `MultiDiscrete`.

Other keyword arguments go to the env's constructor (e.g. `num_rows` for Snake).
"""
from __future__ import annotations

import inspect
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pjrl_envs import spaces
from pjrl_envs.core import Env
from pjrl_envs.registry import Adapter, check_options, require
from pjrl_envs.types import TimeStep

REQUIRES = "jumanji==1.1.2"
# Cannot conform here, with the reason.
NEEDS_NETWORK = {"Sokoban-v0": "downloads its Boxoban levels from the Hugging Face hub when made"}
# Observation leaves whose spec bounds the env exceeds; the adapter reports them unbounded.
WRONG_OBS_BOUNDS = {
    "TSP-v1": {"position": "is -1 before the first city is visited, outside its DiscreteArray spec"},
}


def _jumanji():
    return require("jumanji", REQUIRES)


def _leaf_space(spec, x) -> spaces.Box:
    """A jumanji leaf spec as a Box, with the dtype of the array `x` the env returns."""
    name = type(spec).__name__
    shape, dtype = tuple(x.shape), x.dtype
    if name == "DiscreteArray":
        return spaces.Box(0, int(spec.num_values) - 1, shape, dtype)
    if name in ("BoundedArray", "MultiDiscreteArray"):
        low, high = np.asarray(spec.minimum, np.float32), np.asarray(spec.maximum, np.float32)
        if dtype == jnp.bool_:
            low, high = np.zeros_like(low), np.ones_like(high)
        return spaces.Box(np.broadcast_to(low, shape), np.broadcast_to(high, shape), shape, dtype)
    return spaces.Box(-float("inf"), float("inf"), shape, dtype)


def _spec_at(spec, path):
    for key in path:
        name = getattr(key, "name", getattr(key, "key", None))
        spec = spec._specs[name] if hasattr(spec, "_specs") and name in spec._specs else getattr(spec, name)
    return spec


def observation_space(obs_spec, example_obs, unbounded=()) -> Any:
    """The observation's pytree with one space per leaf; leaves named in `unbounded` get no bounds."""
    def one(path, x):
        if getattr(path[-1], "name", None) in unbounded:
            return spaces.Box(-float("inf"), float("inf"), x.shape, x.dtype)
        return _leaf_space(_spec_at(obs_spec, path), x)
    return jax.tree_util.tree_map_with_path(one, example_obs)


class JumanjiEnv(Env):
    """One jumanji environment under the pjrl protocol."""

    def __init__(self, env_id: str, joint_actions: bool = True, **kwargs):
        jumanji = _jumanji()
        env_cls = jumanji.registration.load(jumanji.registration._REGISTRY[env_id].entry_point)
        allowed = [p for p in inspect.signature(env_cls.__init__).parameters if p != "self"]
        check_options(f"jumanji:{env_id}", kwargs, ["joint_actions"] + allowed)
        self.env_id = env_id
        self.name = f"jumanji:{env_id}"
        self.env = jumanji.make(env_id, **kwargs)
        state, ts = jax.eval_shape(self.env.reset, jax.random.PRNGKey(0))
        del state
        self.observation_space = observation_space(self.env.observation_spec, ts.observation,
                                                   tuple(WRONG_OBS_BOUNDS.get(env_id, ())))
        mask = getattr(ts.observation, "action_mask", None)
        self._mask_shape = None if mask is None else tuple(mask.shape)
        self._build_action_space(self.env.action_spec, joint_actions)

    def _build_action_space(self, spec, joint_actions):
        name = type(spec).__name__
        self._action_dtype = spec.dtype
        self._spec_shape = tuple(spec.shape)
        self._nvec = None  # set when a Discrete index is unravelled into a joint action
        self._mask_kind = "none" if self._mask_shape is None else "flat"
        if name == "DiscreteArray":
            self.action_space = spaces.Discrete(int(spec.num_values))
        elif name == "MultiDiscreteArray" or (name == "BoundedArray" and jnp.issubdtype(spec.dtype, jnp.integer)
                                             and np.all(np.asarray(spec.minimum) == 0)):
            if name == "MultiDiscreteArray":
                nvec = tuple(int(n) for n in np.asarray(spec.num_values).ravel())
            else:
                nvec = tuple(int(m) + 1 for m in np.broadcast_to(np.asarray(spec.maximum), spec.shape).ravel())
            if (name == "BoundedArray" and self._mask_shape is not None and len(self._mask_shape) == 2
                    and self._mask_shape[0] == len(nvec)):
                # bounded integer actions: the per-choice mask says how many values each choice has
                nvec = (self._mask_shape[1],) * len(nvec)
            per_choice = (len(nvec), max(nvec))
            if self._mask_shape is not None and self._mask_shape == nvec and self._mask_shape != per_choice:
                if joint_actions:
                    self._nvec = nvec
                    self.action_space = spaces.Discrete(math.prod(nvec))
                else:
                    self._mask_kind = "marginal"
                    self.action_space = spaces.MultiDiscrete(nvec)
            else:
                if self._mask_shape is not None and self._mask_shape != per_choice:
                    raise NotImplementedError(f"jumanji:{self.env_id}: action mask {self._mask_shape} fits "
                                              f"neither per-choice {per_choice} nor joint {nvec} layout")
                self._mask_kind = "none" if self._mask_shape is None else "per_choice"
                self.action_space = spaces.MultiDiscrete(nvec)
        elif name == "BoundedArray":
            low = np.broadcast_to(np.asarray(spec.minimum, np.float32), spec.shape)
            high = np.broadcast_to(np.asarray(spec.maximum, np.float32), spec.shape)
            self.action_space = spaces.Box(low, high, spec.shape, jnp.float32)
            self._mask_kind = "none"
        else:
            raise NotImplementedError(f"jumanji:{self.env_id}: action spec {spec} has no pjrl space")

    def _action_mask(self, obs):
        if self._mask_kind == "none":
            return spaces.no_mask(self.action_space)
        mask = obs.action_mask.astype(jnp.bool_)
        if self._mask_kind == "per_choice":
            # (num_choices, max n) -> one block of n_i entries per choice
            blocks = [mask[i, :n] for i, n in enumerate(self.action_space.nvec)]
        elif self._mask_kind == "marginal":
            axes = range(mask.ndim)
            blocks = [mask.any(axis=tuple(a for a in axes if a != i)) for i in axes]
        else:
            blocks = [mask.reshape(-1)]
        # Some envs (FlatPack) go on after no legal move is left; any action is then a no-op,
        # so a block that allows nothing is reported as allowing everything.
        return jnp.concatenate([b | ~b.any() for b in blocks])

    def _env_action(self, action):
        if self._nvec is not None:
            action = jnp.stack(jnp.unravel_index(action, self._nvec))
        elif isinstance(self.action_space, spaces.MultiDiscrete):
            action = action.reshape(self._spec_shape)
        return action.astype(self._action_dtype)

    def _timestep(self, jts, reset: bool):
        from jumanji.types import StepType
        reward = jnp.sum(jts.reward).astype(jnp.float32)
        last = jts.step_type == StepType.LAST
        discount = jnp.max(jts.discount)
        false = jnp.zeros((), jnp.bool_)
        terminated = false if reset else last & (discount == 0)
        truncated = false if reset else last & (discount > 0)
        info = jax.tree.map(jnp.asarray, dict(jts.extras or {}))
        return TimeStep(obs=jts.observation, reward=reward, terminated=terminated, truncated=truncated,
                        final_obs=jts.observation, action_mask=self._action_mask(jts.observation), info=info)

    def reset(self, key):
        state, jts = self.env.reset(key)
        return state, self._timestep(jts, reset=True)

    def step(self, state, action, key):
        del key  # jumanji envs carry their own key in the state
        state, jts = self.env.step(state, self._env_action(action))
        return state, self._timestep(jts, reset=False)


def list_envs() -> list[str]:
    return sorted(_jumanji().registered_environments())


def make(env_id: str, num_envs: int = 1, **kwargs):
    return JumanjiEnv(env_id, **kwargs).to_vec(num_envs)


ADAPTER = Adapter(list_envs=list_envs, make=make, requires=REQUIRES)
