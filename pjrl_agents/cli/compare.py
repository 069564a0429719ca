"""`pjrl compare RUN...`: runs side by side, mean, median, IQM and optimality gap over seeds with bootstrap CIs."""
from __future__ import annotations

import dataclasses

from pjrl_agents.cli import flags
from pjrl_agents.config import ConfigError


@dataclasses.dataclass
class CompareOptions:
    """What `pjrl compare` compares and how (`pjrl_agents.analysis.compare.compare` checks each value)."""

    run_dirs: list = dataclasses.field(default_factory=list, metadata={"positional": True})
    """run directories"""
    by: str = "member"
    """one row per sweep member of each run (member), per run, per algorithm (algo) or per env"""
    score: str = "greedy"
    """each seed's score: the greedy or sampled (stochastic) policy's evaluation (eval.json, else the greedy
    evaluation at the end of training), or the training return (train)"""
    reference: list = dataclasses.field(default_factory=list, metadata={"metavar": "ENV=RANDOM,TARGET"})
    """an env's random and target scores: normalise it, and give its optimality gap"""
    reps: int = 2000
    """bootstrap resamples"""
    confidence: float = 0.95
    """confidence of the intervals"""
    seed: int = 0
    """seed of the bootstrap"""
    markdown: bool = False
    """print a Markdown table"""
    plot: str | None = dataclasses.field(default=None, metadata={"metavar": "PNG"})
    """also draw IQM with CIs and performance profiles to this image"""


def run(args) -> int:
    from pjrl_agents.analysis import compare
    o = CompareOptions(**flags.read_fields(args, CompareOptions))
    references = compare.parse_references(o.reference)
    if o.plot:
        _check_image(o.plot)  # before the bootstrap, which takes a while
    groups = compare.compare(o.run_dirs, o.by, o.score, references, o.reps, o.confidence, o.seed)
    print(compare.table(groups, o.confidence, markdown=o.markdown))
    sources = sorted({s for g in groups for s in g.sources})
    print(f"\nscores: {'; '.join(sources)}; {o.confidence * 100:g}% stratified-bootstrap CIs over seeds "
          f"({o.reps} resamples); median: over envs of each env's mean (one env: the mean)"
          + ("; optimality gap: below the target, in units of target - random"
             if any("optimality_gap" in g.estimates for g in groups) else ""))
    if o.plot:
        print(compare.plot(groups, o.plot, o.confidence, o.reps, o.seed))
    return 0


def _check_image(path: str) -> None:
    """ConfigError naming --plot where matplotlib cannot write `path`'s format."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pjrl_agents.analysis.plot import check_suffix
    try:
        check_suffix(plt.figure(), path, "--plot")
    except ValueError as e:
        raise ConfigError(str(e)) from None


def register(sub) -> None:
    p = sub.add_parser("compare", help="runs side by side: mean, median, IQM and optimality gap over seeds, "
                                       "with bootstrap confidence intervals")
    flags.add_fields(p, CompareOptions)
    p.set_defaults(func=run)
