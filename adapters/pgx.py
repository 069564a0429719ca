"""Pgx games as `pgx:<id>`; games for two or more players become single-agent envs.

    env = pjrl_envs.make("pgx:tic_tac_toe", num_envs=64)                  # vs a random opponent
    env = pjrl_envs.make("pgx:go_9x9", opponent=policy, opponent_params=params)

One-player games (2048, MinAtar) are stepped as they are. In a game for several
players the learner takes one seat, drawn anew each episode; every other seat
is played by the opponent inside `step` (a `lax.while_loop` that runs until it
is the learner's turn again or the game is over), so each `TimeStep` is a
decision point of the learner. The reward is the learner's, summed over its
move and the opponents' replies (win 1, draw 0, loss -1 in the board games).
The legal-action mask is `action_mask`; an illegal move by the learner loses
at once (pgx's rule) and sets `info["illegal_action"]`.

Options:
- `opponent`: `"random"` (uniform over legal moves, the default) or a function
  `(params, obs, mask, key) -> action` for ONE env (no batch axis; the adapter
  vmaps it), e.g. a frozen copy of the learner's policy.
- `opponent_params`: the `params` handed to that function, fixed when the env
  is made.
- `max_episode_steps`: a time limit in learner decisions, reported as
  truncation (pgx games end by their own rules; MinAtar games may not).

Pgx's pretrained baseline opponents download their weights; the adapter never
fetches anything, but one loaded by the user is just another `opponent`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from pjrl_envs import spaces, wrappers
from pjrl_envs.core import Env
from pjrl_envs.registry import Adapter, OptionError, check_options, require
from pjrl_envs.types import TimeStep

REQUIRES = "pgx==2.6.0"
OPPONENTS = ("random",)


def _pgx():
    return require("pgx", REQUIRES)


@struct.dataclass
class PgxEnvState:
    game: Any  # pgx State, at a decision point of the learner (or over)
    learner: jax.Array  # () int32, the learner's seat this episode


def _obs_space(x) -> spaces.Box:
    if x.dtype == jnp.bool_:
        return spaces.Box(0, 1, x.shape, jnp.bool_)
    return spaces.Box(-float("inf"), float("inf"), x.shape, x.dtype)


class PgxEnv(Env):
    """One pgx game under the pjrl protocol, from one learner's seat."""

    def __init__(self, env_id: str, opponent: str | Callable = "random", opponent_params: Any = None):
        pgx = _pgx()
        if not (callable(opponent) or opponent in OPPONENTS):
            raise OptionError(f"pgx:{env_id}: opponent={opponent!r}; allowed: {', '.join(map(repr, OPPONENTS))} "
                              "or a function (params, obs, mask, key) -> action")
        self.env_id = env_id
        self.name = f"pgx:{env_id}"
        self.game = pgx.make(env_id)
        self.num_players = int(self.game.num_players)
        self.opponent = opponent
        self.opponent_params = opponent_params
        self.action_space = spaces.Discrete(int(self.game.num_actions), jnp.int32)
        shape = jax.eval_shape(self.game.init, jax.random.PRNGKey(0))
        self.observation_space = _obs_space(shape.observation)

    def _opponent_action(self, game, key):
        if self.opponent == "random":
            return self.action_space.sample(key, game.legal_action_mask)
        return jnp.asarray(self.opponent(self.opponent_params, game.observation, game.legal_action_mask, key),
                           jnp.int32)

    def _play_opponents(self, game, learner, key):
        """Opponents move until the learner's turn or the game's end. Returns `(game, learner's reward)`."""
        if self.num_players == 1:
            return game, jnp.zeros((), jnp.float32)

        def waiting(carry):
            g, _, _ = carry
            return ~(g.terminated | g.truncated) & (g.current_player != learner)

        def move(carry):
            g, reward, key = carry
            key, act_key, step_key = jax.random.split(key, 3)
            g = self.game.step(g, self._opponent_action(g, act_key), step_key)
            return g, reward + g.rewards[learner], key

        game, reward, _ = jax.lax.while_loop(waiting, move, (game, jnp.zeros((), jnp.float32), key))
        return game, reward

    def reset(self, key):
        if self.num_players == 1:  # no seat to draw, no opponent: spare the key splits
            game, learner = self.game.init(key), jnp.zeros((), jnp.int32)
        else:
            init_key, seat_key, opp_key = jax.random.split(key, 3)
            game = self.game.init(init_key)
            learner = jax.random.randint(seat_key, (), 0, self.num_players, jnp.int32)
            game, _ = self._play_opponents(game, learner, opp_key)
        false = jnp.zeros((), jnp.bool_)
        ts = TimeStep(obs=game.observation, reward=jnp.zeros((), jnp.float32), terminated=false, truncated=false,
                      final_obs=game.observation, action_mask=game.legal_action_mask,
                      info={"illegal_action": false})
        return PgxEnvState(game, learner), ts

    def step(self, state, action, key):
        step_key, opp_key = (key, key) if self.num_players == 1 else jax.random.split(key)
        action = jnp.asarray(action, jnp.int32)
        illegal = ~state.game.legal_action_mask[action]
        game = self.game.step(state.game, action, step_key)
        reward = game.rewards[state.learner]
        game, opp_reward = self._play_opponents(game, state.learner, opp_key)
        terminated = game.terminated
        truncated = game.truncated & ~terminated
        ts = TimeStep(obs=game.observation, reward=(reward + opp_reward).astype(jnp.float32),
                      terminated=terminated, truncated=truncated, final_obs=game.observation,
                      action_mask=game.legal_action_mask, info={"illegal_action": illegal})
        return state.replace(game=game), ts


def list_envs() -> list[str]:
    return list(_pgx().available_envs())


OPTIONS = ("opponent", "opponent_params", "max_episode_steps")


def make(env_id: str, num_envs: int = 1, **options):
    check_options(f"pgx:{env_id}", options, OPTIONS)
    env: Env = PgxEnv(env_id, options.get("opponent", "random"), options.get("opponent_params"))
    if options.get("max_episode_steps") is not None:
        env = wrappers.TimeLimit(env, options["max_episode_steps"])
    return env.to_vec(num_envs)


ADAPTER = Adapter(list_envs=list_envs, make=make, requires=REQUIRES)
