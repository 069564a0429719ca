"""pjrl_envs: one functional environment protocol for end-to-end JAX RL."""
from pjrl_envs import prng, spaces, wrappers
from pjrl_envs.core import AutoResetVecEnv, Env, RenderError, VecEnv
from pjrl_envs.registry import (
    Adapter,
    MissingLibraryError,
    OptionError,
    UnknownEnvError,
    check_options,
    list_envs,
    make,
    prefixes,
    register,
    require,
    steps_on_host,
)
from pjrl_envs.rollout import random_policy, rollout
from pjrl_envs.spaces import Box, Discrete, MultiDiscrete
from pjrl_envs.types import TimeStep

prng.unroll_threefry_on_cpu()

__all__ = [
    "Adapter", "AutoResetVecEnv", "Box", "Discrete", "Env", "MissingLibraryError", "MultiDiscrete",
    "OptionError", "RenderError", "TimeStep", "UnknownEnvError", "VecEnv", "check_options", "list_envs", "make",
    "prefixes", "random_policy", "register", "require", "rollout", "spaces", "steps_on_host", "wrappers",
]
