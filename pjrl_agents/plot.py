"""Learning curves of one or more runs: mean over seeds with the min-max band, to a PNG."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pjrl_agents.logging import read_metrics


def curves(run_dir: Path, metric: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """`[(label, steps, values (seeds, updates))]`, one entry per sweep member."""
    rows = read_metrics(run_dir)
    if not rows:
        raise FileNotFoundError(f"{run_dir} has no metrics.jsonl")
    if metric not in rows[0]:
        raise KeyError(f"{run_dir} logged no {metric!r}; it has {', '.join(k for k in rows[0] if k not in ('member', 'seed', 'update', 'step'))}")
    summary = run_dir / "summary.json"
    members = json.loads(summary.read_text()).get("members") if summary.exists() else None
    out = []
    for member in sorted({r["member"] for r in rows}):
        mine = [r for r in rows if r["member"] == member]
        seeds = sorted({r["seed"] for r in mine})
        updates = sorted({r["update"] for r in mine})
        values = np.full((len(seeds), len(updates)), np.nan)
        steps = np.zeros(len(updates))
        for r in mine:
            u = updates.index(r["update"])
            values[seeds.index(r["seed"]), u] = r[metric]
            steps[u] = r["step"]
        label = run_dir.name
        if members:
            settings = members[member].get("settings", members[member].get("overrides", {}))
            label += " " + ",".join(f"{k}={v:g}" for k, v in settings.items())
        out.append((label, steps, values))
    return out


def plot(run_dirs: list[str], out: str, metric: str = "episode_return") -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    formats = fig.canvas.get_supported_filetypes()
    suffix = Path(out).suffix.lower().lstrip(".")
    if suffix not in formats:
        plt.close(fig)
        raise ValueError(f"--out {out}: cannot draw a .{suffix or '(no suffix)'} file; "
                         f"end it in one of .{', .'.join(sorted(formats))}")
    for run_dir in run_dirs:
        for label, steps, values in curves(Path(run_dir), metric):
            seen = np.isfinite(values)  # NaN (no episode ended yet) is left out, not drawn as 0
            keep = seen.any(0)
            steps, values, seen = steps[keep], values[:, keep], seen[:, keep]
            mean = np.where(seen, values, 0.0).sum(0) / seen.sum(0)
            values = np.where(seen, values, mean)  # the band over the seeds that have a value
            line, = ax.plot(steps, mean, label=f"{label} ({values.shape[0]} seeds)")
            if values.shape[0] > 1:
                ax.fill_between(steps, values.min(0), values.max(0), alpha=0.2, color=line.get_color())
    ax.set_xlabel("env steps per seed")
    ax.set_ylabel(metric.replace("_", " "))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        fig.savefig(out)
    except OSError as e:
        raise ValueError(f"--out {out}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
    return out
