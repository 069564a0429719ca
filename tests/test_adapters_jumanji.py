"""The jumanji adapter: step_type/discount to flags, specs to spaces, mask layouts.

Conformance (`check_env`) is in tests/test_conformance.py; bad options and PPO learning in tests/test_adapters.py.
"""
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("jumanji")

import pjrl_envs
from pjrl_adapters import jumanji as jumanji_adapter


def test_every_jumanji_env_is_listed():
    import jumanji
    assert pjrl_envs.list_envs("jumanji") == [f"jumanji:{n}" for n in sorted(jumanji.registered_environments())]


def test_specs_become_spaces():
    snake = jumanji_adapter.JumanjiEnv("Snake-v1")
    assert snake.action_space.n == 4
    space = snake.observation_space
    assert type(space).__name__ == "Observation"  # the env's own NamedTuple, a space per field
    assert space.grid.shape == (12, 12, 5) and float(space.grid.high.max()) == 1.0
    assert space.action_mask.dtype == jnp.bool_
    cleaner = jumanji_adapter.JumanjiEnv("Cleaner-v0")
    assert cleaner.action_space.nvec == (4, 4, 4)
    assert pjrl_envs.spaces.mask_shape(cleaner.action_space) == (12,)
    rescue = jumanji_adapter.JumanjiEnv("SearchAndRescue-v0")
    assert isinstance(rescue.action_space, pjrl_envs.Box) and rescue.action_space.shape == (2, 2)


def test_mask_layouts():
    # per-choice (agents, actions) masks are flattened block by block
    cleaner = jumanji_adapter.JumanjiEnv("Cleaner-v0")
    mask = jnp.array([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]], bool)
    obs = cleaner.env.observation_spec.generate_value()._replace(action_mask=mask)
    flat = cleaner._action_mask(obs)
    np.testing.assert_array_equal(flat, [1, 0, 0, 1, 0, 1, 0, 0, 1, 1, 1, 1])  # an empty block allows all
    # a joint (rows, cols) mask becomes one Discrete index, unravelled for the env
    mines = jumanji_adapter.JumanjiEnv("Minesweeper-v0")
    assert mines.action_space.n == 100
    np.testing.assert_array_equal(mines._env_action(jnp.int32(37)), [3, 7])
    marginal = jumanji_adapter.JumanjiEnv("Minesweeper-v0", joint_actions=False)
    assert marginal.action_space.nvec == (10, 10)
    joint = jnp.zeros((10, 10), bool).at[3, 7].set(True)
    obs = marginal.env.observation_spec.generate_value()._replace(action_mask=joint)
    np.testing.assert_array_equal(np.flatnonzero(marginal._action_mask(obs)), [3, 17])


def test_step_type_and_discount_become_flags():
    from jumanji.types import StepType, TimeStep
    env = jumanji_adapter.JumanjiEnv("Game2048-v1")
    obs = env.env.observation_spec.generate_value()

    def flags(step_type, discount):
        jts = TimeStep(step_type=jnp.int8(step_type), reward=jnp.float32(1.5), discount=jnp.float32(discount),
                       observation=obs, extras={})
        ts = env._timestep(jts, False)
        return bool(ts.terminated), bool(ts.truncated), float(ts.reward)

    assert flags(StepType.MID, 1.0) == (False, False, 1.5)
    assert flags(StepType.LAST, 0.0) == (True, False, 1.5)
    assert flags(StepType.LAST, 1.0) == (False, True, 1.5)


def test_options_reach_the_env():
    env = pjrl_envs.make("jumanji:Snake-v1", num_envs=2, num_rows=6, num_cols=6)
    assert env.observation_space.grid.shape == (6, 6, 5)
