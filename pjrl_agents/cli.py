"""The `pjrl` command line: `train`, `envs`, `eval`, `plot`."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing

from pjrl_agents.common import ConfigError


def _parse_setting(config_cls, text: str) -> tuple[str, object]:
    """`NAME=VALUE` typed by the config field it names."""
    name, sep, raw = text.partition("=")
    name = name.strip().replace("-", "_")
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    if not sep:
        raise ConfigError(f"--set {text!r}: write NAME=VALUE")
    if name not in fields:
        raise ConfigError(f"--set {name}: no such setting; settings: {', '.join(sorted(fields))}")
    default = fields[name].default
    try:
        if isinstance(default, bool):
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return name, raw.lower() in ("true", "1", "yes")
        if isinstance(default, tuple):
            return name, tuple(int(v) for v in raw.split(",") if v)
        if isinstance(default, int):
            return name, int(float(raw))
        if isinstance(default, float):
            return name, float(raw)
        return name, raw
    except ValueError:
        raise ConfigError(f"--set {name}={raw!r}: expected a {type(default).__name__}") from None


def _cmd_envs(args) -> int:
    import pjrl_envs
    for name in pjrl_envs.list_envs(args.library):
        print(name)
    return 0


def _cmd_train(args) -> int:
    from pjrl_agents import distributed, runner
    distributed.initialize(args.coordinator, args.num_processes, args.process_id)  # before JAX starts
    progress = None if args.quiet else print
    if args.resume:
        summary = runner.resume(args.resume, progress=progress)
    else:
        module = runner.algorithm(args.algo)
        overrides = dict(_parse_setting(type(module.default_config()), s) for s in args.set)
        for flag, field in (("total_timesteps", "total_timesteps"), ("num_envs", "num_envs")):
            if getattr(args, flag) is not None:
                overrides[field] = int(getattr(args, flag))
        wandb = None
        if args.wandb:
            _require_wandb()
            wandb = {"project": args.wandb_project, "entity": args.wandb_entity, "group": args.wandb_group}
        summary = runner.train(args.env, args.algo, overrides, args.sweep, num_seeds=args.num_seeds,
                               seed=args.seed, out=args.out, checkpoint_every=args.checkpoint_every,
                               tensorboard=not args.no_tensorboard, wandb=wandb, progress=progress,
                               devices=args.devices)
    brief = {k: summary[k] for k in ("env", "algo", "total_timesteps", "num_seeds", "final_return_mean",
                                     "compile_s", "run_s", "steps_per_s", "out")}
    for m in summary.get("members", []):
        print(f"  {m['overrides']}: final_return_mean {m['final_return_mean']:.2f}")
    print(json.dumps(brief))
    return 0


def _require_wandb() -> None:
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise ConfigError("--wandb needs the wandb package: pip install wandb (or pip install 'pjrl[wandb]')") from None


def _cmd_eval(args) -> int:
    from pjrl_agents import evaluate, render, runner
    run, state = runner.load(args.run_dir)
    if args.render:
        render.check(run.spec.env, args.render)  # before the evaluation, which takes a while
    for result in evaluate.evaluate_run(run, state, episodes=args.episodes, seed=args.seed, run_index=args.run_index):
        kind = "deterministic" if result["deterministic"] else "stochastic"
        print(f"{kind:13s} return {result['return_mean']:.2f} +- {result['return_std']:.2f} "
              f"over {result['episodes']} episodes (mean length {result['length_mean']:.1f})")
    if args.render:
        steps = render.render_run(run, state, args.render, seed=args.seed, run_index=args.run_index)
        print(f"rendered one deterministic episode ({steps} steps) to {args.render}")
    return 0


def _cmd_plot(args) -> int:
    from pjrl_agents.plot import plot
    try:
        print(plot(args.run_dirs, args.out, args.metric))
    except (FileNotFoundError, KeyError) as e:
        raise ConfigError(str(e).strip("'\"")) from None
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pjrl", description="End-to-end JAX RL on any supported env library.")
    sub = p.add_subparsers(dest="command")

    t = sub.add_parser("train", help="train an agent on a named env (default: PPO on gymnax:CartPole-v1)")
    t.add_argument("--env", default="gymnax:CartPole-v1", help="LIB:NAME, see `pjrl envs`")
    t.add_argument("--algo", default="ppo", help="ppo or dqn")
    t.add_argument("--total-timesteps", type=float, default=None, help="env steps per seed")
    t.add_argument("--num-envs", type=int, default=None, help="parallel envs per seed")
    t.add_argument("--num-seeds", type=int, default=1, help="seeds trained in parallel by vmap, one compile")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=None, help="run directory (default runs/ENV-ALGO-TIME)")
    t.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="any config setting, e.g. --set lr=1e-3 --set hidden_sizes=128,128")
    t.add_argument("--sweep", action="append", default=[], metavar="NAME=V1,V2",
                   help="train every value (a grid over several --sweep) in one compile")
    t.add_argument("--quiet", action="store_true", help="no progress lines")
    t.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                   help="checkpoint every N updates (a final checkpoint is always written)")
    t.add_argument("--resume", default=None, metavar="DIR", help="continue an interrupted run to its planned total")
    t.add_argument("--no-tensorboard", action="store_true", help="skip TensorBoard event files")
    t.add_argument("--wandb", action="store_true", help="track with Weights & Biases (WANDB_MODE=offline works)")
    t.add_argument("--wandb-project", default="pjrl")
    t.add_argument("--wandb-entity", default=None)
    t.add_argument("--wandb-group", default=None)
    # scale-out (pjrl_agents.distributed)
    t.add_argument("--devices", type=int, default=None,
                   help="devices to split the seeds (or one seed's envs) over; default: all visible")
    t.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="multi-host: address of process 0 (or 'auto' on SLURM/Open MPI/Kubernetes)")
    t.add_argument("--num-processes", type=int, default=None, help="multi-host: processes in the run")
    t.add_argument("--process-id", type=int, default=None, help="multi-host: this process, 0 to P-1")
    t.set_defaults(func=_cmd_train)

    v = sub.add_parser("eval", help="evaluate the latest checkpoint of a run")
    v.add_argument("run_dir")
    v.add_argument("--episodes", type=int, default=10)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--run-index", type=int, default=0, help="which seed (or sweep member x seed) to evaluate")
    v.add_argument("--render", default=None, metavar="PATH",
                   help="also draw one episode of the deterministic policy: an HTML page for brax envs "
                        "(PATH ending in .html), a GIF for gymnax envs (.gif)")
    v.set_defaults(func=_cmd_eval)

    pl = sub.add_parser("plot", help="learning curves of runs to a PNG")
    pl.add_argument("run_dirs", nargs="+")
    pl.add_argument("--out", default="curves.png")
    pl.add_argument("--metric", default="episode_return")
    pl.set_defaults(func=_cmd_plot)

    e = sub.add_parser("envs", help="list env names, one LIB:NAME a line")
    e.add_argument("--library", default=None, help="only this library's envs")
    e.set_defaults(func=_cmd_envs)
    return p


def main(argv: typing.Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        args = build_parser().parse_args(["train", *(argv or [])])
    from pjrl_agents.checkpoint import CheckpointError
    from pjrl_envs import MissingLibraryError, UnknownEnvError
    try:
        return args.func(args)
    except (ConfigError, UnknownEnvError, MissingLibraryError, CheckpointError) as e:
        print(f"pjrl: error: {e}", file=sys.stderr)
        return 2
    except TypeError as e:  # an option the adapter does not take
        if "option" in str(e) or "argument" in str(e):
            print(f"pjrl: error: {e}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt as e:
        print(f"pjrl: interrupted{': ' + str(e) if str(e) else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
