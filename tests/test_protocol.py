"""Auto-reset semantics, every wrapper, rollout and rendering, against numbers worked out by hand."""
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pjrl_envs
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


def test_bounded_resets_hand_out_k_initial_states_in_env_order():
    env = AutoResetVecEnv(CounterEnv(length=3, random_start=True), 5, resets=2)
    state, first = env.reset(KEY)
    starts = np.asarray(first.obs[:, 0])
    step = jax.jit(env.step)
    action = jnp.zeros((5,), jnp.int32)
    outs = []
    for i in range(4):
        state, ts = step(state, action, jax.random.PRNGKey(10 + i))
        outs.append(ts)
    for ts in outs[:2]:  # nothing ended: every env goes on, no reset handed out
        np.testing.assert_array_equal(ts.obs, ts.final_obs)
    end = outs[2]
    assert end.terminated.all()
    np.testing.assert_array_equal(end.final_obs[:, 0], starts + 3)
    new = np.asarray(end.obs[:, 0])
    assert ((new >= 50) & (new < 60)).all()
    # five envs ended on one step and two resets were drawn: envs 0, 2, 4 share the first, 1 and 3 the second
    assert new[0] == new[2] == new[4] and new[1] == new[3]
    # each env's state is its new episode's: the next step continues from the handed-out start
    np.testing.assert_array_equal(outs[3].final_obs[:, 0], new + 1)
    assert (np.asarray(outs[3].info["steps"]) == 1).all()
    with pytest.raises(ValueError, match="resets must be between 1 and num_envs=5"):
        AutoResetVecEnv(CounterEnv(), 5, resets=6)


def test_a_step_draws_every_envs_keys_in_one_split_of_its_key():
    # one-step episodes: each env's next obs is its reset's, whose start is drawn from its key
    key, one = jax.random.PRNGKey(7), CounterEnv(length=1, random_start=True)
    state, _ = AutoResetVecEnv(one, 8).reset(KEY)
    _, ts = AutoResetVecEnv(one, 8).step(state, jnp.zeros((8,), jnp.int32), key)
    keys = jax.random.split(key, (8, 2))  # env i: step key [i, 0], reset key [i, 1]
    np.testing.assert_array_equal(ts.obs, np.stack([one.reset(keys[i, 1])[1].obs for i in range(8)]))
    # bounded resets: the n step keys, then the k reset keys; env i takes reset i mod k when all end
    bounded = AutoResetVecEnv(one, 8, resets=3)
    _, ts = bounded.step(bounded.reset(KEY)[0], jnp.zeros((8,), jnp.int32), key)
    keys = jax.random.split(key, 8 + 3)
    np.testing.assert_array_equal(ts.obs, np.stack([one.reset(keys[8 + i % 3])[1].obs for i in range(8)]))


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


# ---------------------------------------------------------------- rollout


def test_rollout_records_each_step_and_continues_from_where_it_stopped():
    env = AutoResetVecEnv(CounterEnv(length=3), 2)
    policy = lambda obs, mask, key: jnp.zeros((2,), jnp.int32)
    (state, ts), records = jax.jit(lambda k: pjrl_envs.rollout(env, policy, k, 5))(KEY)
    # rewards 1, 2, 3 then a new episode 1, 2
    np.testing.assert_array_equal(records.reward[:, 0], [1, 2, 3, 1, 2])
    np.testing.assert_array_equal(records.terminated[:, 1], [False, False, True, False, False])
    assert records.obs.shape == (5, 2, 2) and int(state["steps"][0]) == 2
    # continuing from (state, ts) and recording the states before each step
    _, before = pjrl_envs.rollout(env, policy, KEY, 2, start=(state, ts),
                                  record=lambda s, a, s2, t: s)
    np.testing.assert_array_equal(before["steps"][:, 0], [2, 0])  # the step from 2 ended the episode


def test_random_policy_samples_legal_actions_per_env():
    class Masked(CounterEnv):
        def reset(self, key):
            s, ts = super().reset(key)
            return s, ts._replace(action_mask=jnp.array([False, True, False, True]))

        def step(self, state, action, key):
            s, ts = super().step(state, action, key)
            return s, ts._replace(action_mask=jnp.array([False, True, False, True]))

    env = AutoResetVecEnv(Masked(num_actions=4), 3)
    _, actions = pjrl_envs.rollout(env, pjrl_envs.random_policy(env), KEY, 40, record=lambda s, a, s2, t: a)
    assert actions.shape == (40, 3) and set(np.unique(actions).tolist()) == {1, 3}


# ---------------------------------------------------------------- declared properties of the wrapper stack


class _HostVec(AutoResetVecEnv):
    host_callbacks = True


def test_wrappers_report_the_inner_envs_properties():
    base = AutoResetVecEnv(wrappers.TimeLimit(CounterEnv(), max_steps=7), 2)
    env = wrappers.NormalizeReward(wrappers.NormalizeObservation(wrappers.EpisodeStatistics(base)))
    assert not env.host_callbacks and env.max_episode_steps == 7 and env.render_suffixes == ()
    host = wrappers.NormalizeReward(wrappers.EpisodeStatistics(_HostVec(CounterEnv(), 2)))
    assert host.host_callbacks and host.max_episode_steps is None


# ---------------------------------------------------------------- observation and carry_statistics


def _stack(num_envs=2, clip=100.0):
    """EpisodeStatistics -> NormalizeObservation -> NormalizeReward over CounterEnv (obs [t, 10 t])."""
    env = wrappers.EpisodeStatistics(AutoResetVecEnv(CounterEnv(length=10), num_envs))
    env = wrappers.NormalizeObservation(env, epsilon=0.0, clip=clip)
    return wrappers.NormalizeReward(env, gamma=0.5, epsilon=0.0)


def test_observation_applies_the_current_moments_to_one_or_many_raw_observations():
    env = _stack()
    state, _ = env.reset(KEY)
    state, ts = env.step(state, ZERO2, KEY)
    # moments after obs [0, 0] twice (reset) then [1, 10] twice (step), from (mean 0, var 1, count 1e-4):
    count = 2 + 1e-4
    var0 = 1e-4 / count
    total = count + 2
    mean = np.array([1.0, 10.0]) * 2 / total
    var = (var0 * count + np.array([1.0, 100.0]) * count * 2 / total) / total
    # what the agent was handed is the raw [1, 10] seen through the stack
    np.testing.assert_allclose(env.observation(state, jnp.array([1.0, 10.0])), ts.obs[0], rtol=1e-6)
    np.testing.assert_allclose(ts.obs[0], (np.array([1.0, 10.0]) - mean) / np.sqrt(var), rtol=1e-4)
    # one observation without a batch axis, and a (3, 2) batch
    one = env.observation(state, jnp.array([3.0, 30.0]))
    assert one.shape == (2,)
    np.testing.assert_allclose(one, (np.array([3.0, 30.0]) - mean) / np.sqrt(var), rtol=1e-4)
    raw = jnp.array([[0.0, 0.0], [3.0, 30.0], [5.0, 0.0]])
    np.testing.assert_allclose(env.observation(state, raw), (np.asarray(raw) - mean) / np.sqrt(var), rtol=1e-4)
    # nothing is updated: the same call gives the same answer
    np.testing.assert_array_equal(env.observation(state, raw), env.observation(state, raw))


def test_observation_clips_and_a_bare_env_is_the_identity():
    env = _stack(clip=0.5)
    state, _ = env.reset(KEY)
    state, _ = env.step(state, ZERO2, KEY)
    # (3 - 2/4.0001) / sqrt(0.25...) is about 5: clipped to 0.5; the same in dim 1
    np.testing.assert_allclose(env.observation(state, jnp.array([3.0, 30.0])), [0.5, 0.5])
    np.testing.assert_allclose(env.observation(state, jnp.array([0.0, 0.0])), [-0.5, -0.5])
    bare = AutoResetVecEnv(CounterEnv(), 2)
    assert bare.observation(None, jnp.array([3.0, 30.0])).tolist() == [3.0, 30.0]


def test_flatten_observation_flattens_the_trailing_dims_of_any_batch():
    class Tree(CounterEnv):
        def __init__(self):
            super().__init__()
            self.observation_space = {"a": spaces.Box(0, 10, (2, 2)), "b": spaces.Discrete(5)}

    env = wrappers.FlattenObservation(AutoResetVecEnv(Tree(), 2))
    one = {"a": jnp.arange(4.0).reshape(2, 2), "b": jnp.asarray(3)}
    np.testing.assert_array_equal(env.observation(None, one), [0, 1, 2, 3, 3])
    many = jax.tree.map(lambda x: jnp.broadcast_to(x, (4, 3) + x.shape), one)
    flat = env.observation(None, many)
    assert flat.shape == (4, 3, 5)
    np.testing.assert_array_equal(flat[2, 1], [0, 1, 2, 3, 3])


def test_carry_statistics_copies_the_moments_and_nothing_else():
    env = _stack()
    trained, _ = env.reset(KEY)
    for i in range(4):
        trained, _ = env.step(trained, ZERO2, jax.random.PRNGKey(i))
    fresh, _ = env.reset(jax.random.PRNGKey(9))
    carried = env.carry_statistics(fresh, trained)
    same = lambda a, b: jax.tree.all(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b))
    assert same(carried.moments, trained.moments)  # NormalizeReward's
    assert same(carried.inner.moments, trained.inner.moments)  # NormalizeObservation's
    assert not same(fresh.moments, trained.moments) and not same(fresh.inner.moments, trained.inner.moments)
    # the episode in progress is the fresh one: returns, discounted returns and the env itself
    assert same(carried.discounted_return, fresh.discounted_return)
    assert same(carried.inner.inner, fresh.inner.inner)
    bare = AutoResetVecEnv(CounterEnv(), 2)
    assert bare.carry_statistics("fresh", "trained") == "fresh"


# ---------------------------------------------------------------- rendering


def test_check_render_refuses_in_one_line_naming_what_the_env_draws():
    cases = [
        (pjrl_envs.make("gymnax:Reacher-misc"), "a.gif",
         "cannot draw gymnax:Reacher-misc to .gif; this env draws to: (none)"),
        (wrappers.EpisodeStatistics(pjrl_envs.make("gymnax:CartPole-v1")), "run/a.html",
         "cannot draw gymnax:CartPole-v1 to .html; this env draws to: .gif"),
        (pjrl_envs.make("gymnax:Breakout-MinAtar"), "a",
         "cannot draw gymnax:Breakout-MinAtar to a file without a suffix"),
        (AutoResetVecEnv(CounterEnv(), 2), "a.gif", "cannot draw CounterEnv to .gif; this env draws to: (none)"),
    ]
    for env, path, message in cases:
        with pytest.raises(pjrl_envs.RenderError) as err:
            env.check_render(path)
        assert str(err.value).startswith(message) and "\n" not in str(err.value)
    pjrl_envs.make("gymnax:Breakout-MinAtar").check_render("out/a.GIF")
    assert issubclass(pjrl_envs.RenderError, ValueError)


def test_classic_control_without_pygame_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pygame", None)  # makes `import pygame` fail
    with pytest.raises(pjrl_envs.MissingLibraryError, match=r"needs pygame: pip install 'pygame==2\.6\.1'$"):
        pjrl_envs.make("gymnax:CartPole-v1").check_render("a.gif")
    pjrl_envs.make("gymnax:Breakout-MinAtar").check_render("a.gif")  # drawn by matplotlib alone


def test_gymnax_renders_one_frame_per_state(tmp_path):
    pytest.importorskip("pygame")
    from PIL import Image
    env = wrappers.EpisodeStatistics(pjrl_envs.make("gymnax:CartPole-v1", num_envs=3))
    _, states = jax.jit(lambda k: pjrl_envs.rollout(env, pjrl_envs.random_policy(env), k, 6,
                                                    record=lambda before, a, after, ts: before))(KEY)
    assert states.episode_return.shape == (6, 3)  # (T, num_envs): the wrapper's states, stacked
    gif = tmp_path / "sub" / "episode.gif"
    env.render(states, gif)
    with Image.open(gif) as im:
        assert im.n_frames == 6
        first = np.asarray(im.convert("RGB"))
        im.seek(5)
        last = np.asarray(im.convert("RGB"))
    assert first.shape[0] > 100 and not np.array_equal(first, last)
