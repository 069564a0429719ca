"""A run directory on disk: what it holds, and each file read and written in one place.

    RUN/run.json         the RunSpec, every setting resolved (`pjrl train --config RUN/run.json` repeats it)
    RUN/.run.json        run.json as the run began (resume refuses an edited run.json)
    RUN/metrics.jsonl    one row per update per seed ({member, seed, update, step, metrics...}); metrics.csv too
    RUN/eval.jsonl       one row per evaluation per seed (--eval-every)
    RUN/pbt.jsonl        one row per exploit/explore step per member (population-based training)
    RUN/checkpoints/N    the state after update N (run/checkpoint.py)
    RUN/summary.json     written when training stops, however it stops
    RUN/.lock            held while a process trains the run

JSON written here is strict: a value not yet defined (no episode ended) or not finite is `null`, read
back as NaN (`numeric.strict_json`).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from pjrl_agents.config import ConfigError
from pjrl_agents.numeric import strict_json
from pjrl_agents.run.checkpoint import RunLock, has_checkpoint

MIN_FREE_BYTES = 64 << 20
LOGS = ("eval.jsonl", "pbt.jsonl")
"""logs besides metrics.jsonl whose rows past a resumed checkpoint are dropped"""


def default_out(env: str, algo: str) -> Path:
    return Path("runs") / f"{env.replace(':', '-')}-{algo}-{time.strftime('%Y%m%d-%H%M%S')}"


def read_jsonl(path: Path, damaged: list[int] | None = None) -> list[dict[str, Any]]:
    """The rows of a JSONL log (`null` read back as NaN). Lines that cannot be read (a write cut off by a kill
    or a full disk) are left out; their line numbers are appended to `damaged`."""
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("update"), int):
                raise ValueError("not a row")
        except ValueError:
            if damaged is not None:
                damaged.append(number)
            continue
        rows.append({k: float("nan") if v is None else v for k, v in row.items()})
    return rows


def append_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "a") as f:
        f.write("".join(json.dumps(strict_json(row)) + "\n" for row in rows))


def read_summary(run_dir: str | Path) -> dict:
    """A run's summary.json, or {} where there is none (or it cannot be read)."""
    try:
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def write_summary(run_dir: Path, summary: dict) -> None:
    (run_dir / "summary.json").write_text(json.dumps(strict_json(summary), indent=2))


def prepare(out: Path, spec: dict, resume: bool) -> RunLock:
    """Checks the run directory and takes its lock, before anything compiles; returns the lock.

    run.json is written here, so a run stopped at any moment (in compile too)
    can be resumed; a directory whose run never trained (no metrics, no
    checkpoint) may be started again.
    """
    if resume:
        return RunLock(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; choose a directory")
    if (out / "run.json").exists() and (has_checkpoint(out) or (out / "metrics.jsonl").exists()):
        raise ConfigError(f"{out} already holds a run; continue it with --resume {out} or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write to --out {out}: {e.strerror or e}") from None
    lock = RunLock(out)
    free = shutil.disk_usage(out).free
    if free < MIN_FREE_BYTES:
        lock.release()
        raise ConfigError(f"only {free >> 20} MiB free at {out}; a run needs at least {MIN_FREE_BYTES >> 20} MiB")
    text = json.dumps(spec, indent=2)
    (out / "run.json").write_text(text)
    (out / ".run.json").write_text(text)  # as the run began: resume compares run.json to it
    return lock


def check_unchanged(out: Path, now: dict) -> None:
    """Refuses to resume a run whose run.json was edited since it began (it would not be that run)."""
    began = out / ".run.json"
    if not began.exists():
        return
    before = json.loads(began.read_text())
    settings_before, settings_now = before.get("settings", {}), now["settings"]
    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k) and k != "settings")
    changed += sorted(f"settings.{k}" for k in set(settings_before) | set(settings_now)
                      if settings_before.get(k) != settings_now.get(k))
    if changed:
        first = changed[0]
        old = before.get(first) if "." not in first else settings_before.get(first[9:])
        new = now.get(first) if "." not in first else settings_now.get(first[9:])
        more = f", and {len(changed) - 1} more" if len(changed) > 1 else ""
        raise ConfigError(f"{out}/run.json was edited since the run began ({first}: {old!r} -> {new!r}{more}); "
                          f"resume continues the run as it began: undo the edit, or start a new run with "
                          f"--config {out}/run.json --out NEW_DIR")


def keep_rows_until(out: Path, update: int, metrics: list[dict]) -> None:
    """Drops the logged rows past the checkpoint a run resumes from (`update`), and damaged lines:
    metrics.jsonl and metrics.csv are written anew from `metrics`, the other logs filtered."""
    from pjrl_agents.run.sinks import FileSink  # the one writer of metrics.jsonl and metrics.csv
    for name in ("metrics.jsonl", "metrics.csv"):
        (out / name).unlink(missing_ok=True)
    if metrics:
        sink = FileSink(out)
        sink.log(metrics)
        sink.close()
    for name in LOGS:
        path = out / name
        if path.exists():
            kept = [line + "\n" for line in path.read_text(errors="replace").splitlines()
                    if _row_at_most(line, update)]
            path.write_text("".join(kept))


def _row_at_most(line: str, update: int) -> bool:
    try:
        row = json.loads(line)
    except ValueError:
        return False
    return isinstance(row, dict) and isinstance(row.get("update"), int) and row["update"] <= update
