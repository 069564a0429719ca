"""`pjrl compare`: runs side by side, aggregated over seeds as RL papers report them.

Each run directory gives one score per seed and sweep member: by default the
greedy policy's mean return from `eval.json` (written by `pjrl eval`), else the
greedy evaluation `summary.json` holds from the end of training; `--score train`
takes the training policy's final return instead. Rows are grouped (`--by`):
per group the mean, median, interquartile mean and, where a target score is
known, the optimality gap, each with a stratified-bootstrap confidence interval
over seeds (`pjrl_agents.analysis.stats`). A group that spans several envs is compared on
scores normalised by each env's random and target scores.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from pjrl_agents.analysis import stats
from pjrl_agents.config import ConfigError

REFERENCE_SCORES = {
    # env: (random policy's mean return, target return). The random figures are pjrl_envs.random_policy's
    # mean over 1000 episodes (`python benchmarks/table.py --random`); the targets are the envs' maxima.
    "gymnax:CartPole-v1": (22.5, 500.0),
    "gymnax:Catch-bsuite": (-0.63, 1.0),
}
"""env -> (random score, target score): the 0 and 1 of normalised scores; the target is the optimality
gap's threshold. `--reference ENV=RANDOM,TARGET` adds or replaces one."""

GROUPINGS = ("member", "run", "algo", "env")
SCORES = ("greedy", "stochastic", "train")


@dataclasses.dataclass
class Entry:
    """One sweep member of one run: its per-seed scores and where they came from."""

    run: str
    env: str
    algo: str
    member: int
    settings: dict
    scores: np.ndarray
    source: str

    def key(self, by: str) -> str:
        if by == "env":
            return self.env
        if by == "algo":
            return self.algo
        if by == "run":
            return self.run
        from pjrl_agents.analysis.plot import short_value
        shown = " ".join(f"{k}={short_value(v)}" for k, v in self.settings.items())
        return f"{self.run} {shown}".strip()


def read_entries(run_dir: str | Path, score: str = "greedy") -> list[Entry]:
    """The scores of each sweep member of a run directory (see the module's docstring for their source)."""
    run_dir = Path(run_dir)
    summary = _read_json(run_dir / "summary.json")
    evaluation = _read_json(run_dir / "eval.json") if score != "train" else None
    if summary is None and evaluation is None:
        raise ConfigError(f"{run_dir} holds no summary.json or eval.json: give a run that pjrl train finished")
    name = run_dir.name
    if evaluation is not None and score in evaluation.get("protocol", {}).get("policies", []):
        return [Entry(name, evaluation["env"], evaluation["algo"], m["member"], m["settings"],
                      np.asarray(m[score]["per_seed"]["return_mean"], float),
                      f"eval.json {score} ({evaluation['protocol']['episodes_per_seed']} episodes per seed)")
                for m in evaluation["members"]]
    if summary is None:
        raise ConfigError(f"{run_dir}/eval.json holds no {score} evaluation and there is no summary.json")
    if score == "stochastic":
        raise ConfigError(f"{run_dir}: no eval.json with stochastic returns; write one with pjrl eval {run_dir}")
    members = summary.get("members") or [{"settings": {}, "final_return_per_seed": summary["final_return_per_seed"],
                                          "final_greedy_return_per_seed":
                                              summary.get("final_greedy_return_per_seed")}]
    entries = []
    for m, member in enumerate(members):
        if score == "greedy":
            values = member.get("final_greedy_return_per_seed")
            if values is None:
                raise ConfigError(f"{run_dir}: no greedy evaluation (trained with --eval-episodes 0?); write one "
                                  f"with pjrl eval {run_dir}, or compare --score train")
            source = f"summary.json greedy ({summary.get('greedy_episodes', '?')} episodes per seed)"
        else:
            values, source = member["final_return_per_seed"], "summary.json training return (last 5% of updates)"
        entries.append(Entry(name, summary["env"], summary["algo"], m, member.get("settings", {}),
                             np.asarray([np.nan if v is None else v for v in values], float), source))
    return entries


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path} cannot be read: {e}") from None
    return data if isinstance(data, dict) else None


@dataclasses.dataclass
class Group:
    """One row of the comparison: a score matrix `(seeds, envs)` and its interval estimates."""

    name: str
    envs: list[str]
    matrix: np.ndarray
    """returns `(seeds, envs)`"""
    scaled: np.ndarray
    """what the aggregates are computed on: `matrix`, or normalised scores where the group spans several envs"""
    normalised: bool
    estimates: dict[str, tuple[float, float, float]]
    sources: list[str]


def compare(run_dirs: list[str], by: str = "member", score: str = "greedy", references: dict | None = None,
            reps: int = 2000, confidence: float = 0.95, seed: int = 0) -> list[Group]:
    """The groups of `run_dirs` with their interval estimates, in the order they first appear."""
    if by not in GROUPINGS:
        raise ConfigError(f"--by {by}: choose one of {', '.join(GROUPINGS)}")
    if score not in SCORES:
        raise ConfigError(f"--score {score}: choose one of {', '.join(SCORES)}")
    if not 0 < confidence < 1:
        raise ConfigError(f"--confidence {confidence}: give a number between 0 and 1, e.g. 0.95")
    if reps < 1:
        raise ConfigError(f"--reps {reps}: give at least 1 bootstrap resample")
    references = {**REFERENCE_SCORES, **(references or {})}
    grouped: dict[str, list[Entry]] = {}
    for run_dir in run_dirs:
        for entry in read_entries(run_dir, score):
            grouped.setdefault(entry.key(by), []).append(entry)
    groups = []
    for name, entries in grouped.items():
        by_env: dict[str, list[float]] = {}
        for e in entries:
            by_env.setdefault(e.env, []).extend(e.scores.tolist())
        envs = list(by_env)
        counts = {env: len(v) for env, v in by_env.items()}
        if len(set(counts.values())) > 1:
            raise ConfigError(f"{name}: the stratified bootstrap needs as many seeds on every env, and it has "
                              + ", ".join(f"{n} on {env}" for env, n in counts.items())
                              + "; train the same --num-seeds on each, or compare --by member")
        matrix = np.asarray([by_env[env] for env in envs], float).T  # (seeds, envs)
        if not np.isfinite(matrix).all():
            bad = [env for env in envs if not np.isfinite(by_env[env]).all()]
            raise ConfigError(f"{name}: some seeds have no score on {', '.join(bad)} (no episode ended, or a "
                              "diverged run); evaluate longer episodes with pjrl eval --episodes, or leave the run out")
        known = all(env in references for env in envs)
        normalised = len(envs) > 1
        if normalised and not known:
            missing = [env for env in envs if env not in references]
            raise ConfigError(f"{name} spans {len(envs)} envs, and {', '.join(missing)} has no reference score to "
                              "put it on a common scale: give --reference ENV=RANDOM,TARGET, or compare --by member")
        unit = np.stack([stats.normalise(matrix[:, i], *references[env]) for i, env in enumerate(envs)], 1) \
            if known else None  # (score - random) / (target - random)
        if normalised:
            assert unit is not None  # a group spanning several envs has their reference scores (checked above)
            scaled = unit
        else:
            scaled = matrix
        estimates = stats.interval_estimates(scaled, reps=reps, confidence=confidence, seed=seed,
                                             aggregates=["mean", "median", "iqm"])
        if unit is not None:  # (known) the gap below the target, in normalised units whatever the scale of the rest
            estimates.update(stats.interval_estimates(unit, reps=reps, confidence=confidence, seed=seed,
                                                      aggregates=["optimality_gap"]))
        groups.append(Group(name, envs, matrix, scaled, normalised, estimates, sorted({e.source for e in entries})))
    return groups


COLUMNS = (("mean", "mean"), ("median", "median"), ("iqm", "IQM"), ("optimality_gap", "optimality gap"))


def table(groups: list[Group], confidence: float = 0.95, markdown: bool = False) -> str:
    """The groups as a text table (or a Markdown one): each aggregate as `point [low, high]`."""
    pct = f"{confidence * 100:g}%"
    header = ["group", "envs", "seeds"] + [f"{title} [{pct} CI]" for key, title in COLUMNS
                                            if any(key in g.estimates for g in groups)]
    keys = [key for key, _ in COLUMNS if any(key in g.estimates for g in groups)]
    rows = []
    for g in groups:
        digits = 3 if g.normalised or max(abs(g.matrix).max(), 1e-9) < 10 else 1
        cells = [g.name, ", ".join(g.envs) + (" (normalised)" if g.normalised else ""), str(g.matrix.shape[0])]
        for key in keys:
            if key not in g.estimates:
                cells.append("-")
                continue
            point, low, high = g.estimates[key]
            d = 3 if key == "optimality_gap" else digits
            cells.append(f"{point:.{d}f} [{low:.{d}f}, {high:.{d}f}]")
        rows.append(cells)
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def parse_references(items: list[str]) -> dict[str, tuple[float, float]]:
    """`["gymnax:Acrobot-v1=-500,-60"]` -> `{env: (random, target)}`."""
    out = {}
    for item in items:
        env, sep, values = item.partition("=")
        parts = values.split(",")
        try:
            low, high = (float(v) for v in parts) if sep and len(parts) == 2 else (None, None)
        except ValueError:
            low = high = None
        if low is None or high is None or low == high:
            raise ConfigError(f"--reference {item!r}: write ENV=RANDOM,TARGET with two different numbers, "
                              "e.g. gymnax:Acrobot-v1=-500,-60")
        out[env.strip()] = (low, high)
    return out


def plot(groups: list[Group], out: str, confidence: float = 0.95, reps: int = 2000, seed: int = 0) -> str:
    """Two panels to `out`: each group's IQM with its confidence interval, and performance profiles (the
    fraction of seeds scoring above each threshold, with bands)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pjrl_agents.analysis.plot import check_suffix, save_figure

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.5 * len(groups) + 3), dpi=100,
                                      gridspec_kw={"width_ratios": [1, 1.3]})
    check_suffix(fig, out)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    normalised = any(g.normalised for g in groups)
    for i, g in enumerate(groups):
        color = colors[i % len(colors)]
        point, low, high = g.estimates["iqm"]
        left.plot([low, high], [i, i], color=color, linewidth=6, alpha=0.5, solid_capstyle="butt")
        left.plot([point], [i], "|", color="black", markersize=14)
    left.set_yticks(range(len(groups)), [g.name for g in groups], fontsize=8)
    left.invert_yaxis()
    unit = "normalised score" if normalised else "return"
    left.set_xlabel(f"IQM {unit} ({confidence * 100:g}% CI over seeds)")
    left.grid(axis="x", alpha=0.3)
    scaled = [g.scaled for g in groups]
    lo = min(float(s.min()) for s in scaled)
    hi = max(float(s.max()) for s in scaled)
    taus = np.linspace(lo - 0.05 * (hi - lo + 1e-9), hi + 0.05 * (hi - lo + 1e-9), 101)
    for i, (g, s) in enumerate(zip(groups, scaled)):
        color = colors[i % len(colors)]
        profile, band_low, band_high = stats.performance_profile_ci(s, taus, reps=reps, confidence=confidence,
                                                                     seed=seed)
        right.plot(taus, profile, color=color, label=g.name)
        right.fill_between(taus, band_low, band_high, color=color, alpha=0.2)
    right.set_xlabel(unit + " threshold")
    right.set_ylabel("fraction of seeds above it")
    right.set_ylim(-0.02, 1.02)
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    right.set_title("performance profile")
    left.set_title("interquartile mean")
    try:
        save_figure(fig, out, "--plot")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    finally:
        plt.close(fig)
    return out
