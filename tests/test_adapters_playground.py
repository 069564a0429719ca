"""The MuJoCo Playground adapter: the env list, truncation with the real last observation, options.

Conformance (`check_env`) is in tests/test_conformance.py; bad options and PPO learning in
tests/test_adapters.py. A Playground env takes 10-60 s to compile on a CPU, so the default tests here
compile only CartpoleBalance, once, and the rest run only with `--all-envs` (or PJRL_ALL_ENVS=1).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("mujoco_playground")

import pjrl_envs
from pjrl_adapters import playground as adapter
from pjrl_envs.testing import check_env

SLOW = "compiles a physics env (1-2 min); --all-envs (or PJRL_ALL_ENVS=1) runs it"


def test_the_dm_control_suite_is_listed_and_nothing_that_needs_menagerie():
    import mujoco_playground as mp
    from mujoco_playground._src import mjx_env
    had_menagerie = mjx_env.MENAGERIE_PATH.exists()
    assert pjrl_envs.list_envs("playground") == [f"playground:{n}" for n in sorted(mp.dm_control_suite.ALL_ENVS)]
    assert len(mp.registry.ALL_ENVS) == (len(mp.dm_control_suite.ALL_ENVS) + len(mp.locomotion.ALL_ENVS)
                                         + len(mp.manipulation.ALL_ENVS))
    for env_id in (mp.locomotion.ALL_ENVS[0], mp.manipulation.ALL_ENVS[0]):
        for make in (lambda: pjrl_envs.make(f"playground:{env_id}"), lambda: adapter.ADAPTER.make(env_id)):
            with pytest.raises(pjrl_envs.UnknownEnvError, match=r"not offered: .*MuJoCo Menagerie, which playground "
                                                                r"clones with git") as info:
                make()
            assert "\n" not in str(info.value)
    assert mjx_env.MENAGERIE_PATH.exists() == had_menagerie  # nothing was cloned


@pytest.mark.slow
def test_truncation_keeps_the_last_observation_that_playgrounds_wrapper_drops():
    """On the step the time limit ends an episode, Playground's wrapper returns the reset
    observation; pjrl's `final_obs` is what the env's own `step` returned on that step."""
    from mujoco_playground import wrapper
    length, n = 4, 2
    env = pjrl_envs.make("playground:CartpoleBalance", num_envs=n, episode_length=length)
    raw = env.playground_env
    action = jnp.ones((n, 1))

    @jax.jit
    def pjrl_episode(key):
        state, ts0 = env.reset(key)
        step = lambda state, k: env.step(state, action, k)
        return state.inner, ts0, jax.lax.scan(step, state, jax.random.split(key, length))[1]

    @jax.jit
    def by_hand(first):  # the raw env's own steps, no wrapper
        step = lambda s, _: (jax.vmap(raw.step)(s, action),) * 2
        return jax.lax.scan(step, first, None, length=length)[1]

    @jax.jit
    def stock_episode(key, first):  # Playground's training wrapper, from the same initial states
        s = wrapper.wrap_for_brax_training(raw, episode_length=length)
        state = s.reset(jax.random.split(key, n))
        info = {**state.info, "AutoResetWrapper_first_data": first.data, "AutoResetWrapper_first_obs": first.obs}
        state = state.replace(data=first.data, obs=first.obs, info=info)
        return jax.lax.scan(lambda st, _: (s.step(st, action),) * 2, state, None, length=length)[1]

    first, ts0, traj = pjrl_episode(jax.random.PRNGKey(0))
    raw_traj, stock_traj = by_hand(first), stock_episode(jax.random.PRNGKey(1), first)
    last_obs = raw_traj.obs[-1]  # what the env's step returned on the step the time limit hit
    np.testing.assert_array_equal(traj.truncated, [[False] * n] * (length - 1) + [[True] * n])
    assert not traj.terminated.any() and not raw_traj.done.any()

    # the stock wrapper ends the episode on the same step and hands back the reset observation
    assert stock_traj.done[-1].all() and stock_traj.info["truncation"][-1].all()
    np.testing.assert_allclose(stock_traj.obs[-1], ts0.obs)
    assert not np.allclose(stock_traj.obs[-1], last_obs)

    # pjrl keeps the real last observation in final_obs, and restarts from the first state
    np.testing.assert_allclose(traj.final_obs, raw_traj.obs, rtol=1e-5, atol=1e-6)
    assert not np.allclose(traj.final_obs[-1], stock_traj.obs[-1])
    np.testing.assert_allclose(traj.obs[:-1], raw_traj.obs[:-1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(traj.obs[-1], ts0.obs)


def test_the_adapter_itself_names_an_unknown_env():
    with pytest.raises(pjrl_envs.UnknownEnvError, match="^unknown env 'playground:Nope'"):
        adapter.ADAPTER.make("Nope", num_envs=1)


def test_options_reach_the_config():
    env = pjrl_envs.make("playground:FingerSpin", episode_length=10, action_repeat=3, ctrl_dt=0.04, njmax=60)
    assert env.impl == adapter.default_impl()
    if jax.default_backend() == "cpu":
        assert env.impl == "jax"
    assert env.playground_env.mjx_model.impl.value == env.impl
    assert env.max_episode_steps == 4  # ceil(10 / 3) agent steps
    assert env.playground_env.dt == 0.04 and env.playground_env.n_substeps == 8
    assert env.playground_env._config.njmax == 60
    assert env.observation_space.shape == (9,) and env.action_space.shape == (2,)


def test_fresh_auto_reset_and_action_repeat(all_envs):
    if not all_envs:
        pytest.skip(SLOW)
    env = pjrl_envs.make("playground:CartpoleBalance", num_envs=3, episode_length=6, action_repeat=2,
                         auto_reset="fresh")
    state, ts0 = jax.jit(env.reset)(jax.random.PRNGKey(0))
    step = jax.jit(env.step)
    rewards = []
    for t in range(3):
        state, ts = step(state, jnp.zeros((3, 1)), jax.random.PRNGKey(10 + t))
        rewards.append(ts.reward)
        assert bool(ts.truncated.all()) == (t == 2)
    assert not np.allclose(ts.obs, ts0.obs)  # a newly drawn start, not the first one
    assert np.all(np.asarray(rewards) > 1.0)  # two control steps of a reward in [0, 1] each
    report = check_env(env, num_steps=30)
    assert report["truncated"] == 30 and report["terminated"] == 0


def test_check_env_on_a_walker(all_envs):
    if not all_envs:
        pytest.skip(SLOW)
    report = check_env(pjrl_envs.make("playground:WalkerWalk", num_envs=2, episode_length=25), num_steps=60)
    assert report["truncated"] == 4 and report["terminated"] == 0
