"""The brax adapter: conformance, truncation from the episode wrapper, auto-reset, options.

Brax envs take 10-30 s each to compile on a CPU, so the default run checks a
representative two (`fast`, brax's trivial test env, and `inverted_pendulum`,
which terminates, through the "fresh" auto-reset path); `PJRL_ALL_ENVS=1 pytest
tests/test_adapters_brax.py` checks every env brax registers and the slower
semantics tests.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("brax")

import pjrl_envs  # noqa: E402
from pjrl_adapters import brax as brax_adapter  # noqa: E402
from pjrl_envs.testing import check_env  # noqa: E402

REPRESENTATIVE = ["fast", "inverted_pendulum"]
ALL = os.environ.get("PJRL_ALL_ENVS") == "1"
# Every registered env is checked with the default backend, except:
EXCLUDED: dict[str, str] = {
    "swimmer": "brax 0.14.2's fluid model calls jnp.clip(a_min=...), which jax 0.10 removed; "
               "its step fails inside brax itself",
}


def test_every_brax_env_is_listed():
    from brax import envs
    assert pjrl_envs.list_envs("brax") == [f"brax:{n}" for n in sorted(envs._envs)]


@pytest.mark.parametrize("env_id", brax_adapter.list_envs() if ALL else REPRESENTATIVE)
def test_check_env(env_id):
    if env_id in EXCLUDED:
        pytest.skip(EXCLUDED[env_id])
    # inverted_pendulum runs the "fresh" auto-reset path as well, at no extra compile
    auto_reset = "fresh" if env_id == "inverted_pendulum" else "cached"
    env = pjrl_envs.make(f"brax:{env_id}", num_envs=3, episode_length=40, auto_reset=auto_reset)
    assert isinstance(env.action_space, pjrl_envs.Box)
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    report = check_env(env, num_steps=90)
    assert report["terminated"] + report["truncated"] > 0


def test_time_limit_is_truncation_and_restarts_from_the_cached_state():
    env = pjrl_envs.make("brax:fast", num_envs=2, episode_length=3)
    state, ts0 = jax.jit(env.reset)(jax.random.PRNGKey(0))
    step = jax.jit(env.step)
    action = jnp.ones((2, 1))
    obs = []
    for t in range(3):
        state, ts = step(state, action, jax.random.PRNGKey(t))
        obs.append(ts.final_obs)
        assert not ts.terminated.any()
        assert bool(ts.truncated.all()) == (t == 2)
    # `fast` moves by the action each step, so the pre-reset obs differs from the first one
    assert not np.allclose(ts.final_obs, ts0.obs)
    np.testing.assert_allclose(ts.obs, ts0.obs)
    state, ts = step(state, action, jax.random.PRNGKey(9))
    np.testing.assert_allclose(ts.obs, obs[0])  # the next episode replays the first


@pytest.mark.skipif(not ALL, reason="compiles a physics env (~25 s); PJRL_ALL_ENVS=1 runs it")
def test_termination_is_not_truncation():
    env = pjrl_envs.make("brax:inverted_pendulum", num_envs=8, episode_length=1000)
    report = check_env(env, num_steps=60, check_vmap=False)
    assert report["terminated"] > 0 and report["truncated"] == 0


@pytest.mark.skipif(not ALL, reason="compiles a physics env (~25 s); PJRL_ALL_ENVS=1 runs it")
def test_fresh_auto_reset_draws_a_new_initial_state():
    env = pjrl_envs.make("brax:inverted_pendulum", num_envs=4, episode_length=2, auto_reset="fresh")
    step = jax.jit(env.step)
    state, ts0 = jax.jit(env.reset)(jax.random.PRNGKey(0))
    state, _ = step(state, jnp.zeros((4, 1)), jax.random.PRNGKey(1))
    state, ts = step(state, jnp.zeros((4, 1)), jax.random.PRNGKey(2))
    assert ts.truncated.all() | ts.terminated.all()
    assert not np.allclose(ts.obs, ts0.obs)


def test_bad_options_name_the_allowed_values():
    with pytest.raises(pjrl_envs.OptionError, match="generalized, positional, spring, mjx"):
        pjrl_envs.make("brax:ant", backend="nope")
    with pytest.raises(pjrl_envs.OptionError, match="cached, fresh"):
        pjrl_envs.make("brax:ant", auto_reset="sometimes")
    with pytest.raises(pjrl_envs.OptionError, match="ctrl_cost_weight"):
        pjrl_envs.make("brax:ant", ctrl_cost=1.0)
    with pytest.raises(pjrl_envs.UnknownEnvError, match="brax:halfcheetah"):
        pjrl_envs.make("brax:half_cheetah")
    env = pjrl_envs.make("brax:ant", backend="positional", ctrl_cost_weight=0.2)
    assert env.brax_env.backend == "positional"


@pytest.mark.slow
def test_ppo_learns_inverted_double_pendulum():
    from pjrl_agents import ppo
    config = ppo.default_config("brax:inverted_double_pendulum", total_timesteps=120_000)
    env = pjrl_envs.make("brax:inverted_double_pendulum", num_envs=config.num_envs)
    _, metrics = jax.jit(ppo.make_train(config, env))(jax.random.PRNGKey(0))
    first = float(metrics["episode_return"][0])
    final = float(np.mean(metrics["episode_return"][-5:]))
    # the untrained (near-random) policy balances ~15 steps for a return of ~130
    assert first < 300 and final > 600, (first, final)
