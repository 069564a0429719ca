"""Learning curves of one or more runs to an image: smoothed, aggregated over seeds with a confidence band.

    pjrl plot RUN_A RUN_B --out curves.png                       # IQM over seeds, 95% bootstrap band
    pjrl plot RUN --metric episode_return,loss --smooth 0 --aggregate mean

Each run's sweep members are curves of their own. The legend names what differs
between the curves (algorithm, env, settings), the title what they share.
Metrics logged every update come from `metrics.jsonl`; the evaluations of
`--eval-every` (`greedy_return`, `stochastic_return`, ...) from `eval.jsonl`.
Nothing is drawn before every seed of a curve has finished an episode.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pjrl_agents.run.sinks import ROW_KEYS as KEYS
from pjrl_agents.run.sinks import read_metrics


class Curve:
    """One sweep member of one run: `values (seeds, points)` of a metric at `steps (points,)`."""

    def __init__(self, run_dir: Path, member: int, steps: np.ndarray, values: np.ndarray, spec: dict):
        self.run_dir, self.member, self.steps, self.values, self.spec = run_dir, member, steps, values, spec

    @property
    def seeds(self) -> int:
        return self.values.shape[0]


def _rows(run_dir: Path, metric: str) -> list[dict]:
    rows = read_metrics(run_dir)
    if not rows and not (run_dir / "eval.jsonl").exists():
        raise FileNotFoundError(f"{run_dir} has no metrics.jsonl")
    if rows and metric in rows[0]:
        return rows
    evals = read_metrics(run_dir, name="eval.jsonl")
    if evals and metric in evals[0]:
        return evals
    logged = [key for row in (rows[:1] + evals[:1]) for key in row if key not in KEYS]
    raise ValueError(f"{run_dir} logged no {metric!r}; it has {', '.join(dict.fromkeys(logged))}")


def _spec(run_dir: Path) -> dict:
    """What a run was asked for, flattened: env, algo, settings, env options (from run.json)."""
    try:
        run = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return {}
    flat = {"env": run.get("env"), "algo": run.get("algo")}
    flat.update(run.get("settings", {}))
    flat.update({f"env.{k}": v for k, v in run.get("env_options", {}).items()})
    return flat


def curves(run_dir: Path, metric: str) -> list[Curve]:
    """One `Curve` per sweep member of `run_dir`."""
    rows = _rows(run_dir, metric)
    base = _spec(run_dir)
    summary = run_dir / "summary.json"
    members = json.loads(summary.read_text()).get("members") if summary.exists() else None
    out = []
    for member in sorted({r["member"] for r in rows}):
        mine = [r for r in rows if r["member"] == member]
        seeds = sorted({r["seed"] for r in mine})
        updates = sorted({r["update"] for r in mine})
        column = {u: i for i, u in enumerate(updates)}
        values = np.full((len(seeds), len(updates)), np.nan)
        steps = np.zeros(len(updates))
        for r in mine:
            values[seeds.index(r["seed"]), column[r["update"]]] = r[metric]
            steps[column[r["update"]]] = r["step"]
        spec = dict(base)
        if members and member < len(members):
            spec.update(members[member].get("settings", {}))
        out.append(Curve(run_dir, member, steps, values, spec))
    return out


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing along the last axis: a debiased exponential moving average with `weight`
    (0: none, 0.99: heavy). NaN entries are skipped and stay NaN."""
    if weight == 0:
        return values
    out = np.full_like(values, np.nan, dtype=float)
    last = np.zeros(values.shape[:-1])
    norm = np.zeros(values.shape[:-1])
    for t in range(values.shape[-1]):
        x = values[..., t]
        seen = np.isfinite(x)
        last = np.where(seen, last * weight + (1 - weight) * np.where(seen, x, 0.0), last)
        norm = np.where(seen, norm * weight + (1 - weight), norm)
        out[..., t] = np.where(seen, last / np.where(norm > 0, norm, 1.0), np.nan)
    return out


def band(values: np.ndarray, aggregate: str = "iqm", confidence: float = 0.95, reps: int = 500,
         seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(centre, low, high)` per point of `values (seeds, points)`: the mean or IQM over seeds and a
    bootstrap confidence interval from resampling the seeds (one resample shared by every point)."""
    from scipy.stats import trim_mean
    centre_of: Callable[[np.ndarray, int], np.ndarray] = (
        (lambda x, axis: trim_mean(x, 0.25, axis=axis)) if aggregate == "iqm" else
        (lambda x, axis: np.mean(x, axis=axis)))
    centre = centre_of(values, 0)
    if values.shape[0] == 1:
        return centre, centre, centre
    idx = np.random.default_rng(seed).integers(0, values.shape[0], (reps, values.shape[0]))
    samples = centre_of(values[idx], 1)  # (reps, points)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
    return centre, low, high


def step_formatter(value: float, _position=None) -> str:
    """Axis ticks as people write step counts: 0, 500k, 1M, 2.5M, 1B."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def labels(all_curves: list[Curve], most: int = 4) -> tuple[str, list[str]]:
    """`(title, legend labels)`: the title from the env and algorithm every curve shares; each label names
    the env and algorithm where they differ, then the settings that differ between the curves of the same
    algorithm (at most `most` of them), then the seed count."""
    def differing(curves: list[Curve], keys) -> list[str]:
        return [k for k in keys if all(k in c.spec for c in curves)
                and len({json.dumps(c.spec.get(k), sort_keys=True) for c in curves}) > 1]

    shared = {k: {c.spec.get(k) for c in all_curves} for k in ("algo", "env")}
    title = " on ".join(str(next(iter(v))).upper() if k == "algo" else str(next(iter(v)))
                        for k, v in shared.items() if len(v) == 1 and None not in v)
    several_runs = len({c.run_dir for c in all_curves}) > 1
    out = []
    for c in all_curves:
        shown = [str(c.spec.get(k)) for k in ("algo", "env") if len(shared[k]) > 1]
        same_algo = [d for d in all_curves if d.spec.get("algo") == c.spec.get("algo")]
        keys = [k for k in c.spec if k not in ("algo", "env")]
        settings = [f"{k}={short_value(c.spec[k])}" for k in differing(same_algo, keys)]
        shown += settings[:most] + (["..."] if len(settings) > most else [])
        if not shown and several_runs:
            shown = [c.run_dir.name]
        seeds = f"{c.seeds} seed" + ("s" if c.seeds != 1 else "")
        out.append(" ".join(shown + [f"({seeds})"]))
    return title, out


def short_value(v) -> str:
    """A setting's value as a label shows it: 0.001, 64,64, relu."""
    if isinstance(v, list):
        return ",".join(map(str, v))
    return f"{v:g}" if isinstance(v, float) else str(v)


def check_suffix(fig, out: str, flag: str = "--out") -> None:
    """ValueError naming `flag` and the formats matplotlib writes, where `out` ends in none of them."""
    formats = fig.canvas.get_supported_filetypes()
    suffix = Path(out).suffix.lower().lstrip(".")
    if suffix not in formats:
        import matplotlib.pyplot as plt
        plt.close(fig)
        raise ValueError(f"{flag} {out}: cannot draw a .{suffix or '(no suffix)'} file; "
                         f"end it in one of .{', .'.join(sorted(formats))}")


def plot(run_dirs: list[str], out: str, metric: str | list[str] = "episode_return", smoothing: float = 0.6,
         aggregate: str = "iqm", confidence: float = 0.95) -> str:
    """Draws each metric of `metric` (a name, a comma list or a list) for every run in `run_dirs` to `out`:
    one panel per metric."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    metrics = [m.strip() for m in (metric.split(",") if isinstance(metric, str) else metric) if m.strip()]
    if not metrics:
        raise ValueError("--metric: name at least one metric")
    if not 0 <= smoothing < 1:
        raise ValueError(f"--smooth {smoothing}: give a weight from 0 (none) to below 1, e.g. 0.6")
    if aggregate not in ("iqm", "mean"):
        raise ValueError(f"--aggregate {aggregate}: choose iqm or mean")
    if not 0 < confidence < 1:
        raise ValueError(f"--confidence {confidence}: give a number between 0 and 1, e.g. 0.95")
    cols = min(len(metrics), 2)
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 4.5 * rows), dpi=100, squeeze=False)
    check_suffix(fig, out)
    try:
        for ax, name in zip(axes.flat, metrics):
            found = [c for run_dir in run_dirs for c in curves(Path(run_dir), name)]
            title, names = labels(found)
            for curve, label in zip(found, names):
                values = smooth(curve.values, smoothing)
                keep = np.isfinite(values).all(0)  # from the first point every seed has a value
                if not keep.any():
                    continue
                centre, low, high = band(values[:, keep], aggregate, confidence)
                line, = ax.plot(curve.steps[keep], centre, label=label)
                if curve.seeds > 1:
                    ax.fill_between(curve.steps[keep], low, high, alpha=0.2, color=line.get_color(), linewidth=0)
            what = ("IQM" if aggregate == "iqm" else "mean") + " over seeds"
            if any(c.seeds > 1 for c in found):
                what += f", {confidence * 100:g}% bootstrap CI"
            what += f", EMA smoothing {smoothing:g}" if smoothing else ", unsmoothed"
            ax.set_title(f"{title}\n" if title else "", fontsize=11)
            ax.set_title(what, fontsize=8, loc="right", color="0.35")
            ax.set_xlabel("env steps per seed")
            ax.set_ylabel(name.replace("_", " "))
            ax.xaxis.set_major_formatter(FuncFormatter(step_formatter))
            ax.grid(alpha=0.3)
            if any(names):
                ax.legend(fontsize=8)
        for ax in list(axes.flat)[len(metrics):]:
            ax.set_visible(False)
        save_figure(fig, out)
    finally:
        plt.close(fig)
    return out


def save_figure(fig, out: str, flag: str = "--out") -> None:
    """Lays out and writes `fig`; an unwritable path is a ValueError naming `flag`."""
    fig.tight_layout()
    try:
        fig.savefig(out)
    except OSError as e:
        raise ValueError(f"{flag} {out}: {e.strerror or e}") from None
