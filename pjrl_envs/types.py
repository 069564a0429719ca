"""The one record every environment step returns."""
from typing import Any, NamedTuple

import jax


class TimeStep(NamedTuple):
    """What an env hands the agent after `reset` or `step`.

    Shapes are per environment; a `VecEnv` adds a leading `(num_envs,)` axis to
    every leaf.
    """

    obs: Any  # pytree matching observation_space
    reward: jax.Array  # () float32
    terminated: jax.Array  # () bool: the MDP ended, do not bootstrap
    truncated: jax.Array  # () bool: cut short (time limit), bootstrap from final_obs
    final_obs: Any  # like obs: the observation before any auto-reset
    action_mask: jax.Array  # (*mask_shape(action_space),) bool, all True when unmasked
    info: dict  # fixed keys per env, arrays only
