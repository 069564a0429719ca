"""Navix environments as `navix:<id>`, e.g. `navix:Navix-Empty-5x5-v0`.

    env = pjrl_envs.make("navix:Navix-DoorKey-5x5-v0", num_envs=64, observation_fn="categorical")

Envs: every id of `navix.registry()`, under Navix's own names.

Auto-reset: Navix's `step` resets lazily, on the call AFTER the one that ended
an episode (that call ignores its action and returns the first timestep of the
next episode). The adapter never calls it: it steps Navix's un-resetting
`_step` as a pjrl `Env`, and `to_vec` adds the same-step auto-reset, so on the
step where an episode ends `obs` is already the next episode's first
observation, `final_obs` the last one of the ended episode, and every step
takes the agent's action. The state is Navix's `State` plus the step
counter; outside the RGB views it leaves out Navix's rendering cache (a
background image per env, which only those views draw from), so that a large
batch neither carries nor rebuilds it. The step key becomes the state's key
before each step, so the balls of the Dynamic-Obstacles envs move by the key
`step` is given.

Endings: Navix's step type is TRANSITION (0), TRUNCATION (1, the step counter
reached `max_steps`) or TERMINATION (2, the env's termination function: goal,
lava, a ball hit, `done` at the right door). TERMINATION is `terminated`,
TRUNCATION is `truncated`; Navix already lets termination win when both happen
on the same step, so the two are never both True. `max_episode_steps` is
`max_steps`. The reward is Navix's: 1 on reaching the goal (0 otherwise),
less `penality_coeff * t / max_steps` on termination.

Actions: `Discrete(len(action_set))`, nothing masked: 7 for the MiniGrid action
set (turn left, turn right, forward, pick up, drop, toggle, done), 10 for
Navix's complete one. `info` is empty.

Observations (`observation_fn`), dtypes as Navix returns them. The declared
bounds are what the envs really produce; Navix's own spaces say [0, 8] for
the symbolic and categorical views, but entity tags go up to 10 (the
player's), walls are -1 in the categorical views and so on below:
- "symbolic" (default): `(H, W, 3)` uint8, MiniGrid's (tag, colour, state)
  triples: tag in [0, 10], colour in [0, 5], state in [0, 3] (a door's
  open/closed/locked or the player's direction). In the KeyCorridor envs the
  state goes up to 255: Navix creates their locked door with `open=2`, whose
  state encodes as 254.
- "symbolic_first_person": the same triples in the agent's `(7, 7, 3)` view.
- "categorical": `(H, W)` int32, -1 for walls, 0 for floor, else the entity's tag.
- "categorical_first_person": the agent's `(7, 7)` int32 view of that, in
  [-1, 100]: 100 marks the cells beyond the grid (Navix's padding).
- "rgb", "rgb_first_person": uint8 images, `(8H, 8W, 3)` and `(56, 56, 3)`.

Options: `max_steps` (a whole number >= 1; default 100, `navix.make`'s),
`observation_fn` (a name above), `action_set` ("minigrid", the default, or
"complete") and `penality_coeff` (a finite number >= 0, Navix's spelling;
default 0).
"""
from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from pjrl_envs import spaces
from pjrl_envs.core import Env
from pjrl_envs.registry import Adapter, OptionError, UnknownEnvError, check_options, require
from pjrl_envs.types import TimeStep

REQUIRES = "navix==0.7.4"
OPTIONS = ("max_steps", "observation_fn", "action_set", "penality_coeff")
DEFAULT_MAX_STEPS = 100  # navix.make's
# observation name -> (low, high) of what the envs produce; None: the dtype's range
OBSERVATIONS: dict[str, tuple[Any, Any] | None] = {
    "symbolic": (0, (10, 5, 3)),
    "symbolic_first_person": (0, (10, 5, 3)),
    "categorical": (-1, 10),
    "categorical_first_person": (-1, 100),
    "rgb": None,
    "rgb_first_person": None,
}
# Envs whose symbolic state channel goes beyond 3 (a locked door made with open=2 encodes as 254).
WIDE_SYMBOLIC_STATE = "Navix-KeyCorridor"
ACTION_SETS = {"minigrid": "MINIGRID_ACTION_SET", "complete": "COMPLETE_ACTION_SET"}


def _navix():
    return require("navix", REQUIRES)


@struct.dataclass
class NavixState:
    state: Any  # navix State
    t: jax.Array  # () int32, steps since the reset


def _choice(name: str, option: str, value: Any, allowed) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise OptionError(f"{name}: option {option}={value!r} is not one of: {', '.join(allowed)}")
    return value


def _options(name: str, options: dict) -> dict:
    """The options as `navix.make` keywords, validated; a bad value raises a one-line OptionError."""
    check_options(name, options, OPTIONS)
    navix = _navix()
    out: dict[str, Any] = {"max_steps": DEFAULT_MAX_STEPS}
    if "max_steps" in options:
        value = options["max_steps"]
        whole = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        if not (whole or (isinstance(value, (float, np.floating)) and float(value).is_integer())) or value < 1:
            raise OptionError(f"{name}: option max_steps={value!r} must be a whole number >= 1")
        out["max_steps"] = int(value)
    observation = _choice(name, "observation_fn", options.get("observation_fn", "symbolic"), OBSERVATIONS)
    out["observation_fn"] = getattr(navix.observations, observation)
    action_set = _choice(name, "action_set", options.get("action_set", "minigrid"), ACTION_SETS)
    out["action_set"] = getattr(navix.actions, ACTION_SETS[action_set])
    if "penality_coeff" in options:
        value = options["penality_coeff"]
        number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and value >= 0):
            raise OptionError(f"{name}: option penality_coeff={value!r} must be a finite number >= 0")
        out["penality_coeff"] = float(value)
    return out


class NavixEnv(Env):
    """One Navix environment under the pjrl protocol, stepped without Navix's own reset."""

    def __init__(self, env_id: str, **options):
        navix = _navix()
        self.name = f"navix:{env_id}"
        if env_id not in navix.registry():
            raise UnknownEnvError(f"unknown env {self.name!r}; `pjrl envs --library navix` lists them all")
        kwargs = _options(self.name, options)
        self.observation_name = options.get("observation_fn", "symbolic")
        self.env = navix.make(env_id, **kwargs)
        self.max_episode_steps = int(self.env.max_steps)
        self._step_type = navix.StepType
        self._timestep_cls = navix.Timestep
        obs = jax.eval_shape(lambda k: self.env.reset(k).observation, jax.random.PRNGKey(0))
        bounds = OBSERVATIONS[self.observation_name]
        if bounds is None:
            info = jnp.iinfo(obs.dtype)
            bounds = (info.min, info.max)
        high: Any  # one bound, or (for the symbolic observations) one per channel
        low, high = bounds
        if self.observation_name.startswith("symbolic") and env_id.startswith(WIDE_SYMBOLIC_STATE):
            high = (high[0], high[1], 255)
        self.observation_space = spaces.Box(low, np.broadcast_to(high, obs.shape), obs.shape, obs.dtype)
        self.action_space = spaces.Discrete(len(self.env.action_set))
        self._mask = spaces.no_mask(self.action_space)
        self._keeps_cache = self.observation_name.startswith("rgb")

    def _navix_state(self, state):
        """Navix's state, less its rendering cache (a background image) unless an RGB view draws from it."""
        if self._keeps_cache:
            return state
        return state.replace(cache=state.cache.replace(patches=jnp.zeros((0,), jnp.uint8)))

    def _timestep(self, obs, reward, terminated, truncated) -> TimeStep:
        return TimeStep(obs=obs, reward=jnp.asarray(reward, jnp.float32), terminated=terminated,
                        truncated=truncated, final_obs=obs, action_mask=self._mask, info={})

    def reset(self, key):
        nts = self.env.reset(key)
        false = jnp.zeros((), jnp.bool_)
        state = NavixState(state=self._navix_state(nts.state), t=jnp.asarray(nts.t, jnp.int32))
        return state, self._timestep(nts.observation, 0.0, false, false)

    def step(self, state, action, key):
        # `_step` reads only the incoming timestep's state, t and info; the rest is filler
        zero = jnp.zeros((), jnp.int32)
        current = self._timestep_cls(t=state.t, observation=None, action=zero, reward=jnp.zeros((), jnp.float32),
                                     step_type=zero, state=state.state.replace(key=key), info={})
        nts = self.env._step(current, jnp.asarray(action, jnp.int32))
        terminated = nts.step_type == self._step_type.TERMINATION
        truncated = nts.step_type == self._step_type.TRUNCATION
        new = NavixState(state=self._navix_state(nts.state), t=jnp.asarray(nts.t, jnp.int32))
        return new, self._timestep(nts.observation, nts.reward, terminated, truncated)


def list_envs() -> list[str]:
    """Navix's registered ids, sorted."""
    return sorted(_navix().registry())


def make(env_id: str, num_envs: int = 1, **options):
    return NavixEnv(env_id, **options).to_vec(num_envs)


ADAPTER = Adapter(list_envs=list_envs, make=make, requires=REQUIRES)
