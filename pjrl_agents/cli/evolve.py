"""`pjrl evolve`: discover a policy objective (LPO) by evolving it over whole training runs; every flag is a
field of `pjrl_agents.search.evolve.EvolveSpec`, or of the options below."""
from __future__ import annotations

import dataclasses
import json

from pjrl_agents.cli import flags
from pjrl_agents.cli.train import SessionOptions
from pjrl_agents.config import ConfigError


@dataclasses.dataclass
class EvolveOptions:
    """Where a new search goes."""

    out: str | None = dataclasses.field(default=None, metadata={"metavar": "DIR"})
    """where the search goes (default: runs/ENV-evolve-TIME)"""


def run(args) -> int:
    from pjrl_agents.run.runner import default_out
    from pjrl_agents.search import evolve
    session = SessionOptions(**flags.read_fields(args, SessionOptions))
    progress = None if session.quiet else print
    given = flags.read_fields(args, evolve.EvolveSpec)
    out = EvolveOptions(**flags.read_fields(args, EvolveOptions)).out
    if session.resume:
        if given or out:
            names = [flags.flag_for(evolve.EvolveSpec, n) for n in given] + (["--out"] if out else [])
            raise ConfigError(f"--resume continues a search as it was asked for (DIR/evolve.json); drop "
                              f"{' '.join(names)}")
        summary = evolve.evolve(None, session.resume, resume=True, progress=progress)
    else:
        options = {k: flags.scalar(v) for k, v in given.pop("env_options", [])}
        spec = evolve.EvolveSpec(**given, env_options=options)
        summary = evolve.evolve(spec, out or str(default_out(spec.env, "evolve")), progress=progress)
    print(json.dumps(summary))
    return 0


def register(sub) -> None:
    from pjrl_agents.search.evolve import EvolveSpec
    p = sub.add_parser("evolve", help="discover a policy objective (LPO) by evolving it over whole training runs")
    flags.add_fields(p, EvolveSpec)
    flags.add_fields(p, EvolveOptions)
    flags.add_fields(p, SessionOptions)
    p.set_defaults(func=run)
