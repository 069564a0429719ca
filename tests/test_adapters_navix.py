"""The Navix adapter: listing, same-step auto-reset, endings, the step key, options.

Conformance (`check_env`) is in tests/test_conformance.py; bad options and PPO learning in tests/test_adapters.py.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("navix")

import pjrl_envs
from pjrl_adapters import navix as navix_adapter
from pjrl_envs.testing import check_env

EMPTY = "Navix-Empty-5x5-v0"
# Empty-5x5: the player starts at (1, 1) facing east, the goal is at (3, 3).
# MiniGrid actions: 1 turns right, 2 moves forward.
TO_GOAL = [2, 2, 1, 2, 2]
PLAYER = 10  # the player's tag in channel 0 of the symbolic view


def _player(obs) -> list:
    return np.argwhere(np.asarray(obs)[..., 0] == PLAYER).tolist()


def _play(env, actions, key=jax.random.PRNGKey(0)):
    """The reset TimeStep and the TimeSteps `(T, num_envs)` of `actions`, the same in every env."""
    @jax.jit
    def run(key):
        state, ts0 = env.reset(key)

        def body(state, x):
            action, k = x
            state, ts = env.step(state, jnp.full((env.num_envs,), action, jnp.int32), k)
            return state, ts

        return ts0, jax.lax.scan(body, state, (jnp.asarray(actions), jax.random.split(key, len(actions))))[1]

    return run(key)


def test_every_navix_env_is_listed():
    import navix
    assert pjrl_envs.list_envs("navix") == [f"navix:{n}" for n in sorted(navix.registry())]


def test_goal_step_already_holds_the_next_episode_and_the_next_step_is_ordinary():
    env = pjrl_envs.make(f"navix:{EMPTY}", num_envs=2)
    assert env.max_episode_steps == 100 and env.action_space.n == 7
    ts0, traj = _play(env, TO_GOAL + [2])
    term, trunc = np.asarray(traj.terminated[:, 0]), np.asarray(traj.truncated[:, 0])
    np.testing.assert_array_equal(term, [0, 0, 0, 0, 1, 0])
    assert not trunc.any()
    np.testing.assert_array_equal(traj.reward[:, 0], [0, 0, 0, 0, 1, 0])
    assert _player(ts0.obs[0]) == [[1, 1]]
    # the goal step: final_obs has the player on the goal, obs is the next episode's first observation
    assert _player(traj.final_obs[4, 0]) == [[3, 3]]
    np.testing.assert_array_equal(traj.obs[4], ts0.obs)
    # the next step takes its action in the new episode (Navix's own step would spend it on the reset)
    assert _player(traj.obs[5, 0]) == [[1, 2]]
    np.testing.assert_array_equal(traj.obs[5], traj.final_obs[5])


def test_navix_alone_spends_the_step_after_the_goal_on_its_reset():
    import navix
    env = navix.make(EMPTY)

    @jax.jit
    def run(key):
        def body(ts, action):
            ts = env.step(ts, action)
            return ts, (ts.t, ts.observation)
        return jax.lax.scan(body, env.reset(key), jnp.asarray(TO_GOAL + [2]))[1]

    t, obs = run(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(t, [1, 2, 3, 4, 5, 0])
    assert _player(obs[4]) == [[3, 3]] and _player(obs[5]) == [[1, 1]]  # the forward move was dropped


def test_time_limit_is_truncation_and_the_goal_on_the_last_step_is_termination():
    # max_steps=5: turning in place is cut short at step 5; the goal reached at step 5 terminates
    env = pjrl_envs.make(f"navix:{EMPTY}", num_envs=1, max_steps=5)
    assert env.max_episode_steps == 5
    _, spin = _play(env, [0] * 6)
    np.testing.assert_array_equal(spin.truncated[:, 0], [0, 0, 0, 0, 1, 0])
    assert not spin.terminated.any()
    _, goal = _play(env, TO_GOAL)
    np.testing.assert_array_equal(goal.terminated[:, 0], [0, 0, 0, 0, 1])
    assert not goal.truncated.any() and float(goal.reward[-1, 0]) == 1.0


def test_the_step_key_moves_the_balls():
    env = navix_adapter.NavixEnv("Navix-Dynamic-Obstacles-6x6-v0")
    state, _ = env.reset(jax.random.PRNGKey(0))
    step = jax.jit(jax.vmap(lambda k: env.step(state, jnp.asarray(0), k)[0].state.entities["ball"].position))
    moved = np.asarray(step(jax.random.split(jax.random.PRNGKey(1), 8)))
    again = np.asarray(step(jax.random.split(jax.random.PRNGKey(1), 8)))
    np.testing.assert_array_equal(moved, again)
    assert len({m.tobytes() for m in moved}) > 1


def test_options_shape_the_spaces():
    env = pjrl_envs.make(f"navix:{EMPTY}", observation_fn="categorical", action_set="complete")
    assert env.action_space.n == 10
    space = env.observation_space
    assert space.shape == (5, 5) and space.dtype == jnp.int32 and space.low.min() == -1
    assert pjrl_envs.make(f"navix:{EMPTY}", observation_fn="rgb").observation_space.shape == (40, 40, 3)
    assert pjrl_envs.make(f"navix:{EMPTY}", observation_fn="symbolic_first_person").observation_space.shape == (7, 7, 3)
    # KeyCorridor's locked door encodes a state of 254
    wide = pjrl_envs.make("navix:Navix-KeyCorridorS3R1-v0").observation_space
    assert wide.high[..., 2].max() == 255 and wide.high[..., 0].max() == 10


@pytest.mark.parametrize("observation_fn", list(navix_adapter.OBSERVATIONS))
def test_every_observation_keeps_its_bounds(observation_fn, all_envs):
    if not all_envs:
        pytest.skip("compiles each view of DoorKey-5x5 (20-40 s each); run with --all-envs")
    env = pjrl_envs.make("navix:Navix-DoorKey-5x5-v0", num_envs=4, observation_fn=observation_fn)
    check_env(env, num_steps=200)
