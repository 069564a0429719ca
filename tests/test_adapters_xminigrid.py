"""The xminigrid adapter: which envs are listed, step type/discount to flags, same-step auto-reset, options.

Conformance (`check_env`) is in tests/test_conformance.py; bad options and PPO learning in tests/test_adapters.py.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("xminigrid")

import pjrl_envs
from pjrl_adapters import xminigrid as xminigrid_adapter

FORWARD, RIGHT, LEFT = 0, 1, 2


def test_every_minigrid_env_is_listed():
    import xminigrid
    registered = xminigrid.registered_environments()
    expected = [i for i in registered if not i.startswith(xminigrid_adapter.EXCLUDED_PREFIX)]
    assert pjrl_envs.list_envs("xminigrid") == [f"xminigrid:{i}" for i in expected]
    assert all(i.startswith("MiniGrid-") for i in expected)
    assert any(i.startswith("XLand-MiniGrid-") for i in registered)  # the ones left out exist


def test_spaces_and_options():
    env = pjrl_envs.make("xminigrid:MiniGrid-Empty-5x5", num_envs=2)
    assert env.action_space.n == 6 and env.max_episode_steps == 100  # MiniGrid's 4 * 5 * 5
    space = env.observation_space
    assert space.shape == (7, 7, 2) and space.dtype == jnp.uint8
    np.testing.assert_array_equal(space.high[0, 0], [12, 11])  # the largest tile and colour ids
    env = pjrl_envs.make("xminigrid:MiniGrid-MemoryS8", num_envs=2, max_steps=50, view_size=5)
    assert env.observation_space.shape == (5, 5, 2) and env.max_episode_steps == 50
    assert pjrl_envs.make("xminigrid:MiniGrid-MemoryS8").observation_space.shape == (3, 3, 2)  # its default


def test_xland_ids_are_refused_saying_why():
    for make in (lambda: pjrl_envs.make("xminigrid:XLand-MiniGrid-R1-9x9"),
                 lambda: xminigrid_adapter.make("XLand-MiniGrid-R1-9x9")):
        with pytest.raises(pjrl_envs.UnknownEnvError, match="not offered: needs a ruleset benchmark"):
            make()
    with pytest.raises(pjrl_envs.UnknownEnvError, match="unknown env"):
        pjrl_envs.make("xminigrid:MiniGrid-Nope")


@functools.cache
def _raw_empty_5x5():
    """xminigrid's own jitted reset and step of MiniGrid-Empty-5x5 (a time limit far away)."""
    import xminigrid
    env, params = xminigrid.make("MiniGrid-Empty-5x5", max_steps=1000)
    return jax.jit(lambda key: env.reset(params, key)), jax.jit(lambda ts, a: env.step(params, ts, a))


def _view(actions):
    """xminigrid's own observation after `actions` from the (fixed) start of MiniGrid-Empty-5x5."""
    reset, step = _raw_empty_5x5()
    ts = reset(jax.random.PRNGKey(0))
    for a in actions:
        ts = step(ts, jnp.int32(a))
    return np.asarray(ts.observation)


def test_goal_is_terminated_and_time_limit_truncated_with_same_step_reset():
    # MiniGrid-Empty-5x5 starts at (1, 1) facing right; the goal is at (3, 3).
    env = pjrl_envs.make("xminigrid:MiniGrid-Empty-5x5", num_envs=3, max_steps=6)
    actions = np.array([
        [FORWARD, FORWARD, RIGHT, FORWARD, FORWARD, LEFT],     # the goal on step 5
        [LEFT] * 6,                                            # turns on the spot until the limit
        [FORWARD, FORWARD, FORWARD, RIGHT, FORWARD, FORWARD],  # bumps a wall, the goal on step 6, the last
    ], np.int32)
    step = jax.jit(env.step)
    state, ts = jax.jit(env.reset)(jax.random.PRNGKey(0))
    first = np.asarray(ts.obs[0])
    out = []
    for t, key in enumerate(jax.random.split(jax.random.PRNGKey(1), 6)):
        state, ts = step(state, jnp.asarray(actions[:, t]), key)
        out.append(jax.device_get(ts))
    terminated = np.array([o.terminated for o in out]).T
    truncated = np.array([o.truncated for o in out]).T
    reward = np.array([o.reward for o in out]).T
    np.testing.assert_array_equal(terminated, [[0, 0, 0, 0, 1, 0], [0] * 6, [0, 0, 0, 0, 0, 1]])
    np.testing.assert_array_equal(truncated, [[0] * 6, [0, 0, 0, 0, 0, 1], [0] * 6])
    # xminigrid's success reward: 1 - 0.9 * steps / max_steps
    np.testing.assert_allclose(reward, [[0, 0, 0, 0, 1 - 0.9 * 5 / 6, 0], [0] * 6, [0, 0, 0, 0, 0, 0.1]], rtol=1e-6)
    # on an ending step final_obs is the last view of the episode, obs the next episode's first
    for env_index, t in ((0, 4), (1, 5), (2, 5)):
        np.testing.assert_array_equal(out[t].final_obs[env_index], _view(actions[env_index, :t + 1]))
        np.testing.assert_array_equal(out[t].obs[env_index], first)
        assert not np.array_equal(out[t].final_obs[env_index], first)
    # env 0's new episode went on: one left turn from the start
    np.testing.assert_array_equal(out[5].obs[0], _view([LEFT]))
    np.testing.assert_array_equal(out[5].final_obs[0], out[5].obs[0])
    assert out[0].info == {} and ts.action_mask.shape == (3, 6) and bool(ts.action_mask.all())


def test_every_env_makes(all_envs):
    """Every listed env builds, with xminigrid's own shapes and time limit (tracing only, no rollout)."""
    if not all_envs:
        pytest.skip("run with --all-envs (or PJRL_ALL_ENVS=1)")
    import xminigrid
    for env_id in xminigrid_adapter.list_envs():
        raw, params = xminigrid.make(env_id)
        env = pjrl_envs.make(f"xminigrid:{env_id}", num_envs=2)
        assert env.observation_space.shape == tuple(raw.observation_shape(params)), env_id
        assert env.action_space.n == raw.num_actions(params) and env.max_episode_steps == params.max_steps
        state, ts = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
        assert ts.obs.shape == (2,) + env.observation_space.shape and ts.obs.dtype == jnp.uint8, env_id
