"""`pjrl plot RUN...`: learning curves of runs to an image, smoothed, IQM over seeds with a CI band."""
from __future__ import annotations

import dataclasses

from pjrl_agents.cli import flags
from pjrl_agents.config import ConfigError


@dataclasses.dataclass
class PlotOptions:
    """What `pjrl plot` draws (`pjrl_agents.analysis.plot.plot` checks each value)."""

    run_dirs: list = dataclasses.field(default_factory=list, metadata={"positional": True})
    """run directories"""
    out: str = "curves.png"
    """the image to write"""
    metric: str = "episode_return"
    """logged metrics, comma-separated, one panel each; greedy_return and stochastic_return are the
    --eval-every evaluations"""
    smooth: float = 0.6
    """exponential moving average weight, as TensorBoard's; 0: none"""
    aggregate: str = "iqm"
    """the curve over seeds: iqm (interquartile mean) or mean"""
    confidence: float = 0.95
    """the band's bootstrap confidence"""


def run(args) -> int:
    from pjrl_agents.analysis.plot import plot
    o = PlotOptions(**flags.read_fields(args, PlotOptions))
    try:
        print(plot(o.run_dirs, o.out, o.metric, o.smooth, o.aggregate, o.confidence))
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(str(e)) from None
    return 0


def register(sub) -> None:
    p = sub.add_parser("plot", help="learning curves of runs to a PNG: smoothed, IQM over seeds with a CI band")
    flags.add_fields(p, PlotOptions)
    p.set_defaults(func=run)
