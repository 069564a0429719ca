"""The brax adapter: truncation from the episode wrapper, auto-reset, options, rendering.

Conformance (`check_env`) is in tests/test_conformance.py; bad options and PPO learning in
tests/test_adapters.py. Brax envs take 10-30 s each to compile on a CPU, so the semantics tests on a
physics env run only with `--all-envs` (or PJRL_ALL_ENVS=1).
"""
import base64
import json
import re
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("brax")

import pjrl_envs
from pjrl_envs.testing import check_env

SLOW = "compiles a physics env (~25 s); --all-envs (or PJRL_ALL_ENVS=1) runs it"


def test_every_brax_env_is_listed():
    from brax import envs
    assert pjrl_envs.list_envs("brax") == [f"brax:{n}" for n in sorted(envs._envs)]


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


def test_termination_is_not_truncation(all_envs):
    if not all_envs:
        pytest.skip(SLOW)
    env = pjrl_envs.make("brax:inverted_pendulum", num_envs=8, episode_length=1000)
    report = check_env(env, num_steps=60, check_vmap=False)
    assert report["terminated"] > 0 and report["truncated"] == 0


def test_fresh_auto_reset_draws_a_new_initial_state(all_envs):
    if not all_envs:
        pytest.skip(SLOW)
    env = pjrl_envs.make("brax:inverted_pendulum", num_envs=4, episode_length=2, auto_reset="fresh")
    step = jax.jit(env.step)
    state, ts0 = jax.jit(env.reset)(jax.random.PRNGKey(0))
    state, _ = step(state, jnp.zeros((4, 1)), jax.random.PRNGKey(1))
    state, ts = step(state, jnp.zeros((4, 1)), jax.random.PRNGKey(2))
    assert ts.truncated.all() | ts.terminated.all()
    assert not np.allclose(ts.obs, ts0.obs)


def test_options_reach_the_env():
    env = pjrl_envs.make("brax:ant", backend="positional", ctrl_cost_weight=0.2)
    assert env.brax_env.backend == "positional"


@pytest.mark.slow
def test_render_writes_the_system_and_env_0s_states_to_html(tmp_path):
    env = pjrl_envs.make("brax:inverted_pendulum", num_envs=2, backend="positional", episode_length=3)
    assert env.render_suffixes == (".html",) and env.max_episode_steps == 3
    with pytest.raises(pjrl_envs.RenderError, match=r"^cannot draw brax:fast to \.html; this env draws to: \(none\)$"):
        pjrl_envs.make("brax:fast").check_render("a.html")
    env = pjrl_envs.wrappers.EpisodeStatistics(env)  # renders through the wrapper
    policy = lambda obs, mask, key: jnp.ones((2, 1))
    record = lambda before, action, after, ts: before
    _, states = jax.jit(lambda k: pjrl_envs.rollout(env, policy, k, 5, record=record))(jax.random.PRNGKey(0))
    page = tmp_path / "sub" / "episode.html"
    env.render(states, page)
    system = json.loads(zlib.decompress(base64.b64decode(
        re.search(r'var system = "([^"]+)"', page.read_text()).group(1))))
    assert system["link_names"] == ["cart", "pole"]
    poses = system["states"]["x"]
    assert len(poses) == 5  # one per state: the cart moves, then restarts after 3 steps
    assert poses[0]["pos"] != poses[1]["pos"] and poses[3]["pos"] == poses[0]["pos"]


def test_max_episode_steps_counts_agent_steps():
    assert pjrl_envs.make("brax:fast", episode_length=10, action_repeat=3).max_episode_steps == 4
