"""Craftax environments as `craftax:<id>`: Craftax and Craftax-Classic, symbolic or pixel observations.

Each env wraps craftax's no-auto-reset env (its `reset_env` / `step_env`);
`to_vec` adds the same-step auto-reset, so on the step an episode ends `obs`
already shows a freshly generated world and `final_obs` the last view of the
old one.

Endings. craftax reports one `done` that also covers its time limit
(`timestep >= params.max_timesteps`). The adapter splits it: a step is
`terminated` when the episode really ended, and `truncated` when only the time
limit was reached. The real endings are craftax's own `is_terminal` evaluated
with the time limit out of reach: in Craftax-Classic the player's health at 0
or the player standing in lava; in Craftax the player's health at 0 or the
final boss beaten. A step that is both a real ending and the last one allowed
is `terminated` only; `terminated` and `truncated` are never both True.

Options are the fields of craftax's `EnvParams`, e.g.
`make("craftax:Craftax-Classic-Symbolic-v1", max_timesteps=1000)`;
`max_episode_steps` is `max_timesteps`.

Spaces. Actions are `Discrete` (17 in Classic, 43 in Craftax). Symbolic
observations are a flat float32 vector, pixel ones a float32 `(H, W, 3)` image
in [0, 1]; the first pixel env made after installing craftax builds craftax's
texture cache, which takes a minute or two. craftax declares every symbolic
entry in [0, 1], which holds for Classic but not for Craftax, whose inventory
and attribute entries exceed 1 (health / 10 reaches (8 + strength) / 10, mana
/ 10 reaches (6 + 3 * intelligence) / 10, books / 2 grows with the books
held): there the map part keeps [0, 1] and the last 51 entries are reported
as [0, inf).

`info["achievements"]` is a bool vector, one entry per achievement (named, in
order, by the env's `achievement_names`): what the player has achieved so far
in the episode, as of the state the step reached (before any auto-reset, so on
an ending step it is the finished episode's record). It is all False after a
reset.

Resets. Generating a world costs far more than a step, so the batch computes
`resets` new worlds per step (default: one per 16 envs, at least one) and hands
them to the envs whose episodes ended on it, in env order; should more end on
one step, the later ones reuse those worlds in turn (`AutoResetVecEnv`).
`resets=num_envs` gives every env its own world on every step, as craftax's
own auto-reset does (about 10x slower for 64 envs on a CPU).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np

from pjrl_envs import spaces
from pjrl_envs.core import Env
from pjrl_envs.registry import Adapter, OptionError, check_options, require
from pjrl_envs.types import TimeStep

REQUIRES = "craftax==1.6.1"
# The names craftax.craftax_env.make_craftax_env_from_name takes for its envs without auto-reset.
ENVS = ("Craftax-Symbolic-v1", "Craftax-Pixels-v1", "Craftax-Classic-Symbolic-v1", "Craftax-Classic-Pixels-v1")
# The symbolic Craftax observation ends with this many inventory, attribute and status entries
# (craftax's `get_inventory_obs_shape`), some of which exceed the declared bound of 1.
CRAFTAX_SYMBOLIC_TAIL = 51
# Options that must be at least 1 (the time limit; the day length, which craftax divides by).
AT_LEAST_ONE = ("max_timesteps", "day_length")
INT32_MAX = int(np.iinfo(np.int32).max)


def _craftax_env():
    return require("craftax.craftax_env", REQUIRES)


def _check_param(env_name: str, name: str, value, default):
    """`value` checked against its default's kind and returned as that kind; raises `OptionError`."""
    if isinstance(default, bool):
        if not isinstance(value, (bool, np.bool_)):
            raise OptionError(f"{env_name}: option {name}={value!r} must be True or False")
        return bool(value)
    if isinstance(default, (int, float)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not math.isfinite(value):
            raise OptionError(f"{env_name}: option {name}={value!r} must be a finite number")
        if isinstance(default, int):
            if value != int(value):
                raise OptionError(f"{env_name}: option {name}={value!r} must be a whole number")
            value = int(value)
        else:
            value = float(value)
        if name in AT_LEAST_ONE and not 1 <= value <= INT32_MAX:
            raise OptionError(f"{env_name}: option {name}={value} must be between 1 and {INT32_MAX}")
        if name.endswith("_chance") and not 0.0 <= value <= 1.0:
            raise OptionError(f"{env_name}: option {name}={value} must be a probability in [0, 1]")
        return value
    if name == "fractal_noise_angles":
        if not isinstance(value, (tuple, list)) or len(value) != len(default):
            raise OptionError(f"{env_name}: option fractal_noise_angles must be a tuple of {len(default)} entries, "
                              f"each None or an array of angles, got {value!r}")
        return tuple(None if v is None else jnp.asarray(v, jnp.float32) for v in value)
    return value


class CraftaxEnv(Env):
    """One Craftax environment under the pjrl protocol; the state is craftax's `EnvState`."""

    def __init__(self, env_id: str, **params):
        self.env_id = env_id
        self.name = f"craftax:{env_id}"
        self.classic = env_id.startswith("Craftax-Classic-")
        make_env = _craftax_env().make_craftax_env_from_name
        with contextlib.redirect_stdout(sys.stderr):  # pixel envs report their texture loading on stdout
            self.env = make_env(env_id, auto_reset=False)
        default = self.env.default_params
        check_options(self.name, params, [f.name for f in dataclasses.fields(default)] + ["resets"])
        params = {k: _check_param(self.name, k, v, getattr(default, k)) for k, v in params.items()}
        self.params = default.replace(**params)
        # The same params with the time limit out of reach: `is_terminal` then sees only real endings.
        self._no_limit = self.params.replace(max_timesteps=INT32_MAX)
        self.max_episode_steps = int(self.params.max_timesteps)

        constants = require(f"craftax.{'craftax_classic' if self.classic else 'craftax'}.constants", REQUIRES)
        self.achievement_names = tuple(a.name.lower() for a in sorted(constants.Achievement, key=lambda a: a.value))

        try:
            obs = jax.eval_shape(lambda k: self.env.reset_env(k, self.params)[0], jax.random.PRNGKey(0))
        except (TypeError, ValueError, IndexError) as e:
            if "fractal_noise_angles" not in params:
                raise
            raise OptionError(f"{self.name}: craftax cannot generate a world with these "
                              f"fractal_noise_angles: {type(e).__name__}: {e}") from None
        declared = self.env.observation_space(self.params)
        low = np.broadcast_to(np.asarray(declared.low, np.float32), obs.shape)
        high = np.broadcast_to(np.asarray(declared.high, np.float32), obs.shape).copy()
        if env_id == "Craftax-Symbolic-v1":
            high[-CRAFTAX_SYMBOLIC_TAIL:] = np.inf
        self.observation_space = spaces.Box(low, high, obs.shape, obs.dtype)
        self.action_space = spaces.Discrete(int(self.env.action_space(self.params).n))
        self._mask = spaces.no_mask(self.action_space)

    def reset(self, key):
        obs, state = self.env.reset_env(key, self.params)
        false = jnp.zeros((), jnp.bool_)
        return state, TimeStep(obs=obs, reward=jnp.zeros((), jnp.float32), terminated=false, truncated=false,
                               final_obs=obs, action_mask=self._mask,
                               info={"achievements": jnp.asarray(state.achievements, jnp.bool_)})

    def step(self, state, action, key):
        obs, state, reward, done, _ = self.env.step_env(key, state, action, self.params)
        done = jnp.asarray(done, jnp.bool_)
        ended = jnp.asarray(self.env.is_terminal(state, self._no_limit), jnp.bool_)
        truncated = done & ~ended  # done by the time limit alone
        ts = TimeStep(obs=obs, reward=jnp.asarray(reward, jnp.float32), terminated=done & ~truncated,
                      truncated=truncated, final_obs=obs, action_mask=self._mask,
                      info={"achievements": jnp.asarray(state.achievements, jnp.bool_)})
        return state, ts


def list_envs() -> list[str]:
    return list(ENVS)


def make(env_id: str, num_envs: int = 1, resets: int | None = None, **params):
    if resets is None:
        resets = max(1, num_envs // 16)
    elif isinstance(resets, bool) or not isinstance(resets, (int, np.integer)) or not 1 <= resets <= num_envs:
        raise OptionError(f"craftax:{env_id}: resets={resets!r} must be a whole number from 1 to num_envs={num_envs}")
    return CraftaxEnv(env_id, **params).to_vec(num_envs, int(resets))


ADAPTER = Adapter(list_envs=list_envs, make=make, requires=REQUIRES)
