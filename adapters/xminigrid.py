"""XLand-MiniGrid's MiniGrid environments as `xminigrid:<id>`, e.g. `xminigrid:MiniGrid-Empty-6x6`.

Envs: every `MiniGrid-*` id of `xminigrid.registered_environments()`. The
`XLand-MiniGrid-*` ids are left out: their task is a ruleset drawn from a
benchmark that xminigrid downloads from the internet at first use, and without
one they carry the empty goal and never end before their time limit.

Endings: xminigrid's step returns a dm_env-style step type and discount. A LAST
step with discount 0 (the goal reached; in the Memory envs, either of the two
end cells) is `terminated`; a LAST step with discount 1 (the step counter reached
`max_steps`) is `truncated`. The goal reached on the last allowed step is
terminated only. The reward is xminigrid's own: `1 - 0.9 * steps / max_steps`
on success, 0 otherwise. MiniGrid-Playground has no goal, as in MiniGrid: its
episodes end only at the time limit.

Auto-reset: `xminigrid.make` returns the bare environment, whose `step` never
resets (xminigrid's GymAutoResetWrapper and DmEnvAutoResetWrapper are not used).
The adapter steps it as a pjrl `Env` and `to_vec` adds the same-step auto-reset
with `final_obs`. The state is xminigrid's `State`; stepping is deterministic
given it, so the step key is unused and each reset draws from its own key.

Observation: the agent's egocentric view, `(view_size, view_size, 2)` uint8:
channel 0 a tile id in [0, 12], channel 1 a colour id in [0, 11] (0 and 0 for
what lies outside the grid). Actions: Discrete(6) (forward, turn right, turn
left, pick up, put down, toggle), nothing masked. `info` is empty.

Options: `max_steps` (the time limit, a whole number >= 1; default per env,
as MiniGrid's) and `view_size` (an odd whole number >= 3; default 7, 3 for the
Memory envs), e.g. `make("xminigrid:MiniGrid-DoorKey-5x5", max_steps=100)`.
The other env params are not options: `height` and `width` define the registered
env (several layouts assume them), Playground's `num_objects` stays at its 12,
and `render_mode` only affects xminigrid's own drawing.
"""
from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from pjrl_envs import spaces
from pjrl_envs.core import Env
from pjrl_envs.registry import Adapter, OptionError, UnknownEnvError, check_options, require
from pjrl_envs.types import TimeStep

REQUIRES = "xminigrid==0.9.3"
PREFIX = "MiniGrid-"
OPTIONS = ("max_steps", "view_size")
# Registered ids the adapter does not offer, with the reason.
EXCLUDED_PREFIX = "XLand-MiniGrid-"
EXCLUDED_REASON = ("needs a ruleset benchmark that xminigrid downloads from the internet at first use; "
                   "without one its goal is empty and episodes only end at the time limit")


def _xminigrid():
    return require("xminigrid", REQUIRES)


def _whole(name: str, option: str, value: Any) -> int:
    """`value` as an int, or a one-line OptionError when it is not a whole number."""
    whole = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not (whole or (isinstance(value, (float, np.floating)) and float(value).is_integer())):
        raise OptionError(f"{name}: option {option}={value!r} must be a whole number")
    return int(value)


def _check_options(name: str, options: dict) -> dict:
    """The options as xminigrid params, validated; raises a one-line OptionError for a bad value."""
    check_options(name, options, OPTIONS)
    params = {}
    if options.get("max_steps") is not None:
        params["max_steps"] = _whole(name, "max_steps", options["max_steps"])
        if params["max_steps"] < 1:
            raise OptionError(f"{name}: option max_steps={options['max_steps']!r} must be at least 1")
    if options.get("view_size") is not None:
        params["view_size"] = _whole(name, "view_size", options["view_size"])
        if params["view_size"] < 3 or params["view_size"] % 2 == 0:
            raise OptionError(f"{name}: option view_size={options['view_size']!r} must be odd and at least 3")
    return params


class XMiniGridEnv(Env):
    """One XLand-MiniGrid MiniGrid environment under the pjrl protocol; the state is xminigrid's `State`."""

    def __init__(self, env_id: str, **options):
        xminigrid = _xminigrid()
        self.name = f"xminigrid:{env_id}"
        if env_id not in list_envs():
            why = unlisted(env_id)
            raise UnknownEnvError(f"{self.name} is not offered: {why}" if why else
                                  f"unknown env {self.name!r}; `pjrl envs --library xminigrid` lists them all")
        self.env, self.params = xminigrid.make(env_id, **_check_options(self.name, options))
        self._types = require("xminigrid.types", REQUIRES)
        constants = require("xminigrid.core.constants", REQUIRES)
        self.max_episode_steps = int(self.params.max_steps)
        view = int(self.params.view_size)
        high = np.broadcast_to(np.array([constants.NUM_TILES - 1, constants.NUM_COLORS - 1]), (view, view, 2))
        self.observation_space = spaces.Box(0, high, (view, view, 2), jnp.uint8)
        self.action_space = spaces.Discrete(int(self.env.num_actions(self.params)))
        self._mask = spaces.no_mask(self.action_space)

    def _timestep(self, obs, reward, terminated, truncated) -> TimeStep:
        return TimeStep(obs=obs, reward=jnp.asarray(reward, jnp.float32), terminated=terminated,
                        truncated=truncated, final_obs=obs, action_mask=self._mask, info={})

    def reset(self, key):
        xts = self.env.reset(self.params, key)
        false = jnp.zeros((), jnp.bool_)
        return xts.state, self._timestep(xts.observation, 0.0, false, false)

    def step(self, state, action, key):
        del key  # xminigrid steps deterministically from its state
        types = self._types
        # xminigrid's step reads only the `state` of the TimeStep it is given
        current = types.TimeStep(state=state, step_type=types.StepType.MID, reward=jnp.zeros((), jnp.float32),
                                 discount=jnp.ones((), jnp.float32), observation=None)
        xts = self.env.step(self.params, current, action)
        last = xts.step_type == types.StepType.LAST
        terminated = last & (xts.discount == 0)
        truncated = last & (xts.discount != 0)
        return xts.state, self._timestep(xts.observation, xts.reward, terminated, truncated)


def unlisted(env_id: str) -> str | None:
    """Why an XLand ruleset env is not offered; None for an id xminigrid lacks."""
    if env_id.startswith(EXCLUDED_PREFIX) and env_id in _xminigrid().registered_environments():
        return EXCLUDED_REASON
    return None


def list_envs() -> list[str]:
    """The MiniGrid ids, in xminigrid's registration order."""
    return [i for i in _xminigrid().registered_environments() if i.startswith(PREFIX)]


def make(env_id: str, num_envs: int = 1, **options):
    return XMiniGridEnv(env_id, **options).to_vec(num_envs)


ADAPTER = Adapter(list_envs=list_envs, make=make, requires=REQUIRES, unlisted=unlisted)
