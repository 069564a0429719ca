"""The `pjrl` command line: `train`, `tune`, `evolve`, `eval`, `compare`, `plot`, `envs`, `algos`.

One module per subcommand, each with `register(subparsers)`; every flag is
generated from a dataclass's fields (`pjrl_agents.cli.flags`): the run's
(`RunSpec`), the chosen algorithm's config, `PBT`, `EvolveSpec` and each
command's own options (`EvalOptions`, `PlotOptions`, ...), each flag's help its
field's docstring, its default the field's. A setting is declared once, in its
dataclass. Whatever a command raises is reported by the one map in `_errors`:
one line, and an exit code.
"""
from __future__ import annotations

import sys
import typing

from pjrl_agents.cli import compare, evolve, flags, listing, plot, train
from pjrl_agents.cli import eval as evaluation
from pjrl_agents.cli.train import parse_train

__all__ = ["build_parser", "main", "parse_train"]

COMMANDS = (train, evolve, evaluation, compare, plot, listing)
"""the subcommands' modules, in the order `pjrl --help` lists them"""


def build_parser() -> tuple[flags.Parser, dict[str, typing.Callable[[typing.Sequence[str]], int]]]:
    """`(parser, own)`: the parser of every subcommand, and the commands that parse their own arguments."""
    p = flags.Parser(prog="pjrl", description="End-to-end JAX RL on any supported env library.")
    sub = p.add_subparsers(dest="command", parser_class=flags.Parser)
    own: dict[str, typing.Callable[[typing.Sequence[str]], int]] = {}
    for module in COMMANDS:
        own.update(module.register(sub) or {})
    return p, own


def _errors() -> tuple[tuple[tuple[type, ...], int, str], ...]:
    """The one map from what a command raises to `(types, exit code, prefix of its one line)`."""
    from pjrl_agents.config import ConfigError
    from pjrl_agents.run.checkpoint import CheckpointError
    from pjrl_agents.run.runner import DiskFull, Diverged
    from pjrl_envs import MissingLibraryError, OptionError, RenderError, UnknownEnvError
    return (((ConfigError, UnknownEnvError, MissingLibraryError, CheckpointError, OptionError, RenderError), 2,
             "pjrl: error: "),
            ((Diverged, DiskFull), 1, "pjrl: "))  # the run stopped itself and said why; its files are kept


def main(argv: typing.Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("--") and argv[0] not in ("-h", "--help")):
        argv = ["train", *argv]
    try:
        parser, own = build_parser()
        if argv[0] in own:
            return own[argv[0]](argv[1:])
        args = parser.parse_args(argv)
        return args.func(args)
    except KeyboardInterrupt as e:
        print(f"pjrl: interrupted{': ' + str(e) if str(e) else ''}", file=sys.stderr)
        return 128 + int(getattr(e, "signum", 2))
    except SystemExit as e:  # argparse: --help (0) or a bad flag (2), already reported
        return e.code if isinstance(e.code, int) else 2
    except Exception as e:
        for types, code, prefix in _errors():
            if isinstance(e, types):
                print(f"{prefix}{e}", file=sys.stderr)
                return code
        raise
