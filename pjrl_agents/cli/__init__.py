"""The `pjrl` command line: `train`, `tune`, `evolve`, `eval`, `compare`, `plot`, `envs`, `algos`.

`pjrl train`'s flags are generated from the dataclasses that declare them: the
run's (`experiment.RunSpec`) and the chosen algorithm's config, each flag's
help its field's docstring, its default the value this env would get. A
setting is declared once, in its dataclass.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import json
import sys
import textwrap
import typing
from pathlib import Path

import numpy as np

from pjrl_agents.config import ConfigError, kind

RUN_FLAGS = ("env", "algo", "num_seeds", "seed", "chunks", "checkpoint_every", "eval_episodes", "eval_every",
             "tensorboard",
             "devices")
"""RunSpec fields that are flags as they are; settings, env_options, sweep and wandb have flags of their own"""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `pjrl: error: ...`, exit code 2."""

    def error(self, message: str) -> typing.NoReturn:
        print(f"pjrl: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


# ---------------------------------------------------------------- flags from dataclass fields


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """`{field: docstring}` from the string literal under each field of a dataclass (as tyro and Sphinx read them)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for stmt, after in zip(body, body[1:]):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
                docs[stmt.target.id] = " ".join(after.value.value.split())
    return docs


class _BadValue(argparse.ArgumentTypeError, ValueError):
    """A flag's value that cannot be read; argparse shows its message."""


def _integer(text: str) -> int:
    """An integer, also written as 5e6 or 1_000_000."""
    try:
        return int(text.replace("_", ""))
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            raise _BadValue(f"{text!r} is not a whole number") from None
        if not value.is_integer():
            raise _BadValue(f"{text!r} is not a whole number") from None
        return int(value)


def _integers(text: str) -> tuple:
    """`64,64` (or `64 64`) as a tuple of integers."""
    return tuple(_integer(v) for v in text.replace(",", " ").split())


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
        raise _BadValue(f"{text!r} is not true or false")
    return lowered in ("true", "1", "yes")


def _scalar(text: str):
    """An env option's value: an integer, a number, true/false or else the text itself."""
    for convert in (_integer, float, _boolean):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _converter(default) -> typing.Callable[[str], typing.Any]:
    """How to read a field's value from text, from the kind of its default."""
    if isinstance(default, bool):
        return _boolean
    if isinstance(default, tuple):
        return _integers
    if isinstance(default, int) or default is None:
        return _integer
    if isinstance(default, float):
        return float
    return str


def _convert(name: str, text: str, default, flag: str):
    try:
        return _converter(default)(text)
    except ValueError:
        raise ConfigError(f"{flag} {name}={text!r}: expected {kind(default)}") from None


def _add_field(group, name: str, default, doc: str) -> None:
    """One flag for a dataclass field, `--name-with-dashes`; unset flags read None."""
    flag = "--" + name.replace("_", "-")
    shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
    help_text = f"{doc} (default: {shown})" if doc else f"(default: {shown})"
    if isinstance(default, bool):
        group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
    else:
        metavar = "N,N" if isinstance(default, tuple) else type(default).__name__.upper() if default is not None else "N"
        group.add_argument(flag, dest=name, type=_converter(default), default=None, metavar=metavar, help=help_text)


def _settings_listing(algorithm, env_name: str) -> str:
    """Every setting of an algorithm with its default for `env_name`, as text (for --help of the others)."""
    config = algorithm.default_config(env_name)
    docs = field_docs(algorithm.config_class)
    lines = [f"{algorithm.name} settings (with --algo {algorithm.name}; defaults for {env_name}):"]
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
        lines.append(f"  --{f.name.replace('_', '-'):24s} {docs.get(f.name, '')} (default: {shown})")
    return "\n".join(lines)


# ---------------------------------------------------------------- train


def _train_parser(spec, algorithm, settings_defaults) -> argparse.ArgumentParser:
    from pjrl_agents import algorithms
    from pjrl_agents.run.spec import RunSpec
    others = []
    for name in algorithms.names():
        if name != algorithm.name:
            try:
                others.append(_settings_listing(algorithms.get(name), spec.env))
            except Exception as e:  # noqa: BLE001 - one broken plug-in must not hide the help
                others.append(f"{name}: cannot list its settings ({type(e).__name__}: {e})")
    p = _Parser(prog="pjrl train", formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Train an agent on a named env: every seed and sweep member in one compile.\n"
                            "Precedence: the env's defaults < --config FILE < flags and --set.",
                epilog="\n\n".join(others))
    run = p.add_argument_group("run")
    docs, defaults = field_docs(RunSpec), dataclasses.asdict(spec)
    for name in RUN_FLAGS:
        _add_field(run, name, defaults[name], docs.get(name, ""))
    run.add_argument("--config", metavar="FILE", help="a YAML or JSON file of run fields and settings; "
                     "a run's run.json repeats that run exactly")
    run.add_argument("--out", metavar="DIR", help="run directory (default: runs/ENV-ALGO-TIME)")
    run.add_argument("--resume", metavar="DIR", help="continue an interrupted run to its planned total")
    run.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                     help="any setting, as its flag would: --set lr=1e-3 --set hidden_sizes=128,128")
    run.add_argument("--sweep", action="append", default=[], metavar="NAME=V1,V2",
                     help=docs["sweep"] + "; several --sweep make a grid")
    run.add_argument("--env-option", action="append", default=[], metavar="NAME=VALUE",
                     help=docs["env_options"] + "; repeatable")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    track = p.add_argument_group("tracking")
    track.add_argument("--wandb", action="store_true", help="track with Weights & Biases (WANDB_MODE=offline works)")
    track.add_argument("--wandb-project", default="pjrl", help="W&B project (default: pjrl)")
    track.add_argument("--wandb-entity", default=None, help="W&B entity (default: yours)")
    track.add_argument("--wandb-group", default=None, help="W&B group")
    hosts = p.add_argument_group("several hosts (pjrl_agents.distributed)")
    hosts.add_argument("--coordinator", metavar="HOST:PORT",
                       help="address of process 0 (or 'auto' on SLURM/Open MPI/Kubernetes)")
    hosts.add_argument("--num-processes", type=int, help="processes in the run")
    hosts.add_argument("--process-id", type=int, help="this process, 0 to P-1")
    group = p.add_argument_group(f"{algorithm.name} settings (defaults for {spec.env})")
    settings_docs = field_docs(algorithm.config_class)
    for f in dataclasses.fields(settings_defaults):
        _add_field(group, f.name, getattr(settings_defaults, f.name), settings_docs.get(f.name, ""))
    return p


def _pairs(items: list[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"{flag} {item!r}: write NAME=VALUE")
        out.append((name.strip().replace("-", "_"), value))
    return out


def parse_train(argv: typing.Sequence[str]):
    """`(spec, args)` for `pjrl train ARGV`: the RunSpec these flags (and --config) ask for."""
    from pjrl_agents import algorithms
    from pjrl_agents.run.spec import RunSpec, read_spec
    pre = _Parser(prog="pjrl train", add_help=False)
    for flag in ("--config", "--algo", "--env", "--resume"):
        pre.add_argument(flag)
    first, _ = pre.parse_known_args(argv)
    spec = read_spec(first.config) if first.config else RunSpec()
    spec.algo = first.algo or spec.algo
    spec.env = first.env or spec.env
    algorithm = algorithms.get(spec.algo)
    defaults = algorithm.default_config(spec.env, **spec.settings)
    args = _train_parser(spec, algorithm, defaults).parse_args(argv)

    for name in RUN_FLAGS:
        if getattr(args, name) is not None:
            setattr(spec, name, getattr(args, name))
    fields = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults)}
    settings = dict(spec.settings)
    settings.update({name: getattr(args, name) for name in fields if getattr(args, name) is not None})
    for name, value in _pairs(args.set, "--set"):
        if name not in fields:
            raise ConfigError(f"--set {name}: {spec.algo} has no such setting (an option of the env's adapter goes "
                              f"in --env-option {name}=...); settings: {', '.join(sorted(fields))}")
        settings[name] = _convert(name, value, fields[name], "--set")
    spec.settings = settings
    spec.env_options = {**spec.env_options, **{k: _scalar(v) for k, v in _pairs(args.env_option, "--env-option")}}
    spec.sweep = list(spec.sweep) + list(args.sweep)
    if args.wandb:
        try:
            import wandb  # noqa: F401  only checks it is installed
        except ImportError:
            raise ConfigError("--wandb needs the wandb package: pip install wandb (or pip install 'pjrl[wandb]')") \
                from None
        spec.wandb = {"project": args.wandb_project, "entity": args.wandb_entity, "group": args.wandb_group}
    return spec, args


def _cmd_train(argv) -> int:
    from pjrl_agents.run import runner
    from pjrl_agents.run import processes
    from pjrl_agents.run import xla_cpu
    resuming = any(a == "--resume" or a.startswith("--resume=") for a in argv)
    if not resuming:
        spec, args = parse_train(argv)
    else:
        pre = _Parser(prog="pjrl train", add_help=False)
        pre.add_argument("--resume")
        pre.add_argument("--quiet", action="store_true")
        for flag in ("--coordinator", "--num-processes", "--process-id"):
            pre.add_argument(flag)
        args, rest = pre.parse_known_args(argv)
        if rest:
            raise ConfigError(f"--resume continues a run as it was asked for; drop {' '.join(rest)}")
        args.num_processes = None if args.num_processes is None else int(args.num_processes)
        args.process_id = None if args.process_id is None else int(args.process_id)
    if not args.resume:
        return _run_train(spec, args)
    if not processes.initialize(args.coordinator, args.num_processes, args.process_id):  # before JAX starts
        xla_cpu.use_cpu_cores()
    return _report(runner.resume(args.resume, progress=None if args.quiet else print))


def _run_train(spec, args) -> int:
    from pjrl_agents.run import runner
    from pjrl_agents.run import processes
    from pjrl_agents.run import xla_cpu
    if not processes.initialize(args.coordinator, args.num_processes, args.process_id):  # before JAX starts
        xla_cpu.use_cpu_cores()
    return _report(runner.train(spec, out=args.out, progress=None if args.quiet else print))


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
        print(f"  pbt: best member {best['best_member']} seed {best['best_seed']} (score {best['best_score']:.2f}) "
              f"with {', '.join(f'{k}={v:.3g}' for k, v in best['best_settings'].items())}; "
              f"pjrl train --config {summary['out']}/best.json trains it")
    print(json.dumps(brief))
    return 0


def _cmd_tune(argv) -> int:
    """`pjrl tune --method pbt [PBT options] [any pjrl train flag]`: train a population with PBT."""
    from pjrl_agents.search.pbt import PBT
    defaults = PBT()
    p = _Parser(prog="pjrl tune", add_help=False)
    p.add_argument("--method", choices=("pbt", "es"), default="pbt")
    own = {"es": {"generations": 10, "population": 8, "sigma": 0.3, "es_lr": 0.1},
           "pbt": {"pbt_every": defaults.every, "fraction": defaults.fraction,
                   "factors": ",".join(map(str, defaults.factors))}}
    for name, kind in (("generations", _integer), ("population", _integer), ("sigma", float), ("es_lr", float),
                       ("pbt_every", _integer), ("fraction", float), ("factors", str)):
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None)
    p.add_argument("--perturb", default=",".join(defaults.perturb))
    if any(a in ("-h", "--help") for a in argv):
        print("usage: pjrl tune [--method pbt] [--pbt-every N] [--fraction F] [--perturb A,B] [--factors X,Y] "
              "[pjrl train flags]\n\nPopulation-based training inside one compiled run: every run (each seed "
              "of each --sweep member) is a member. Every N updates (default "
              f"{defaults.every}) the worst F (default {defaults.fraction}) copy the parameters and optimiser "
              "state of members drawn from the best F and multiply each --perturb setting (default "
              f"{','.join(defaults.perturb)}) by one of --factors (default "
              f"{','.join(map(str, defaults.factors))}). Writes RUN/pbt.jsonl (lineage), RUN/lineage.png and "
              "RUN/best.json (pjrl train --config RUN/best.json trains the best member's settings).\n\n"
              "--method es [--generations G] [--population P] [--sigma S] [--es-lr L]: an evolution strategy "
              "(evosax's OpenAI-ES) over the --perturb settings (positive ones in log space, [0, 1] ones in "
              "logit space, sigma 0.3): each generation trains P complete runs (x --num-seeds) in one compiled "
              "call, fitness their final return; writes DIR/generations.jsonl and DIR/best.json; --resume DIR "
              "continues it.\n\nSee pjrl train --help for the other flags.")
        return 0
    args, rest = p.parse_known_args(argv)
    for method, options in own.items():
        for name, default in options.items():
            if getattr(args, name) is None:
                setattr(args, name, default)
            elif method != args.method:
                raise ConfigError(f"--{name.replace('_', '-')} is an option of --method {method}, not of "
                                  f"--method {args.method}")
    try:
        factors = tuple(float(v) for v in args.factors.replace(",", " ").split())
    except ValueError:
        raise ConfigError(f"--factors {args.factors!r}: give numbers, e.g. 0.8,1.25") from None
    perturb = tuple(v.strip().replace("-", "_") for v in args.perturb.split(",") if v.strip())
    if args.method == "es":
        return _tune_es(args, perturb, rest)
    if any(a == "--resume" or a.startswith("--resume=") for a in rest):
        return _cmd_train(rest)  # the run's own run.json holds its PBT options
    spec, train_args = parse_train(rest)
    spec.pbt = {"every": args.pbt_every, "fraction": args.fraction, "perturb": list(perturb),
                "factors": list(factors)}
    return _run_train(spec, train_args)


def _tune_es(args, names: tuple, rest: list) -> int:
    """`pjrl tune --method es`: an evolution strategy over traced settings, generation by generation."""
    from pjrl_agents import algorithms
    from pjrl_agents.search import evolve
    quiet = "--quiet" in rest
    resume = next((rest[i + 1] for i, a in enumerate(rest[:-1]) if a == "--resume"), None)
    if resume:
        summary = evolve.evolve(None, resume, resume=True, progress=None if quiet else print)
    else:
        spec, train_args = parse_train(rest)
        settings = dict(spec.settings)
        total = settings.pop("total_timesteps", None) or \
            algorithms.get(spec.algo).default_config(spec.env).total_timesteps
        search = evolve.EvolveSpec(env=spec.env, population=args.population, generations=args.generations,
                                   total_timesteps=total, num_seeds=spec.num_seeds, sigma=args.sigma,
                                   lr=args.es_lr, seed=spec.seed, settings=settings, algo=spec.algo,
                                   search="settings", names=list(names))
        search.check()
        from pjrl_agents.run.runner import default_out
        out = train_args.out or str(default_out(spec.env, "es"))
        summary = evolve.evolve(search, out, progress=None if quiet else print)
    if "best_settings" in summary:
        print(f"  best: {', '.join(f'{k}={v:.3g}' for k, v in summary['best_settings'].items())}; "
              f"pjrl train --config {summary['config']} trains it")
    print(json.dumps(summary))
    return 0


# ---------------------------------------------------------------- the other commands


def _cmd_envs(args) -> int:
    import pjrl_envs
    for name in pjrl_envs.list_envs(args.library):
        print(name)
    return 0


def _cmd_algos(args) -> int:
    from pjrl_agents import algorithms
    for name in algorithms.names():
        print(name)
    return 0


def _cmd_eval(args) -> int:
    from pjrl_agents.run import evaluate
    from pjrl_agents.trained import render
    from pjrl_agents.run.experiment import build
    from pjrl_agents.run.spec import read_run
    if args.episodes < 1:
        raise ConfigError(f"--episodes {args.episodes}: evaluate at least 1 episode")
    if args.seed is not None and not 0 <= args.seed <= 2**32 - 1:
        raise ConfigError(f"--seed {args.seed}: give a whole number from 0 to {2**32 - 1:,}")
    chosen = args.member is not None or args.seed_index is not None
    if chosen and not args.render:
        raise ConfigError("--member and --seed-index choose the episode --render draws; pjrl eval evaluates every "
                          "member and seed of the run without them")
    spec = read_run(args.run_dir)
    ex = build(spec, for_restore=True)
    member, seed_index = args.member or 0, args.seed_index or 0
    if args.render and not (0 <= member < len(ex.members) and 0 <= seed_index < spec.num_seeds):
        raise ConfigError(f"--member {member} --seed-index {seed_index}: the run has {len(ex.members)} "
                          f"member(s) x {spec.num_seeds} seed(s), numbered from 0")
    if args.render:
        ex.env.check_render(args.render)  # before the evaluation, which takes a while
    update, state = ex.restore(args.run_dir, warn=lambda line: print(f"pjrl: {line}", file=sys.stderr))
    rows = [ex.row(state, m, i) for m in range(len(ex.members)) for i in range(spec.num_seeds)]
    params, env_states = (_stack([getattr(r, part) for r in rows]) for part in ("params", "env_state"))
    seed = spec.seed if args.seed is None else args.seed
    keys = evaluate.eval_keys(seed, spec.num_seeds, len(ex.members))
    results = evaluate.evaluate_runs(ex.agent, params, env_states, keys, args.episodes)
    report = evaluation_report(ex, update, seed, args.episodes, results)
    out = Path(args.out) if args.out else Path(args.run_dir) / "eval.json"
    try:
        out.write_text(json.dumps(report, indent=2))
    except OSError as e:
        raise ConfigError(f"--out {out}: {e.strerror or e}") from None
    for entry in report["members"]:
        if len(report["members"]) > 1:
            print(f"member {entry['member']} {entry['settings']}:")
        for name in evaluate.POLICIES:
            r = entry[name]
            seeds = r["per_seed"]["return_mean"]
            spread = f" (seeds {min(seeds):.2f} to {max(seeds):.2f})" if len(seeds) > 1 else ""
            print(f"{name:10s} return {r['return_mean']:.2f}{spread} over {report['protocol']['episodes_per_seed']} "
                  f"episodes per seed x {len(seeds)} seed(s) (mean length {r['length_mean']:.1f})")
    print(f"wrote {out} (checkpoint at update {update}, evaluation seed {seed})")
    if args.render:
        row = ex.row(state, member, seed_index)
        steps = render.render(ex.agent, row.params, row.env_state, args.render,
                              key=evaluate.eval_keys(seed, spec.num_seeds)[seed_index])
        print(f"rendered one deterministic episode ({steps} steps) to {args.render}")
    return 0


def _stack(trees: list):
    """Pytrees stacked on a new leading axis (numpy on the host)."""
    import jax
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def evaluation_report(ex, update: int, seed: int, episodes: int, results: dict) -> dict:
    """eval.json: the protocol and, per sweep member and policy, the mean over seeds and each seed's figures."""
    from pjrl_agents.run import evaluate
    spec, n = ex.spec, ex.spec.num_seeds
    first = next(iter(results.values()))["returns"]
    members = []
    for m, settings in enumerate(ex.members):
        entry = {"member": m, "settings": settings}
        for name, result in results.items():
            part = slice(m * n, (m + 1) * n)
            per_seed = evaluate.summarise(result["returns"][part], result["lengths"][part])
            entry[name] = {"return_mean": _finite_mean(per_seed["return_mean"]),
                           "length_mean": _finite_mean(per_seed["length_mean"]),
                           "per_seed": per_seed,
                           "returns": [[None if not np.isfinite(x) else float(x) for x in row]
                                       for row in result["returns"][part]]}
        members.append(entry)
    return {"env": spec.env, "algo": spec.algo, "update": update, "step": update * ex.steps_per_update,
            "num_seeds": n,
            "protocol": {"policies": list(results), "episodes_asked": episodes, "episodes_per_seed": first.shape[1],
                         "num_envs": ex.env.num_envs, "episodes_per_env": first.shape[1] // ex.env.num_envs,
                         "eval_seed": seed, "training_seed": spec.seed,
                         "keys": f"seed i plays envs from fold_in(fold_in(PRNGKey({seed}), {evaluate.EVAL_STREAM:#x}),"
                                 f" i); training keys are split(PRNGKey({spec.seed}), {n})",
                         "episodes": "each env's first episodes_per_env episodes"},
            "members": members}


def _finite_mean(values: list[float]) -> float | None:
    """The mean of the finite values; None (JSON null) where there are none."""
    from pjrl_agents.numeric import nanmean
    mean = nanmean(values)
    return None if np.isnan(mean) else mean


def _cmd_plot(args) -> int:
    from pjrl_agents.analysis.plot import plot
    try:
        print(plot(args.run_dirs, args.out, args.metric, args.smooth, args.aggregate, args.confidence))
    except (FileNotFoundError, KeyError, ValueError) as e:
        raise ConfigError(str(e).strip("'\"")) from None
    return 0


def _cmd_compare(args) -> int:
    from pjrl_agents.analysis import compare
    references = compare.parse_references(args.reference)
    if args.plot:
        from pjrl_agents.analysis.plot import check_suffix
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        try:
            check_suffix(plt.figure(), args.plot)
        except ValueError as e:
            raise ConfigError(str(e).replace("--out", "--plot")) from None
    groups = compare.compare(args.run_dirs, args.by, args.score, references, args.reps, args.confidence, args.seed)
    print(compare.table(groups, args.confidence, markdown=args.markdown))
    sources = sorted({s for g in groups for s in g.sources})
    print(f"\nscores: {'; '.join(sources)}; {args.confidence * 100:g}% stratified-bootstrap CIs over seeds "
          f"({args.reps} resamples); median: over envs of each env's mean (one env: the mean)"
          + ("; optimality gap: below the target, in units of target - random"
             if any("optimality_gap" in g.estimates for g in groups) else ""))
    if args.plot:
        print(compare.plot(groups, args.plot, args.confidence, args.reps, args.seed))
    return 0


def _cmd_evolve(args) -> int:
    from pjrl_agents.search import evolve
    progress = None if args.quiet else print
    if args.resume:
        summary = evolve.evolve(None, args.resume, resume=True, progress=progress)
    else:
        spec = evolve.EvolveSpec(env=args.env, population=args.population, generations=args.generations,
                                 total_timesteps=args.total_timesteps, num_seeds=args.num_seeds, sigma=args.sigma,
                                 lr=args.lr, seed=args.seed)
        import pjrl_envs
        pjrl_envs.make(spec.env, num_envs=1)  # an unknown env is refused before anything is written
        from pjrl_agents.run.runner import default_out
        out = args.out or str(default_out(spec.env, "evolve"))
        summary = evolve.evolve(spec, out, progress=progress)
    print(json.dumps(summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pjrl", description="End-to-end JAX RL on any supported env library.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    # `train` parses its own flags (they depend on --algo and --env): see parse_train
    sub.add_parser("train", help="train an agent on a named env (default: PPO on gymnax:CartPole-v1)", add_help=False)
    sub.add_parser("tune", help="population-based training in one compiled run (pjrl tune --help)", add_help=False)

    v = sub.add_parser("eval", help="evaluate every seed of a run's latest checkpoint, greedy and sampled, "
                                    "to RUN/eval.json")
    v.add_argument("run_dir", help="a run directory written by pjrl train")
    v.add_argument("--episodes", type=int, default=10,
                   help="episodes per seed and policy, spread evenly over the run's envs (default: 10)")
    v.add_argument("--seed", type=int, default=None,
                   help="root of the evaluation keys, a stream apart from the training keys (default: the run's seed)")
    v.add_argument("--out", default=None, metavar="FILE", help="where to write the results (default: RUN/eval.json)")
    v.add_argument("--member", type=int, default=None, help="the sweep member --render draws (default: 0)")
    v.add_argument("--seed-index", type=int, default=None, help="the seed --render draws (default: 0)")
    v.add_argument("--render", default=None, metavar="PATH",
                   help="also draw one episode of that seed's deterministic policy to PATH, in a format the env "
                        "draws (brax envs to .html, gymnax envs to .gif)")
    v.set_defaults(func=_cmd_eval)

    pl = sub.add_parser("plot", help="learning curves of runs to a PNG: smoothed, IQM over seeds with a CI band")
    pl.add_argument("run_dirs", nargs="+", help="run directories")
    pl.add_argument("--out", default="curves.png", help="the image to write (default: curves.png)")
    pl.add_argument("--metric", default="episode_return",
                    help="logged metrics, comma-separated, one panel each; greedy_return and stochastic_return "
                         "are the --eval-every evaluations (default: episode_return)")
    pl.add_argument("--smooth", type=float, default=0.6,
                    help="exponential moving average weight, as TensorBoard's; 0: none (default: 0.6)")
    pl.add_argument("--aggregate", default="iqm", choices=("iqm", "mean"),
                    help="the curve over seeds: interquartile mean or mean (default: iqm)")
    pl.add_argument("--confidence", type=float, default=0.95, help="the band's bootstrap confidence (default: 0.95)")
    pl.set_defaults(func=_cmd_plot)

    c = sub.add_parser("compare", help="runs side by side: mean, median, IQM and optimality gap over seeds, "
                                       "with bootstrap confidence intervals")
    c.add_argument("run_dirs", nargs="+", help="run directories")
    c.add_argument("--by", default="member", choices=("member", "run", "algo", "env"),
                   help="one row per sweep member of each run, per run, per algorithm or per env (default: member)")
    c.add_argument("--score", default="greedy", choices=("greedy", "stochastic", "train"),
                   help="each seed's score: the greedy or sampled policy's evaluation (eval.json, else the greedy "
                        "evaluation at the end of training), or the training return (default: greedy)")
    c.add_argument("--reference", action="append", default=[], metavar="ENV=RANDOM,TARGET",
                   help="an env's random and target scores: normalise it, and give its optimality gap")
    c.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (default: 2000)")
    c.add_argument("--confidence", type=float, default=0.95, help="confidence of the intervals (default: 0.95)")
    c.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default: 0)")
    c.add_argument("--markdown", action="store_true", help="print a Markdown table")
    c.add_argument("--plot", default=None, metavar="PNG", help="also draw IQM with CIs and performance profiles")
    c.set_defaults(func=_cmd_compare)

    ev = sub.add_parser("evolve", help="discover a policy objective (LPO) by evolving it over whole training runs")
    ev.add_argument("--env", default="gymnax:CartPole-v1", help="where the inner runs train (default: CartPole)")
    ev.add_argument("--population", type=_integer, default=8, help="candidates per generation, even (default: 8)")
    ev.add_argument("--generations", type=_integer, default=20, help="generations (default: 20)")
    ev.add_argument("--total-timesteps", type=_integer, default=50_000,
                    help="env steps of each inner run (default: 50000)")
    ev.add_argument("--num-seeds", type=_integer, default=1, help="seeds each candidate's fitness averages over")
    ev.add_argument("--sigma", type=float, default=0.05, help="the strategy's sampling std (default: 0.05)")
    ev.add_argument("--lr", type=float, default=0.05, help="the strategy's Adam learning rate (default: 0.05)")
    ev.add_argument("--seed", type=_integer, default=0, help="root of every draw (default: 0)")
    ev.add_argument("--out", default=None, metavar="DIR", help="where the search goes (default: runs/ENV-evolve-TIME)")
    ev.add_argument("--resume", default=None, metavar="DIR", help="continue a search to its planned generations")
    ev.add_argument("--quiet", action="store_true", help="no progress lines")
    ev.set_defaults(func=_cmd_evolve)

    e = sub.add_parser("envs", help="list env names, one LIB:NAME a line")
    e.add_argument("--library", default=None, help="only this library's envs")
    e.set_defaults(func=_cmd_envs)

    a = sub.add_parser("algos", help="list algorithm names, one a line")
    a.set_defaults(func=_cmd_algos)
    return p


def runner_errors() -> tuple[type, ...]:
    from pjrl_agents.run.runner import Diverged, DiskFull
    return Diverged, DiskFull


def main(argv: typing.Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from pjrl_agents.run.checkpoint import CheckpointError
    from pjrl_envs import MissingLibraryError, OptionError, RenderError, UnknownEnvError
    try:
        if not argv or argv[0] == "train" or argv[0].startswith("--") and argv[0] not in ("-h", "--help"):
            return _cmd_train(argv[1:] if argv and argv[0] == "train" else argv)
        if argv[0] == "tune":
            return _cmd_tune(argv[1:])
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (ConfigError, UnknownEnvError, MissingLibraryError, CheckpointError, OptionError, RenderError) as e:
        print(f"pjrl: error: {e}", file=sys.stderr)
        return 2
    except (runner_errors()) as e:  # the run stopped itself and said why; its files are kept
        print(f"pjrl: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        print(f"pjrl: interrupted{': ' + str(e) if str(e) else ''}", file=sys.stderr)
        return 128 + int(getattr(e, "signum", 2))
    except SystemExit as e:  # argparse: --help (0) or a bad flag (2), already reported
        return e.code if isinstance(e.code, int) else 2

