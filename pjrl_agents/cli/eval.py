"""`pjrl eval RUN`: every seed and sweep member of a run's latest checkpoint, greedy and sampled, to RUN/eval.json."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from pjrl_agents.cli import flags
from pjrl_agents.config import ConfigError


@dataclasses.dataclass
class EvalOptions:
    """What `pjrl eval` evaluates, and where it writes."""

    run_dir: str = dataclasses.field(default="", metadata={"positional": True})
    """a run directory written by pjrl train"""
    episodes: int = 10
    """episodes per seed and policy, spread evenly over the run's envs"""
    seed: int | None = None
    """root of the evaluation keys, a stream apart from the training keys (none given: the run's seed)"""
    out: str | None = dataclasses.field(default=None, metadata={"metavar": "FILE"})
    """where to write the results (none given: RUN/eval.json)"""
    member: int | None = None
    """the sweep member --render draws (none given: 0)"""
    seed_index: int | None = None
    """the seed --render draws (none given: 0)"""
    render: str | None = dataclasses.field(default=None, metadata={"metavar": "PATH"})
    """also draw one episode of that seed's deterministic policy to PATH, in a format the env draws (brax envs
    to .html, gymnax envs to .gif)"""

    def check(self) -> None:
        """ConfigError for options that ask for nothing a run could hold, before the run is read."""
        from pjrl_agents.run.spec import check_seed
        if self.episodes < 1:
            raise ConfigError(f"--episodes {self.episodes}: evaluate at least 1 episode")
        if self.seed is not None:
            check_seed(self.seed, "--seed")
        if (self.member is not None or self.seed_index is not None) and not self.render:
            raise ConfigError("--member and --seed-index choose the episode --render draws; pjrl eval evaluates "
                              "every member and seed of the run without them")


def run(args) -> int:
    """`pjrl eval`: the evaluation protocol on every run of the checkpoint, then the optional --render."""
    from pjrl_agents.run import evaluate
    from pjrl_agents.run.experiment import build
    from pjrl_agents.run.spec import read_run
    options = EvalOptions(**flags.read_fields(args, EvalOptions))
    options.check()
    spec = read_run(Path(options.run_dir))
    ex = build(spec, for_restore=True)
    member, seed_index = options.member or 0, options.seed_index or 0
    if options.render:
        if not (0 <= member < len(ex.members) and 0 <= seed_index < spec.num_seeds):
            raise ConfigError(f"--member {member} --seed-index {seed_index}: the run has {len(ex.members)} "
                              f"member(s) x {spec.num_seeds} seed(s), numbered from 0")
        ex.env.check_render(options.render)  # before the evaluation, which takes a while
    update, state = ex.restore(options.run_dir, warn=lambda line: print(f"pjrl: {line}", file=sys.stderr))
    rows = [ex.row(state, m, i) for m in range(len(ex.members)) for i in range(spec.num_seeds)]
    params, env_states = (_stack([getattr(r, part) for r in rows]) for part in ("params", "env_state"))
    seed = spec.seed if options.seed is None else options.seed
    keys = evaluate.eval_keys(seed, spec.num_seeds, len(ex.members))
    results = evaluate.evaluate_runs(ex.agent, params, env_states, keys, options.episodes)
    report = evaluate.evaluation_report(ex, update, seed, options.episodes, results)
    out = Path(options.out) if options.out else Path(options.run_dir) / "eval.json"
    try:
        out.write_text(json.dumps(report, indent=2))
    except OSError as e:
        raise ConfigError(f"--out {out}: {e.strerror or e}") from None
    _print_report(report)
    print(f"wrote {out} (checkpoint at update {update}, evaluation seed {seed})")
    if options.render:
        _render(ex, state, member, seed_index, seed, options.render)
    return 0


def _print_report(report: dict) -> None:
    from pjrl_agents.run import evaluate
    for entry in report["members"]:
        if len(report["members"]) > 1:
            print(f"member {entry['member']} {entry['settings']}:")
        for name in evaluate.POLICIES:
            r = entry[name]
            seeds = [np.nan if v is None else v for v in r["per_seed"]["return_mean"]]
            spread = f" (seeds {min(seeds):.2f} to {max(seeds):.2f})" if len(seeds) > 1 else ""
            print(f"{name:10s} return {_number(r['return_mean'])}{spread} over "
                  f"{report['protocol']['episodes_per_seed']} episodes per seed x {len(seeds)} seed(s) "
                  f"(mean length {_number(r['length_mean'], '.1f')})")


def _number(value, spec: str = ".2f") -> str:
    """A figure of eval.json as printed: null (no episode ended) as nan."""
    return format(np.nan if value is None else value, spec)


def _render(ex, state, member: int, seed_index: int, seed: int, path: str) -> None:
    from pjrl_agents.run import evaluate
    from pjrl_agents.trained import render
    row = ex.row(state, member, seed_index)
    steps = render.render(ex.agent, row.params, row.env_state, path,
                          key=evaluate.eval_keys(seed, ex.spec.num_seeds)[seed_index])
    print(f"rendered one deterministic episode ({steps} steps) to {path}")


def _stack(trees: list):
    """Pytrees stacked on a new leading axis (numpy on the host)."""
    import jax
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate every seed of a run's latest checkpoint, greedy and sampled, "
                                    "to RUN/eval.json")
    flags.add_fields(p, EvalOptions)
    p.set_defaults(func=run)
