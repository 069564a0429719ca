"""What every adapter library shares, as tables with a row per case: bad options and names refused in one
line naming what is allowed, and PPO learning one env of each library (slow).

Each library's own semantics are in tests/test_adapters_<library>.py; conformance (`check_env`) is in
tests/test_conformance.py. A row whose library is not installed is skipped.
"""
from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import pytest

import pjrl_envs

MODULES = {"brax": "brax", "craftax": "craftax", "jumanji": "jumanji", "navix": "navix", "pgx": "pgx",
           "playground": "mujoco_playground", "xminigrid": "xminigrid"}
"""library name in env ids -> the module it needs"""


def _needs(env_id: str) -> None:
    pytest.importorskip(MODULES[env_id.partition(":")[0]])


# ---------------------------------------------------------------- bad options and names


def _bad(env_id: str, options: dict, match: str | None, error: type = pjrl_envs.OptionError, **make):
    """A row: `make(env_id, **make, **options)` raises `error` with a message that `match` finds."""
    shown = ",".join(f"{k}={v!r}" for k, v in options.items()) or "name"
    return pytest.param(env_id, {**make, **options}, error, match, id=f"{env_id}-{shown}")


_UnknownEnv = pjrl_envs.UnknownEnvError
CRAFTAX = "craftax:Craftax-Classic-Symbolic-v1"
NAVIX = "navix:Navix-Empty-5x5-v0"
PLAYGROUND = "playground:CartpoleBalance"
XMINIGRID = "xminigrid:MiniGrid-Empty-5x5"

BAD = [
    _bad("brax:ant", dict(backend="nope"), "generalized, positional, spring, mjx"),
    _bad("brax:ant", dict(auto_reset="sometimes"), "cached, fresh"),
    _bad("brax:ant", dict(ctrl_cost=1.0), "ctrl_cost_weight"),
    _bad("brax:half_cheetah", {}, "brax:halfcheetah", _UnknownEnv),
    # craftax: messages matched as written (re.escape)
    *[_bad(CRAFTAX, options, re.escape(message), num_envs=1) for options, message in [
        (dict(max_timestep=5), "has no option max_timestep; allowed: max_timesteps"),
        (dict(max_timesteps=0), "max_timesteps=0 must be between 1"),
        (dict(max_timesteps=2.5), "must be a whole number"),
        (dict(max_timesteps=float("inf")), "must be a finite number"),
        (dict(day_length=float("nan")), "must be a finite number"),
        (dict(max_timesteps=True), "must be a finite number"),
        (dict(spawn_cow_chance=1.5), "must be a probability"),
        (dict(always_diamond=1), "must be True or False"),
        (dict(fractal_noise_angles=(None,)), "must be a tuple of 4 entries"),
    ]],
    _bad("jumanji:Snake-v1", dict(rows=5), "num_rows"),
    _bad("jumanji:Snake-v2", {}, "jumanji:Snake-v1", _UnknownEnv),
    _bad(NAVIX, dict(observation_fn="pixels"), "symbolic, symbolic_first_person, categorical"),
    _bad(NAVIX, dict(action_set="minimal"), "minigrid, complete"),
    _bad(NAVIX, dict(max_steps=0), "max_steps=0 must be a whole number >= 1"),
    _bad(NAVIX, dict(max_steps=2.5), "max_steps=2.5"),
    _bad(NAVIX, dict(penality_coeff=-1), "penality_coeff=-1"),
    _bad(NAVIX, dict(max_step=10),
         "has no option max_step; allowed: max_steps, observation_fn, action_set, penality_coeff"),
    _bad("navix:Navix-Empty-7x7-v0", {}, None, _UnknownEnv),
    _bad("pgx:tic_tac_toe", dict(opponent="greedy"), "'random'"),
    _bad("pgx:tic_tac_toe", dict(oponent="random"), "opponent, opponent_params, max_episode_steps"),
    _bad("pgx:tictactoe", {}, "pgx:tic_tac_toe", _UnknownEnv),
    _bad(PLAYGROUND, dict(impl="cuda"), r"impl='cuda' is not an MJX pipeline; allowed: jax, warp$"),
    _bad(PLAYGROUND, dict(auto_reset="sometimes"), "allowed: cached, fresh$"),
    _bad(PLAYGROUND, dict(frame_skip=2),
         r"has no option frame_skip; allowed: impl, episode_length, action_repeat, auto_reset, ctrl_dt"),
    _bad(PLAYGROUND, dict(vision_config={}), "has no option vision_config"),
    *[_bad(PLAYGROUND, bad, "must be a whole number >= 1")
      for bad in (dict(episode_length=0), dict(action_repeat=1.5), dict(episode_length=True))],
    _bad(PLAYGROUND, dict(vision=True), "vision=True is not supported"),
    _bad(PLAYGROUND, dict(ctrl_dt="fast"), r"option ctrl_dt='fast' does not fit"),
    _bad("playground:CartPoleBalance", {}, PLAYGROUND, _UnknownEnv),
    _bad(XMINIGRID, {"height": 7}, "has no option height; allowed: max_steps, view_size"),
    _bad(XMINIGRID, {"max_steps": 0}, "max_steps=0 must be at least 1"),
    _bad(XMINIGRID, {"max_steps": 2.5}, "max_steps=2.5 must be a whole number"),
    _bad(XMINIGRID, {"max_steps": "10"}, "must be a whole number"),
    _bad(XMINIGRID, {"view_size": 4}, "view_size=4 must be odd and at least 3"),
    _bad(XMINIGRID, {"view_size": 1}, "must be odd and at least 3"),
]


@pytest.mark.parametrize("env_id, options, error, match", BAD)
def test_bad_options_and_names_are_one_line_errors(env_id, options, error, match):
    _needs(env_id)
    with pytest.raises(error, match=match) as info:
        pjrl_envs.make(env_id, **options)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- PPO learns one env of each library


@dataclasses.dataclass(frozen=True)
class Learns:
    """PPO with the env's default settings on one seed (key 0): the mean episode return of the last
    `last` updates must be `final`, beyond what a random policy scores (`random`)."""

    env_id: str
    total_timesteps: int | None
    """None: the env's default budget"""
    last: int
    final: tuple[Callable[[float, float], bool], float]
    """(operator.gt or operator.ge, bound)"""
    random: str
    """what a random (or the untrained) policy scores, and how that was measured"""
    first: tuple[int, float] | None = None
    """(n, bound): the mean return of the first n updates (ignoring updates where none ended) is below it"""
    then: Callable[[Any, Any, Any], None] | None = None
    """more checks on the trained (config, env, train state)"""


def _plays_no_illegal_move(config, env, state):
    """The trained policy, sampled with its mask, over 4096 decisions: no illegal move, and it still wins."""
    from pjrl_agents.algorithms import ppo
    agent = ppo.PPO(config, env)

    @jax.jit
    def evaluate(params, key):
        env_state, ts = env.reset(key)

        def body(carry, k):
            env_state, ts = carry
            act_key, step_key = jax.random.split(k)
            action = agent.act(params, ts.obs, ts.action_mask, act_key)
            env_state, ts = env.step(env_state, action, step_key)
            return (env_state, ts), (ts.info["illegal_action"], ts.reward, ts.terminated)

        _, (illegal, reward, ended) = jax.lax.scan(body, (env_state, ts), jax.random.split(key, 64))
        return illegal.sum(), reward.sum() / ended.sum()

    illegal, mean_return = evaluate(state.params, jax.random.PRNGKey(1))
    assert int(illegal) == 0
    assert float(mean_return) >= 0.8, float(mean_return)


LEARNS = [
    Learns("brax:inverted_double_pendulum", 120_000, last=5, final=(operator.gt, 600), first=(1, 300),
           random="the untrained (near-random) policy balances ~15 steps for a return of ~130"),
    Learns("craftax:Craftax-Classic-Symbolic-v1", 100_000, last=5, final=(operator.gt, 2.5),
           random="1.49 (+-0.04 standard error over 1024 episodes): ~2.4 achievements, then death"),
    Learns("jumanji:Game2048-v1", 100_000, last=10, final=(operator.gt, 2200),
           random="uniformly random legal moves score ~1100 a game (500 games); PPO ~3600 at 100k steps"),
    Learns("navix:Navix-Empty-5x5-v0", 60_000, last=10, final=(operator.ge, 0.9),
           random="reaches the goal within the 100 steps in 41% of episodes (return 0.41); PPO ~0.99"),
    Learns("pgx:tic_tac_toe", 300_000, last=10, final=(operator.ge, 0.8), then=_plays_no_illegal_move,
           random="about 0.3 against the random opponent (win 1, draw 0, loss -1)"),
    Learns("playground:CartpoleBalance", None, last=5, final=(operator.gt, 850), first=(20, 600),  # 500k steps
           random="~350 over the 1000 steps; holding the cart still ~700"),
    Learns("xminigrid:MiniGrid-Empty-6x6", 100_000, last=10, final=(operator.gt, 0.8),
           random="0.18 (38% of episodes reach the goal in 144 steps); the best ~0.956"),
]


@pytest.mark.slow
@pytest.mark.parametrize("case", LEARNS, ids=lambda case: case.env_id)
def test_ppo_learns(case):
    _needs(case.env_id)
    from pjrl_agents.algorithms import ppo
    budget = {} if case.total_timesteps is None else {"total_timesteps": case.total_timesteps}
    config = ppo.default_config(case.env_id, **budget)
    env = pjrl_envs.make(case.env_id, num_envs=config.num_envs)
    state, metrics = jax.jit(ppo.make_train(config, env))(jax.random.PRNGKey(0))
    returns = np.asarray(metrics["episode_return"])
    final = float(np.mean(returns[-case.last:]))
    compare, bound = case.final
    assert compare(final, bound), (case.env_id, final, f"a random policy: {case.random}")
    if case.first:
        n, below = case.first
        first = float(np.nanmean(returns[:n]))
        assert first < below, (case.env_id, first)
    if case.then:
        case.then(config, env, state)
