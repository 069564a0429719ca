"""`pjrl envs` and `pjrl algos`: the names `--env` and `--algo` take, one a line."""
from __future__ import annotations

import dataclasses

from pjrl_agents.cli import flags


@dataclasses.dataclass
class EnvsOptions:
    """Which envs `pjrl envs` lists."""

    library: str | None = None
    """only this library's envs (none given: every library's)"""


def envs(args) -> int:
    import pjrl_envs
    for name in pjrl_envs.list_envs(EnvsOptions(**flags.read_fields(args, EnvsOptions)).library):
        print(name)
    return 0


def algos(args) -> int:
    from pjrl_agents import algorithms
    for name in algorithms.names():
        print(name)
    return 0


def register(sub) -> None:
    e = sub.add_parser("envs", help="list env names, one LIB:NAME a line")
    flags.add_fields(e, EnvsOptions)
    e.set_defaults(func=envs)
    a = sub.add_parser("algos", help="list algorithm names, one a line")
    a.set_defaults(func=algos)
