"""The algorithm contract: what a module provides so `pjrl train --algo NAME` can run it, and what the run
machinery reads of the agent it builds.

An algorithm is an `Algorithm` record published under the entry-point group
`pjrl.algorithms` (as adapters are under `pjrl.adapters`), so a separate
package adds one with two lines of its `pyproject.toml`:

    [project.entry-points."pjrl.algorithms"]
    myppo = "my_package.myppo:ALGORITHM"

(or `pjrl_agents.algorithms.register(ALGORITHM)` in-process). The record holds
its config class and three functions; `make_agent` builds an `Agent`, whose pure
functions the runner scans. Everything the run machinery reads of an agent, its
state and its metrics is declared here; `check_agent`, `check_state` and
`check_metrics` refuse one that breaks the contract, in one line naming what is
missing, before anything compiles.
"""
from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from typing import Any, Protocol

import jax

from pjrl_agents.config import ConfigError
from pjrl_envs import wrappers
from pjrl_envs.core import VecEnv
from pjrl_envs.registry import entry_points

ENTRY_POINT_GROUP = "pjrl.algorithms"

STATE_FIELDS = ("params", "env_state", "update", "config")
"""the fields of an agent's state the run machinery reads (see `AgentState`)"""

EPISODE_METRICS = ("episode_return", "episode_length", "episodes")
"""metrics every update reports, which may be NaN in a healthy run (no episode has ended yet); every
other metric must be finite from update 1, or the run counts as diverged"""


class ContractError(ConfigError):
    """An algorithm's agent, state or metrics break the contract; the message names what is missing."""


class AgentState(Protocol):
    """What the run machinery reads of one seed's training state: a NamedTuple with at least these fields.

    The runner, the evaluator, `pjrl eval` and `load_policy` read `params` and `env_state`; the runner
    writes `update` and `config` (below); population-based training copies the fields the agent
    declares in `Agent.learned`, and the config. Any other field is the agent's own.

    The members are read-only properties so that a NamedTuple (whose fields are read-only) satisfies
    the protocol; a new state comes from `_replace`.
    """

    @property
    def params(self) -> Any:
        """what `Agent.act` takes: the policy's parameters (an agent with a critic of its own keeps it in
        another field and lists that field in `Agent.learned`)"""

    @property
    def env_state(self) -> Any:
        """the state of `Agent.env`, the wrapped env (its episode statistics and normaliser statistics)"""

    @property
    def update(self) -> jax.Array:
        """`()` int32, updates done. Before each update the runner sets it to the update's index, which
        every run shares, so that it stays unbatched under `vmap`: derive step counters from it"""

    @property
    def config(self) -> Any:
        """the config the agent trains with; numeric leaves may be traced (sweeps, PBT). Where every run has
        the same config the runner passes it as constants for the update and puts the state's own back"""

    @property
    def _replace(self) -> Callable[..., AgentState]:
        """`NamedTuple._replace`: the state with the given fields replaced (typed as a callable attribute:
        each NamedTuple's `_replace` takes its own field names, which `**fields: Any` would not match)"""


@dataclasses.dataclass(frozen=True)
class Hints:
    """Facts about where the program will run, which the run layer passes to `make_agent`: an agent never
    reads the run machinery itself. Each hint changes how fast a program runs, never what it computes."""

    kernels_side_by_side: bool = False
    """XLA runs independent kernels of a program side by side (a CPU with the concurrency-optimised
    scheduler on): work that could wait may instead run beside other work (DQN values its targets inside
    each gradient step)"""


class Agent:
    """One seed's training as pure functions; `jit`, `scan` and `vmap` over seeds apply to each.

    Subclass it: the run machinery reads the attributes below and nothing else, and the declared
    abilities take their defaults from here.
    """

    env: VecEnv
    """the env as the agent steps it, its wrappers included; `pjrl_envs.wrappers.EpisodeStatistics` must be
    among them (`algorithms.shared.wrap_env` adds it): evaluation counts the episodes it ends"""
    num_updates: int
    """updates in the whole run"""
    steps_per_update: int
    """env steps one update takes on this agent's env (one device's share when envs are split)"""

    recurrent: bool = False
    """the policy has memory: `initial_memory(num_envs)` gives it at an episode start, `act` takes it
    and returns `(action, memory)`, and whoever steps the agent zeroes an env's memory where its
    episode ends (`pjrl_envs.rollout(..., memory=)` does)"""
    holds_keys: bool = False
    """a compile hint: a program of one unbatched run lowers faster with each Threefry hash in a kernel of
    its own (`pjrl_envs.prng.held()`; DQN, whose update derives many keys)"""
    learned: tuple[str, ...] = ("params", "opt_state")
    """the state fields that hold what training learned (parameters, target parameters, optimiser states,
    a learned temperature ...): population-based training copies them, and the config, from a parent;
    the envs, keys and counters stay the child's own"""

    def init(self, key: jax.Array, config: Any = None) -> AgentState:
        """The training state of one seed; `config` may carry traced numbers (sweeps)."""
        raise NotImplementedError

    def update(self, state: Any) -> tuple[Any, dict[str, jax.Array]]:
        """One update: the new state and a dict of scalar metrics, the same names every update.

        `EPISODE_METRICS` are among them; every other metric must be finite from update 1
        (report 0 before learning starts, not NaN), or the run counts as diverged.
        """
        raise NotImplementedError

    def act(self, params: Any, obs: Any, mask: jax.Array, key: jax.Array | None = None, memory: Any = None) -> Any:
        """Actions for a batch of observations: sampled with `key`, the greedy ones without
        (`(action, memory)` for a `recurrent` agent)."""
        raise NotImplementedError

    def initial_memory(self, num_envs: int) -> Any:
        """The memory of `num_envs` envs at an episode start (a `recurrent` agent); None without memory."""
        return None


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """An algorithm as the runner, the CLI and the evaluator see it."""

    name: str
    config_class: type
    """a `flax.struct.dataclass`: numbers are traced (sweepable) leaves, sizes static fields,
    each field documented by the string literal under it (the CLI shows it in --help). It has
    `num_envs` and `total_timesteps` (the device plan divides both when one seed's envs are split)"""
    default_config: Callable[..., Any]
    """`(env_name=None, **settings) -> config`: the env's own defaults, then `settings`"""
    validate: Callable[[Any, VecEnv | None], None]
    """raises ConfigError naming the field and what would work, before anything compiles; with env
    None it checks what it can without one"""
    make_agent: Callable[..., Agent]
    """`(config, env, axis_name=None, hints=Hints()) -> Agent`"""
    splits_envs: bool = False
    """whether `make_agent` takes a mesh `axis_name`, so that one seed's envs can be split over
    devices (gradients and statistics averaged over the axis)"""
    env_defaults: dict = dataclasses.field(default_factory=dict)
    """`{env name: {setting: value}}`, shown as the defaults in `pjrl train --env NAME --help`"""
    ranges: dict = dataclasses.field(default_factory=dict)
    """`{setting: Interval}` (`config.intervals({"lr": "(0, inf)"})`): where each traced number must lie
    (population-based training keeps perturbed settings inside)"""
    concurrent_runs: int | None = None
    """runs a CPU device holds from which XLA:CPU's concurrency-optimised scheduler runs this algorithm's
    program faster; None: the run layer's default (`run.xla_cpu.CONCURRENT_RUNS`)"""


def check_agent(agent: Any, algorithm: str) -> None:
    """Refuses an agent that is not an `Agent`, or whose env does not record episode statistics."""
    if not isinstance(agent, Agent):
        raise ContractError(f"algorithm {algorithm!r}: make_agent returned a {type(agent).__name__}, not a "
                            "pjrl_agents.algorithms.Agent; subclass Agent (it declares what the runner reads)")
    env = agent.env
    while isinstance(env, wrappers.VecEnvWrapper) and not isinstance(env, wrappers.EpisodeStatistics):
        env = env.env
    if not isinstance(env, wrappers.EpisodeStatistics):
        raise ContractError(f"algorithm {algorithm!r}: its agent's env records no episode statistics; wrap "
                            "it in pjrl_envs.wrappers.EpisodeStatistics (algorithms.shared.wrap_env does)")
    for name in ("num_updates", "steps_per_update"):
        value = getattr(agent, name, None)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ContractError(f"algorithm {algorithm!r}: its agent's {name} is {value!r}; it must be a whole "
                                "number >= 1")


def check_state(state: Any, agent: Agent, algorithm: str) -> None:
    """Refuses a state (or its shapes) that lacks a field the run machinery reads or the agent declares learned."""
    fields = getattr(type(state), "_fields", None)
    if fields is None:
        raise ContractError(f"algorithm {algorithm!r}: its state is a {type(state).__name__}, not a NamedTuple "
                            f"with fields {', '.join(STATE_FIELDS)}")
    missing = [f for f in (*STATE_FIELDS, *agent.learned) if f not in fields]
    if missing:
        raise ContractError(f"algorithm {algorithm!r}: its state {type(state).__name__} has no field "
                            f"{', '.join(missing)} (the runner reads {', '.join(STATE_FIELDS)} and copies the "
                            f"learned fields {', '.join(agent.learned)} under population-based training)")


def check_metrics(metrics: Any, algorithm: str) -> None:
    """Refuses metrics that are not a dict of scalars holding `EPISODE_METRICS`."""
    if not isinstance(metrics, dict):
        raise ContractError(f"algorithm {algorithm!r}: update returned metrics as a {type(metrics).__name__}, "
                            "not a dict of scalars")
    missing = [k for k in EPISODE_METRICS if k not in metrics]
    if missing:
        raise ContractError(f"algorithm {algorithm!r}: its metrics lack {', '.join(missing)} "
                            "(algorithms.shared.update_metrics makes them)")
    shaped = sorted(k for k, v in metrics.items() if getattr(v, "shape", ()) != ())
    if shaped:
        raise ContractError(f"algorithm {algorithm!r}: metrics {', '.join(shaped)} are not scalars; "
                            "reduce each to one number per update")


_registered: dict[str, Algorithm] = {}


def register(algorithm: Algorithm) -> None:
    """Adds an algorithm for this process (entry points do it for installed packages)."""
    _registered[algorithm.name] = algorithm


def names() -> list[str]:
    """Every algorithm name known, from entry points and `register`."""
    return sorted(set(entry_points(ENTRY_POINT_GROUP)) | set(_registered))


def get(name: str) -> Algorithm:
    """The algorithm published as `name`; ConfigError naming the known ones otherwise."""
    if name not in _registered:
        eps = entry_points(ENTRY_POINT_GROUP)
        if name not in eps:
            close = difflib.get_close_matches(name, names(), n=2, cutoff=0.5)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise ConfigError(f"unknown algorithm {name!r}{hint}; choose one of {', '.join(names())}")
        algorithm = eps[name].load()
        if not isinstance(algorithm, Algorithm):
            raise ConfigError(f"entry point {name!r} of {ENTRY_POINT_GROUP} is {type(algorithm).__name__}, "
                              "not a pjrl_agents.algorithms.contract.Algorithm")
        _registered[name] = algorithm
    return _registered[name]
