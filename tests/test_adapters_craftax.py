"""The craftax adapter: the env list, the time limit as truncation, real endings as termination, options.

The default tests use Craftax-Classic-Symbolic-v1 with a 5-step limit and compile
one reset and one step between them; the full Craftax ones run with `--all-envs`.
Conformance (`check_env`) is in tests/test_conformance.py; bad options and PPO learning in tests/test_adapters.py.
"""
import inspect
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("craftax")

import pjrl_envs

LIMIT = 5
NUM_ENVS = 4


class Stepper:
    """A vec env plus one jitted step that also returns each env's step without the auto-reset."""

    def __init__(self, env_id: str, **options):
        self.env = pjrl_envs.make(f"craftax:{env_id}", num_envs=NUM_ENVS, max_timesteps=LIMIT, **options)
        self.reset = jax.jit(self.env.reset)
        inner = self.env.env

        def step(state, action, key):
            out = self.env.step(state, action, key)
            # the step keys the auto-reset wrapper hands each env
            step_keys = jax.vmap(lambda k: jax.random.split(k)[0])(jax.random.split(key, NUM_ENVS))
            return out, jax.vmap(inner.step)(state, action, step_keys)[1]

        self.step = jax.jit(step)
        self.noop = jnp.zeros(NUM_ENVS, jnp.int32)


@pytest.fixture(scope="module")
def classic():
    return Stepper("Craftax-Classic-Symbolic-v1")


def test_every_craftax_env_is_listed():
    from craftax import craftax_env
    # the names craftax makes, less the "-AutoReset-" aliases of the auto-resetting variants
    named = set(re.findall(r'"(Craftax-[\w-]+)"', inspect.getsource(craftax_env.make_craftax_env_from_name)))
    ids = sorted(n for n in named if "AutoReset" not in n)
    assert len(ids) == 4 and sorted(pjrl_envs.list_envs("craftax")) == [f"craftax:{n}" for n in ids]


@pytest.mark.slow
def test_time_limit_is_truncation_and_final_obs_is_the_last_view(classic):
    state, ts = classic.reset(jax.random.PRNGKey(0))
    assert classic.env.max_episode_steps == LIMIT
    assert ts.info["achievements"].shape == (NUM_ENVS, len(classic.env.env.achievement_names))
    assert not ts.info["achievements"].any()
    for t in range(1, LIMIT):
        state, ts = classic.step(state, classic.noop, jax.random.PRNGKey(t))[0]
        assert not (ts.terminated | ts.truncated).any()
        np.testing.assert_array_equal(ts.final_obs, ts.obs)
    (state, ts), unreset = classic.step(state, classic.noop, jax.random.PRNGKey(LIMIT))
    assert ts.truncated.all() and not ts.terminated.any()
    np.testing.assert_array_equal(ts.final_obs, unreset.obs)  # the view before the reset
    assert not np.array_equal(ts.obs, ts.final_obs)  # a new world
    np.testing.assert_array_equal(state.timestep, 0)
    np.testing.assert_array_equal(ts.info["achievements"], unreset.info["achievements"])


def _set(state, i, **values):
    return state.replace(**{k: getattr(state, k).at[i].set(v) for k, v in values.items()})


@pytest.mark.slow
def test_death_is_termination_even_at_the_limit(classic):
    state, _ = classic.reset(jax.random.PRNGKey(1))
    state = _set(state, 0, player_health=0, timestep=1)  # dies mid-episode
    state = _set(state, 1, player_health=0, timestep=LIMIT - 1)  # dies on the last step allowed
    lava = jnp.asarray(14, state.map.dtype)  # craftax_classic BlockType.LAVA
    x, y = state.player_position[2]
    state = _set(state, 2, map=state.map[2].at[x, y].set(lava), timestep=1)  # stands in lava
    state = _set(state, 3, timestep=LIMIT - 1)  # only the limit
    (_, ts), unreset = classic.step(state, classic.noop, jax.random.PRNGKey(2))
    np.testing.assert_array_equal(ts.terminated, [True, True, True, False])
    np.testing.assert_array_equal(ts.truncated, [False, False, False, True])
    np.testing.assert_array_equal(ts.final_obs, unreset.obs)


def test_options_reach_the_params():
    env = pjrl_envs.make("craftax:Craftax-Classic-Symbolic-v1", num_envs=1, max_timesteps=100.0,
                         always_diamond=False, spawn_cow_chance=0)
    params = env.env.params
    assert env.max_episode_steps == 100 and isinstance(params.max_timesteps, int)
    assert params.always_diamond is False and params.spawn_cow_chance == 0.0


def test_full_craftax_endings(all_envs):
    if not all_envs:
        pytest.skip("full Craftax compiles slowly on a CPU (about a minute); run with --all-envs")
    full = Stepper("Craftax-Symbolic-v1")
    state, ts = full.reset(jax.random.PRNGKey(0))
    assert full.env.observation_space.shape == ts.obs.shape[1:]
    state = _set(state, 0, player_health=0.0, timestep=1)
    state = _set(state, 1, player_health=0.0, timestep=LIMIT - 1)
    state = _set(state, 2, boss_progress=8, timestep=1)  # num_levels - 1: the final boss beaten
    state = _set(state, 3, timestep=LIMIT - 1)
    (_, ts), unreset = full.step(state, full.noop, jax.random.PRNGKey(2))
    np.testing.assert_array_equal(ts.terminated, [True, True, True, False])
    np.testing.assert_array_equal(ts.truncated, [False, False, False, True])
    np.testing.assert_array_equal(ts.final_obs, unreset.obs)
