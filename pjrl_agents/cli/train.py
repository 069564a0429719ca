"""`pjrl train` and `pjrl tune`: a run's flags are generated from `RunSpec`'s fields and the chosen algorithm's
config (so they depend on `--algo` and `--env`, read first); `tune` adds the fields of `PBT` and the
strategy fields of `EvolveSpec`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import typing

from pjrl_agents.cli import flags
from pjrl_agents.config import ConfigError


@dataclasses.dataclass
class StartOptions:
    """Where a new run comes from and goes (neither is written to run.json)."""

    config: str | None = dataclasses.field(default=None, metadata={"metavar": "FILE", "read_first": True})
    """a YAML or JSON file of run fields and settings; a run's run.json repeats that run exactly"""
    out: str | None = dataclasses.field(default=None, metadata={"metavar": "DIR"})
    """run directory (default: runs/ENV-ALGO-TIME)"""


@dataclasses.dataclass
class SessionOptions:
    """How this command runs: the options `--resume` takes besides the hosts'."""

    resume: str | None = dataclasses.field(default=None, metadata={"metavar": "DIR"})
    """continue an interrupted run (or search) to its planned total, as it was asked for"""
    quiet: bool = False
    """no progress lines"""


@dataclasses.dataclass
class HostOptions:
    """Several hosts (pjrl_agents.run.processes): each process runs the same command with its own id."""

    coordinator: str | None = dataclasses.field(default=None, metadata={"metavar": "HOST:PORT"})
    """address of process 0 (or 'auto' on SLURM/Open MPI/Kubernetes)"""
    num_processes: int | None = None
    """processes in the run"""
    process_id: int | None = None
    """this process, 0 to P-1"""


@dataclasses.dataclass
class TuneOptions:
    """Which search `pjrl tune` runs."""

    method: str = dataclasses.field(default="pbt", metadata={"choices": ("pbt", "es")})
    """pbt: population-based training inside one compiled run; es: an evolution strategy over whole runs"""


PBT_FLAGS = {"every": "pbt_every"}
"""`PBT` fields whose flags are named otherwise under `pjrl tune`"""
ES_FLAGS = {"lr": "es_lr"}
"""`EvolveSpec` fields whose flags are named otherwise under `pjrl tune` (`--lr` is the algorithm's)"""

TRAIN_TEXT = ("Train an agent on a named env: every seed and sweep member in one compile.\n"
              "Precedence: the env's defaults < --config FILE < flags and --set.")
TUNE_TEXT = (
    "--method pbt: population-based training inside one compiled run. Every run (each seed of each --sweep "
    "member) is a member; every --pbt-every updates the worst --fraction copy the parameters and optimiser "
    "state of members drawn from the best and multiply each --perturb setting by one of --factors. Writes "
    "RUN/pbt.jsonl (lineage), RUN/lineage.png and RUN/best.json.\n\n"
    "--method es: an evolution strategy (evosax's OpenAI-ES) over the --perturb settings (positive ones in log "
    "space, [0, 1] ones in logit space): each generation trains --population complete runs (x --num-seeds) in "
    "one compiled call, fitness their final return; writes DIR/generations.jsonl and DIR/best.json. The run "
    "flags it cannot apply (--sweep, --chunks, checkpoints, evaluations, tracking, several hosts) are refused.\n\n"
    "pjrl train --config DIR/best.json trains the best settings found; --resume DIR continues either.")


def _strategy(field: dataclasses.Field) -> bool:
    return bool(field.metadata.get("strategy"))


# ---------------------------------------------------------------- rules the commands share


def resume_dir(argv: typing.Sequence[str]) -> str | None:
    """The directory `--resume DIR` (or `--resume=DIR`) names in `argv`; None where there is none."""
    pre = flags.Parser(add_help=False)
    flags.add_fields(pre, SessionOptions, where=lambda f: f.name == "resume")
    return pre.parse_known_args(argv)[0].resume


def start_processes(hosts: argparse.Namespace) -> None:
    """Joins a multi-process run where the flags (or JAX_* variables) ask for one, else one CPU device per
    core; before JAX starts."""
    from pjrl_agents.run import processes, xla_cpu
    if not processes.initialize(hosts.coordinator, hosts.num_processes, hosts.process_id):
        xla_cpu.use_cpu_cores()


def best_line(what: str, settings: dict, config: str) -> str:
    """The line that ends a search: the best settings found and the file `pjrl train --config` takes."""
    return f"  {what} {', '.join(f'{k}={v:.3g}' for k, v in settings.items())}; pjrl train --config {config} trains it"


def _progress(quiet: bool | None):
    return None if quiet else print


# ---------------------------------------------------------------- parsing a run


def _read_first(argv: typing.Sequence[str], prog: str) -> argparse.Namespace:
    """The flags every other flag depends on: --config, --env and --algo."""
    from pjrl_agents.run.spec import RunSpec
    pre = flags.Parser(prog=prog, add_help=False)
    first = lambda f: bool(f.metadata.get("read_first"))
    flags.add_fields(pre, RunSpec, where=first)
    flags.add_fields(pre, StartOptions, where=first)
    return pre.parse_known_args(argv)[0]


def train_parser(spec, algorithm, settings_defaults, prog: str = "pjrl train", description: str = TRAIN_TEXT,
                 extra: typing.Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.ArgumentParser:
    """Every flag of a run for this spec's env and algorithm, with the defaults they would get."""
    from pjrl_agents import algorithms
    from pjrl_agents.run.spec import RunSpec
    others = []
    for name in algorithms.names():
        if name != algorithm.name:
            try:
                others.append(flags.settings_listing(algorithms.get(name), spec.env))
            except Exception as e:  # noqa: BLE001 - one broken plug-in must not hide the help
                others.append(f"{name}: cannot list its settings ({type(e).__name__}: {e})")
    p = flags.Parser(prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter, description=description,
                     epilog="\n\n".join(others))
    run = p.add_argument_group("run")
    flags.add_fields(run, RunSpec, values=spec, where=lambda f: "options" not in f.metadata)
    flags.add_fields(run, StartOptions)
    flags.add_fields(run, SessionOptions)
    flags.add_fields(p.add_argument_group("tracking"), RunSpec, values=spec, where=lambda f: "options" in f.metadata)
    flags.add_fields(p.add_argument_group("several hosts"), HostOptions)
    if extra:
        extra(p)
    group = p.add_argument_group(f"{algorithm.name} settings (defaults for {spec.env})")
    flags.add_fields(group, algorithm.config_class, values=settings_defaults)
    return p


def parse_train(argv: typing.Sequence[str], prog: str = "pjrl train", description: str = TRAIN_TEXT,
                extra: typing.Callable[[argparse.ArgumentParser], None] | None = None):
    """`(spec, args)` for `pjrl train ARGV`: the RunSpec these flags (and --config) ask for."""
    from pjrl_agents import algorithms
    from pjrl_agents.run.spec import RunSpec, read_spec
    first = _read_first(argv, prog)
    spec = read_spec(first.config) if first.config else RunSpec()
    spec.algo = first.algo or spec.algo
    spec.env = first.env or spec.env
    algorithm = algorithms.get(spec.algo)
    defaults = algorithm.default_config(spec.env, **spec.settings)
    args = train_parser(spec, algorithm, defaults, prog, description, extra).parse_args(argv)
    _apply(spec, args, defaults)
    return spec, args


def _apply(spec, args: argparse.Namespace, defaults) -> None:
    """Puts the run flags given in `args` into `spec`, over what --config set."""
    from pjrl_agents.run.spec import RunSpec
    given = flags.read_fields(args, RunSpec)
    fields = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults)}
    settings = {**spec.settings, **flags.read_fields(args, type(defaults))}
    for name, value in given.pop("settings", []):
        if name not in fields:
            raise ConfigError(f"--set {name}: {spec.algo} has no such setting (an option of the env's adapter goes "
                              f"in --env-option {name}=...); settings: {', '.join(sorted(fields))}")
        settings[name] = flags.convert(name, value, fields[name], "--set")
    spec.settings = settings
    spec.env_options = {**spec.env_options, **{k: flags.scalar(v) for k, v in given.pop("env_options", [])}}
    spec.sweep = list(spec.sweep) + given.pop("sweep", [])
    if given.get("wandb"):
        try:
            import wandb  # noqa: F401  only checks it is installed
        except ImportError:
            raise ConfigError("--wandb needs the wandb package: pip install wandb (or pip install 'pjrl[wandb]')") \
                from None
    for name, value in given.items():
        setattr(spec, name, value)


def _parse_resume(argv: typing.Sequence[str], prog: str, *extra: type) -> argparse.Namespace:
    """The flags `--resume` takes (its own, the hosts' and `extra`'s); ConfigError for any other."""
    p = flags.Parser(prog=prog, add_help=False)
    for cls in (SessionOptions, HostOptions, *extra):
        flags.add_fields(p, cls)
    args, rest = p.parse_known_args(argv)
    if rest:
        raise ConfigError(f"--resume continues a run as it was asked for; drop {' '.join(rest)}")
    return args


# ---------------------------------------------------------------- train


def run_train(argv: typing.Sequence[str]) -> int:
    """`pjrl train ARGV`."""
    if resume_dir(argv):
        return _resume_run(_parse_resume(argv, "pjrl train"))
    spec, args = parse_train(argv)
    return _train(spec, args)


def _resume_run(args: argparse.Namespace) -> int:
    from pjrl_agents.run import runner
    start_processes(args)
    return _report(runner.resume(args.resume, progress=_progress(args.quiet)))


def _train(spec, args: argparse.Namespace) -> int:
    from pjrl_agents.run import runner
    start_processes(args)
    return _report(runner.train(spec, out=args.out, progress=_progress(args.quiet)))


def _report(summary: dict) -> int:
    brief = {k: summary[k] for k in ("env", "algo", "total_timesteps", "num_seeds", "final_return_mean",
                                     "final_greedy_return_mean", "compile_s", "run_s", "steps_per_s", "out")
             if k in summary}
    for m in summary.get("members", []):
        greedy = m.get("final_greedy_return_mean")
        print(f"  {m['settings']}: final_return_mean {m['final_return_mean']:.2f}"
              + (f", greedy {greedy:.2f}" if greedy is not None else ""))
    if "pbt" in summary:
        best = summary["pbt"]
        print(best_line(f"pbt: best member {best['best_member']} seed {best['best_seed']} "
                        f"(score {best['best_score']:.2f}) with", best["best_settings"], f"{summary['out']}/best.json"))
    print(json.dumps(brief))
    return 0


# ---------------------------------------------------------------- tune


def _tune_groups(p: argparse.ArgumentParser) -> None:
    """`pjrl tune`'s own flags: the method, PBT's options and the evolution strategy's."""
    from pjrl_agents.search.evolve import EvolveSpec
    from pjrl_agents.search.pbt import PBT
    flags.add_fields(p.add_argument_group("tune"), TuneOptions)
    flags.add_fields(p.add_argument_group("--method pbt (--perturb: also the settings --method es searches)"), PBT,
                     rename=PBT_FLAGS)
    flags.add_fields(p.add_argument_group("--method es"), EvolveSpec, values=EvolveSpec(search="settings"),
                     rename=ES_FLAGS, where=_strategy)


def run_tune(argv: typing.Sequence[str]) -> int:
    """`pjrl tune ARGV`: a population trained with PBT, or an evolution strategy over whole runs."""
    from pjrl_agents.search.evolve import EvolveSpec
    from pjrl_agents.search.pbt import PBT
    if resume_dir(argv):
        return _resume_tune(_parse_resume(argv, "pjrl tune", TuneOptions))
    spec, args = parse_train(argv, "pjrl tune", TUNE_TEXT, _tune_groups)
    method = TuneOptions(**flags.read_fields(args, TuneOptions)).method
    pbt = flags.read_fields(args, PBT, PBT_FLAGS)
    strategy = flags.read_fields(args, EvolveSpec, ES_FLAGS, where=_strategy)
    perturb = pbt.pop("perturb", PBT().perturb)  # both methods': the settings PBT perturbs, the settings ES searches
    for other, given, rename in (("es", strategy, ES_FLAGS), ("pbt", pbt, PBT_FLAGS)):
        if given and method != other:
            cls = EvolveSpec if other == "es" else PBT
            raise ConfigError(f"{flags.flag_for(cls, next(iter(given)), rename)} is an option of --method {other}, "
                              f"not of --method {method}")
    if method == "es":
        return _tune_es(spec, args, perturb, strategy)
    spec.pbt = {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(PBT(**pbt, perturb=perturb)).items()}
    return _train(spec, args)


def _resume_tune(args: argparse.Namespace) -> int:
    if TuneOptions(**flags.read_fields(args, TuneOptions)).method == "pbt":
        return _resume_run(args)  # the run's own run.json holds its PBT options
    from pjrl_agents.search import evolve
    _refuse_hosts(args)
    return _report_search(evolve.evolve(None, args.resume, resume=True, progress=_progress(args.quiet)))


def _refuse_hosts(args: argparse.Namespace) -> None:
    hosts = flags.read_fields(args, HostOptions)
    if hosts:
        raise ConfigError(f"{flags.flag_for(HostOptions, next(iter(hosts)))}: --method es runs in one process; drop it")


def _tune_es(spec, args: argparse.Namespace, perturb: tuple, strategy: dict) -> int:
    """`pjrl tune --method es`: the same inner runs as `pjrl train` would build, searched generation by generation."""
    from pjrl_agents.run.runner import default_out
    from pjrl_agents.run.spec import RunSpec
    from pjrl_agents.search import evolve
    _refuse_hosts(args)
    search = evolve.EvolveSpec.from_run(spec, perturb, given=flags.read_fields(args, RunSpec), **strategy)
    out = args.out or str(default_out(spec.env, "es"))
    return _report_search(evolve.evolve(search, out, progress=_progress(args.quiet)))


def _report_search(summary: dict) -> int:
    if "best_settings" in summary:
        print(best_line("best:", summary["best_settings"], summary["config"]))
    print(json.dumps(summary))
    return 0


def register(sub) -> dict[str, typing.Callable[[typing.Sequence[str]], int]]:
    """Lists `train` and `tune` in `pjrl --help`; they parse their own arguments (their flags depend on
    --algo and --env), so `main` hands them the command line as it is."""
    sub.add_parser("train", help="train an agent on a named env (default: PPO on gymnax:CartPole-v1)", add_help=False)
    sub.add_parser("tune", help="search settings: population-based training in one compiled run, or an "
                                "evolution strategy over whole runs (pjrl tune --help)", add_help=False)
    return {"train": run_train, "tune": run_tune}
