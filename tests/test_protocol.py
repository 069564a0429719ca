"""Auto-reset semantics and every wrapper, against numbers worked out by hand."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pjrl_envs import spaces, wrappers
from pjrl_envs.core import AutoResetVecEnv
from tests.envs import CounterEnv

KEY = jax.random.PRNGKey(0)
ZERO2 = jnp.zeros((2,), jnp.int32)


def rollout(env, n, action=None):
    state, ts = env.reset(KEY)
    out = []
    for i in range(n):
        a = ZERO2 if action is None else action
        state, ts = env.step(state, a, jax.random.PRNGKey(i + 1))
        out.append(ts)
    return state, out


def test_same_step_auto_reset_puts_last_obs_in_final_obs():
    env = AutoResetVecEnv(CounterEnv(length=3, random_start=True), 2)
    _, first = env.reset(KEY)
    starts = np.asarray(first.obs[:, 0])
    assert ((starts >= 50) & (starts < 60)).all()
    _, steps = rollout(env, 4)
    # steps 1, 2 ongoing; step 3 terminates: obs is a fresh start, final_obs is start + 3
    for ts in steps[:2]:
        assert not ts.terminated.any()
        np.testing.assert_array_equal(ts.obs, ts.final_obs)
    end = steps[2]
    assert end.terminated.all() and not end.truncated.any()
    np.testing.assert_array_equal(end.final_obs[:, 0], starts + 3)
    np.testing.assert_array_equal(end.reward, starts + 3)
    assert ((end.obs[:, 0] >= 50) & (end.obs[:, 0] < 60)).all()
    # the step after the reset continues the new episode from its first observation
    np.testing.assert_array_equal(steps[3].final_obs[:, 0], end.obs[:, 0] + 1)
    assert int(steps[3].info["steps"][0]) == 1


def test_reset_info_has_step_keys_zero_filled():
    env = AutoResetVecEnv(CounterEnv(), 3)
    _, ts = env.reset(KEY)
    assert set(ts.info) == {"steps"} and ts.info["steps"].shape == (3,)


def test_episode_statistics_by_hand():
    env = wrappers.EpisodeStatistics(AutoResetVecEnv(CounterEnv(length=3), 2))
    _, steps = rollout(env, 5)
    # rewards 1, 2, 3 then a new episode 1, 2: returns 1, 3, 6 | 1, 3
    np.testing.assert_allclose([float(s.info["episode_return"][0]) for s in steps], [1, 3, 6, 1, 3])
    assert [int(s.info["episode_length"][0]) for s in steps] == [1, 2, 3, 1, 2]
    assert [bool(s.info["returned_episode"][0]) for s in steps] == [False, False, True, False, False]


def test_normalize_observation_by_hand():
    env = wrappers.NormalizeObservation(AutoResetVecEnv(CounterEnv(length=10), 2), epsilon=0.0, clip=100.0)
    state, ts = env.reset(KEY)
    # reset obs [0, 0] twice: mean 0, var (0 * 2 + 1 * 1e-4) / (2 + 1e-4)
    count = 2 + 1e-4
    var0 = 1e-4 / count
    np.testing.assert_allclose(state.moments.count, count, rtol=1e-6)
    np.testing.assert_allclose(state.moments.var[0], var0, rtol=1e-4)
    state, ts = env.step(state, ZERO2, KEY)
    # now obs [1, 10] twice: delta = 1 (first dim), total = count + 2
    total = count + 2
    mean = 2 / total
    m2 = var0 * count + 0.0 + 1.0 * count * 2 / total
    np.testing.assert_allclose(state.moments.mean[0], mean, rtol=1e-5)
    np.testing.assert_allclose(state.moments.var[0], m2 / total, rtol=1e-4)
    np.testing.assert_allclose(ts.obs[0, 0], (1 - mean) / np.sqrt(m2 / total), rtol=1e-4)
    np.testing.assert_allclose(ts.final_obs, ts.obs)


def test_normalize_observation_clips():
    env = wrappers.NormalizeObservation(AutoResetVecEnv(CounterEnv(length=10), 2), clip=0.5)
    state, _ = env.reset(KEY)
    _, ts = env.step(state, ZERO2, KEY)
    assert float(jnp.abs(ts.obs).max()) <= 0.5


def test_normalize_reward_by_hand():
    gamma = 0.5
    env = wrappers.NormalizeReward(AutoResetVecEnv(CounterEnv(length=2), 1), gamma=gamma, epsilon=0.0, clip=100.0)
    state, _ = env.reset(KEY)
    # step 1: reward 1, G = 1; moments over one value starting from (mean 0, var 1, count 1e-4)
    c0 = 1e-4
    total = c0 + 1
    mean1 = 1 / total
    var1 = (1 * c0 + 0 + 1 * c0 * 1 / total) / total
    state, ts = env.step(state, jnp.zeros((1,), jnp.int32), KEY)
    np.testing.assert_allclose(state.moments.var, var1, rtol=1e-4)
    np.testing.assert_allclose(ts.reward[0], 1 / np.sqrt(var1), rtol=1e-4)
    # step 2: reward 2, G = 0.5 * 1 + 2 = 2.5, then the episode ends and G restarts
    state, ts = env.step(state, jnp.zeros((1,), jnp.int32), KEY)
    total2 = total + 1
    delta = 2.5 - mean1
    var2 = (var1 * total + delta**2 * total * 1 / total2) / total2
    np.testing.assert_allclose(ts.reward[0], 2 / np.sqrt(var2), rtol=1e-4)
    assert float(state.discounted_return[0]) == 0.0


class _EchoBox(CounterEnv):
    """Reward is the action it received, to see what the env was given."""

    def __init__(self):
        super().__init__(length=100)
        self.action_space = spaces.Box(-1.0, 2.0, (1,), jnp.float32)

    def step(self, state, action, key):
        state, ts = super().step(state, action, key)
        return state, ts._replace(reward=action[0])


def test_clip_action_clips_to_bounds():
    env = wrappers.ClipAction(AutoResetVecEnv(_EchoBox(), 3))
    state, _ = env.reset(KEY)
    _, ts = env.step(state, jnp.array([[-5.0], [0.5], [7.0]]), KEY)
    np.testing.assert_allclose(ts.reward, [-1.0, 0.5, 2.0])
    with pytest.raises(TypeError, match="Box"):
        wrappers.ClipAction(AutoResetVecEnv(CounterEnv(), 1))


def test_flatten_observation_concatenates_leaves():
    class Tree(CounterEnv):
        def __init__(self):
            super().__init__()
            self.observation_space = {"a": spaces.Box(0, 1, (2, 2)), "b": spaces.Discrete(5)}

        def reset(self, key):
            s, ts = super().reset(key)
            obs = {"a": jnp.arange(4.0).reshape(2, 2), "b": jnp.asarray(3)}
            return s, ts._replace(obs=obs, final_obs=obs)

        def step(self, state, action, key):
            s, ts = super().step(state, action, key)
            obs = {"a": jnp.arange(4.0).reshape(2, 2), "b": jnp.asarray(3)}
            return s, ts._replace(obs=obs, final_obs=obs)

    env = wrappers.FlattenObservation(AutoResetVecEnv(Tree(), 2))
    _, ts = env.reset(KEY)
    np.testing.assert_array_equal(ts.obs[0], [0, 1, 2, 3, 3])
    assert env.observation_space.shape == (5,)
    np.testing.assert_array_equal(env.observation_space.high, [1, 1, 1, 1, 4])


def test_time_limit_truncates_unless_terminated():
    env = AutoResetVecEnv(wrappers.TimeLimit(CounterEnv(length=3), max_steps=2), 1)
    _, steps = rollout(env, 2, jnp.zeros((1,), jnp.int32))
    assert not steps[0].truncated[0] and steps[1].truncated[0] and not steps[1].terminated[0]
    env = AutoResetVecEnv(wrappers.TimeLimit(CounterEnv(length=3), max_steps=3), 1)
    _, steps = rollout(env, 3, jnp.zeros((1,), jnp.int32))
    assert steps[2].terminated[0] and not steps[2].truncated[0]


def test_wrappers_jit_scan_and_vmap():
    env = wrappers.NormalizeReward(wrappers.NormalizeObservation(
        wrappers.EpisodeStatistics(AutoResetVecEnv(CounterEnv(), 4))))

    def run(key):
        state, ts = env.reset(key)
        def body(s, k):
            s, ts = env.step(s, jnp.zeros((4,), jnp.int32), k)
            return s, ts.reward
        return jax.lax.scan(body, state, jax.random.split(key, 7))[1]

    out = jax.jit(jax.vmap(run))(jax.random.split(KEY, 3))
    assert out.shape == (3, 7, 4) and bool(jnp.isfinite(out).all())


def test_space_sampling_respects_masks():
    space = spaces.Discrete(4)
    mask = jnp.array([False, True, False, True])
    draws = jax.vmap(lambda k: space.sample(k, mask))(jax.random.split(KEY, 200))
    assert set(np.unique(draws).tolist()) == {1, 3}
    md = spaces.MultiDiscrete((2, 3))
    mask = jnp.array([True, False, False, False, True])
    draws = jax.vmap(lambda k: md.sample(k, mask))(jax.random.split(KEY, 50))
    assert (draws[:, 0] == 0).all() and (draws[:, 1] == 2).all()
    box = spaces.Box(-1.0, 1.0, (3,))
    x = jax.vmap(box.sample)(jax.random.split(KEY, 50))
    assert bool(jax.vmap(box.contains)(x).all())
