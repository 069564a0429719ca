"""The pgx adapter: two-player games as one learner against an opponent, time limits, options.

Conformance (`check_env`) is in tests/test_conformance.py; bad options and PPO learning in tests/test_adapters.py.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("pgx")

import pjrl_envs


def test_every_pgx_env_is_listed():
    import pgx
    assert pjrl_envs.list_envs("pgx") == [f"pgx:{n}" for n in pgx.available_envs()]


def _lowest_legal(params, obs, mask, key):
    del params, obs, key
    return jnp.argmax(mask)


def test_opponent_moves_inside_step_and_reward_is_the_learners():
    # Both sides play their lowest legal square: X takes 0, 2, 4, 6 and wins on the anti-diagonal
    # at its fourth move, so the learner wins (+1) exactly when it moves first.
    env = pjrl_envs.make("pgx:tic_tac_toe", num_envs=32, opponent=_lowest_legal)

    def play(key):
        state, ts = env.reset(key)
        first = ts.obs.reshape(32, -1).sum(-1) == 0  # empty board: the learner moves first

        def body(carry, k):
            state, ts, ret, done = carry
            state, ts = env.step(state, jnp.argmax(ts.action_mask, -1), k)
            ret = ret + jnp.where(done, 0.0, ts.reward)
            seats_ok = (state.game.current_player == state.learner) | ts.terminated
            return (state, ts, ret, done | ts.terminated), (seats_ok, ts.info["illegal_action"])

        (_, _, ret, done), (seats_ok, illegal) = jax.lax.scan(
            body, (state, ts, jnp.zeros(32), jnp.zeros(32, bool)), jax.random.split(key, 5))
        return first, ret, done, seats_ok, illegal, state.learner

    first, ret, done, seats_ok, illegal, seats = jax.jit(play)(jax.random.PRNGKey(0))
    assert done.all() and seats_ok.all() and not illegal.any()
    assert 0 < first.sum() < 32, "the learner should sometimes move first and sometimes second"
    assert set(np.unique(seats)) == {0, 1}
    np.testing.assert_array_equal(ret, np.where(first, 1.0, -1.0))


def test_illegal_move_loses_and_is_flagged():
    env = pjrl_envs.make("pgx:tic_tac_toe", num_envs=8)

    @jax.jit
    def play(key):
        k1, k2, k3 = jax.random.split(key, 3)
        state, ts = env.reset(k1)
        state, ts = env.step(state, jnp.argmax(ts.action_mask, -1), k2)
        taken = jnp.argmin(ts.action_mask, -1)  # a square already occupied
        ongoing = ~ts.terminated & ~ts.action_mask.all(-1)
        return ongoing, env.step(state, taken, k3)[1]

    ongoing, ts = play(jax.random.PRNGKey(1))
    assert ongoing.any()
    assert bool(ts.info["illegal_action"][ongoing].all())
    assert bool(ts.terminated[ongoing].all()) and bool((ts.reward[ongoing] == -1).all())


def test_time_limit_is_truncation():
    # two learner moves cannot finish a game of tic-tac-toe, so the limit truncates every one
    env = pjrl_envs.make("pgx:tic_tac_toe", num_envs=4, max_episode_steps=2)

    @jax.jit
    def play(key):
        state, ts = env.reset(key)
        flags = []
        for k in jax.random.split(key, 2):
            state, ts = env.step(state, jnp.argmax(ts.action_mask, -1), k)
            flags.append((ts.terminated, ts.truncated))
        return flags

    (term1, trunc1), (term2, trunc2) = play(jax.random.PRNGKey(0))
    assert not (term1.any() or trunc1.any() or term2.any())
    assert trunc2.all()


def test_pgx_games_draw_nothing():
    message = r"^cannot draw pgx:tic_tac_toe to \.gif; this env draws to: \(none\)$"
    with pytest.raises(pjrl_envs.RenderError, match=message):
        pjrl_envs.make("pgx:tic_tac_toe").check_render("a.gif")
