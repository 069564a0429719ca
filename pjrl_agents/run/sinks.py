"""Where rows go while a run trains: console, JSONL/CSV files, TensorBoard, Weights & Biases.

Every sink is a `Sink`: `log(rows, stream)` and `close()`. A row is a dict with
`member`, `seed`, `update`, `step` and scalars; `stream` says which rows they are:

    "metrics"  after every chunk: one row per (run, update) of the training metrics, plus the mean over
               seeds of each member as rows with `seed = "mean"`
    "eval"     at every --eval-every boundary: one row per run of the evaluation (and the means)
    "pbt"      at every exploit/explore step: one row per member: score, parent run, perturbed settings

Sinks live in process 0 only; `open_sinks` makes the ones a run spec asks for (a new sink is a class
here and a line there).
"""
from __future__ import annotations

import csv
import json
import math
import os
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

import numpy as np

from pjrl_agents.numeric import member_seed, nanmean, strict_json
from pjrl_agents.run.rundir import append_jsonl, read_jsonl

if TYPE_CHECKING:
    import _csv

ROW_KEYS = ("member", "seed", "update", "step")
"""the keys of a row that say which run and update it is; the others are metrics"""

STREAMS = ("metrics", "eval", "pbt")


class Sink(Protocol):
    """Takes the rows of a run as it trains (see the module docstring)."""

    def log(self, rows: list[dict], stream: str = "metrics") -> None: ...

    def close(self) -> None: ...


def row_of(run: int, update: int, num_seeds: int, steps_per_update: int) -> dict:
    """The keys that say which run (member-major, `numeric.member_seed`) and update a row is."""
    member, seed = member_seed(run, num_seeds)
    return {"member": member, "seed": seed, "update": update, "step": update * steps_per_update}


def chunk_rows(metrics: dict[str, np.ndarray], first_update: int, steps_per_update: int,
               num_seeds: int) -> list[dict]:
    """Per-run rows from `(runs, n)` arrays covering updates `first_update+1 .. first_update+n`."""
    names = sorted(metrics)
    runs, n = metrics[names[0]].shape
    rows = []
    for r in range(runs):
        for u in range(n):
            row = row_of(r, first_update + u + 1, num_seeds, steps_per_update)
            row.update({k: float(metrics[k][r, u]) for k in names})
            rows.append(row)
    return rows


def mean_rows(rows: list[dict]) -> list[dict]:
    """Mean over seeds, per member and update."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["member"], row["update"]), []).append(row)
    out = []
    for (member, update), group in sorted(groups.items()):
        mean = {"member": member, "seed": "mean", "update": update, "step": group[0]["step"]}
        names = [k for k in group[0] if k not in mean]
        values = np.array([[g[k] for k in names] for g in group], dtype=np.float64).mean(0)
        mean.update(zip(names, values.tolist()))
        out.append(mean)
    return out


class FileSink:
    """`metrics.jsonl` and `metrics.csv`, appended as the run goes (one row per update per seed);
    `eval.jsonl` and `pbt.jsonl` for the other streams."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.jsonl = open(run_dir / "metrics.jsonl", "a")
        self.csv_path = run_dir / "metrics.csv"
        self._csv: TextIO | None = None
        self._writer: _csv.Writer | None = None
        self._fields: list[str] = []
        self._field_set: frozenset = frozenset()

    def log(self, rows: list[dict], stream: str = "metrics") -> None:
        if stream != "metrics":
            append_jsonl(self.run_dir / f"{stream}.jsonl", [r for r in rows if r["seed"] != "mean"])
            return
        lines, dumps = [], json.dumps
        for row in rows:
            if row["seed"] == "mean":
                continue
            # strict JSON: a value not yet defined (no episode ended) or non-finite is written null
            line = dumps(row)
            if "NaN" in line or "Infinity" in line:
                line = dumps(strict_json(row))
            lines.append(line)
            if self._writer is None:
                fresh = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
                self._csv = open(self.csv_path, "a", newline="")
                self._writer, self._fields, self._field_set = csv.writer(self._csv), list(row), frozenset(row)
                if fresh:
                    self._writer.writerow(self._fields)
            if not row.keys() <= self._field_set:
                raise ValueError(f"a metrics row has fields metrics.csv lacks: {sorted(row.keys() - self._field_set)}")
            values = (row.get(k, "") for k in self._fields)
            self._writer.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in values])
        if lines:
            self.jsonl.write("\n".join(lines) + "\n")
        self.jsonl.flush()
        if self._csv:
            self._csv.flush()

    def close(self) -> None:
        self.jsonl.close()
        if self._csv:
            self._csv.close()


class TensorBoardSink:
    """TensorBoard event files under `run_dir/tb`: `seed<i>/<metric>` and `mean/<metric>` per member.

    One event per update holds the scalars of all its rows (TensorBoard reads each
    tag as its own curve). The events are encoded here: an event is a few fixed
    protobuf fields, and each scalar is its tag's bytes, built once, and 4 bytes of
    float; the file is TFRecord framing checksummed by `crc32c`'s C code. That
    writes a chunk's rows about 6x faster than building protobuf messages, and it
    runs on the recorder thread while both CPU cores train.
    """

    def __init__(self, run_dir: Path):
        from crc32c import crc32c
        self._crc = crc32c
        directory = run_dir / "tb"
        directory.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
        self._file = open(directory / name, "ab")
        self._tag_lists: dict[tuple, list[bytes]] = {}
        self._file.write(self._record(_event(time.time(), 0, b"\x1a" + _bytes_field(b"brain.Event:2"))))
        self._file.flush()

    def _tags(self, member: int, seed, names: tuple) -> list[bytes]:
        """Each name's `Summary.value` entry up to its float: tag and field keys."""
        key = (member, seed, names)
        tags = self._tag_lists.get(key)
        if tags is None:
            prefix = (f"m{member}/" if member else "") + ("mean" if seed == "mean" else f"seed{seed}")
            tags = self._tag_lists[key] = [_value_prefix(f"{prefix}/{k}") for k in names]
        return tags

    def _record(self, data: bytes) -> bytes:
        header = _U64(len(data))
        return header + _U32(_masked(self._crc(header))) + data + _U32(_masked(self._crc(data)))

    def log(self, rows: list[dict], stream: str = "metrics") -> None:
        rows = _streamed(rows, stream)
        isfinite = math.isfinite
        by_step: dict[int, list[bytes]] = {}
        keys = None
        names: tuple[str, ...] = ()  # set by the first row
        for row in rows:
            if row.keys() != keys:  # the rows of a chunk share their keys
                keys, names = row.keys(), tuple(k for k in row if k not in ROW_KEYS)
            tags = self._tags(row["member"], row["seed"], names)
            by_step.setdefault(row["step"], []).extend(
                t + _f32(v) for t, v in zip(tags, [row[k] for k in names]) if isfinite(v))
        now = time.time()
        self._file.write(b"".join(self._record(_event(now, step, b"\x2a" + _bytes_field(b"".join(values))))
                                  for step, values in by_step.items()))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


_U32, _U64, _F32, _F64 = (struct.Struct(f).pack for f in ("<I", "<Q", "<f", "<d"))
_F32_MAX = float(np.finfo(np.float32).max)


def _f32(v: float) -> bytes:
    """`v` as a little-endian float32 (a finite float64 beyond float32's range as infinity)."""
    return _F32(v if abs(v) <= _F32_MAX else math.copysign(math.inf, v))


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _bytes_field(data: bytes) -> bytes:
    """A length-delimited protobuf field's length and data (its key byte comes before)."""
    return _varint(len(data)) + data


def _value_prefix(tag: str) -> bytes:
    """`Summary.value` (field 1) holding `Value{tag (1), simple_value (2, float32)}`, up to the float's 4 bytes."""
    value = b"\x0a" + _bytes_field(tag.encode()) + b"\x15"
    return b"\x0a" + _varint(len(value) + 4) + value


def _event(wall_time: float, step: int, payload: bytes) -> bytes:
    """`Event{wall_time (1, double), step (2, int64)}` followed by `payload` (its other fields, encoded)."""
    return b"\x09" + _F64(wall_time) + b"\x10" + _varint(step) + payload


def _masked(crc: int) -> int:
    """TFRecord's masked CRC32C."""
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class WandbSink:
    """Weights & Biases; `WANDB_MODE=offline` writes a local run with no network."""

    def __init__(self, run_dir: Path, config: dict, name: str, resume_id: str | None = None, **options):
        """`options`: the keys of RunSpec.wandb, as `pjrl_agents.run.spec.WandbOptions` declares them."""
        from pjrl_agents.run.spec import WandbOptions
        try:
            import wandb
        except ImportError:
            raise ImportError("--wandb needs the wandb package: pip install wandb "
                              "(or pip install 'pjrl[wandb]')") from None
        self.wandb = wandb
        self.run = wandb.init(**vars(WandbOptions(**options)), name=name, config=config,
                              dir=str(run_dir), id=resume_id, resume="allow" if resume_id else None)

    def log(self, rows: list[dict], stream: str = "metrics") -> None:
        rows = _streamed(rows, stream)
        by_step: dict[int, dict] = {}
        for row in rows:
            prefix = (f"m{row['member']}/" if row["member"] else "") + (
                "mean" if row["seed"] == "mean" else f"seed{row['seed']}")
            entry = by_step.setdefault(row["step"], {})
            entry.update({f"{prefix}/{k}": v for k, v in row.items() if k not in ROW_KEYS})
        for step, values in sorted(by_step.items()):
            self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


def _streamed(rows: list[dict], stream: str) -> list[dict]:
    """Rows as TensorBoard and W&B take them: the PBT stream's values under `pbt/` (`seed0/pbt/lr`)."""
    if stream != "pbt":
        return rows
    return [{k if k in ROW_KEYS else f"pbt/{k}": v for k, v in row.items()} for row in rows]


class Console:
    """One progress line per chunk (at most every `every_s` seconds): steps, SPS, return, ETA; one line per
    evaluation and per exploit/explore step. Steps are counted from `start_step`, time from construction."""

    def __init__(self, total_steps: int, write: Callable[[str], None] = print, every_s: float = 1.0,
                 start_step: int = 0):
        self.total_steps, self.write, self.every_s = total_steps, write, every_s
        self.start_step, self.started = start_step, time.perf_counter()
        self._last = 0.0

    def log(self, rows: list[dict], stream: str = "metrics") -> None:
        own = [r for r in rows if r["seed"] != "mean"]
        if not own:
            return
        step = max(r["step"] for r in own)
        if stream == "metrics":
            last = [r["episode_return"] for r in own if r["step"] == step]
            self.progress(step, step - self.start_step, time.perf_counter() - self.started, nanmean(last),
                          step >= self.total_steps)
        elif stream == "eval":
            first = [r for r in own if r["member"] == 0]
            self.write(f"eval at step {step:,}: greedy return {nanmean([r['greedy_return'] for r in first]):.2f}, "
                       f"stochastic {nanmean([r['stochastic_return'] for r in first]):.2f} (mean over seeds)")
        elif stream == "pbt":
            self.write(_pbt_line(own, step))

    def close(self) -> None:
        pass

    def progress(self, steps: int, new_steps: int, elapsed: float, episode_return: float, done: bool) -> None:
        now = time.perf_counter()
        if not done and now - self._last < self.every_s:
            return
        self._last = now
        sps = new_steps / max(elapsed, 1e-9)
        eta = (self.total_steps - steps) / max(sps, 1e-9)
        shown = f"{episode_return:9.2f}" if math.isfinite(episode_return) else f"{'n/a':>9s}"
        self.write(f"step {steps:>12,}/{self.total_steps:,} | {sps:>10,.0f} steps/s | "
                   f"return {shown} | ETA {eta:6.1f}s")


def _pbt_line(rows: list[dict], step: int) -> str:
    num_seeds = 1 + max(r["seed"] for r in rows)
    replaced = sum(r["parent"] != r["member"] * num_seeds + r["seed"] for r in rows)
    scores = np.asarray([r["score"] for r in rows], np.float64)
    best = rows[int(np.argmax(np.where(np.isnan(scores), -np.inf, scores)))]
    settings = ", ".join(f"{k}={v:.3g}" for k, v in best.items() if k not in (*ROW_KEYS, "score", "parent"))
    return (f"pbt at step {step:,}: {replaced} of {len(rows)} members copied better ones; "
            f"best score {best['score']:.2f} ({settings})")


def open_sinks(run_dir: Path, spec: Any, resume: bool, write: Callable[[str], None] | None,
               total_steps: int, start_step: int) -> list[Sink]:
    """The sinks `spec` (a RunSpec) asks for, in process 0: files always, TensorBoard, W&B, the console."""
    sinks: list[Sink] = [FileSink(run_dir)]
    if spec.tensorboard:
        sinks.append(TensorBoardSink(run_dir))
    if spec.wandb is not None:
        sinks.append(WandbSink(run_dir, spec.to_dict(), name=run_dir.name, resume_id=run_dir.name if resume else None,
                               **spec.wandb))
    if write is not None:
        sinks.append(Console(total_steps, write, start_step=start_step))
    return sinks


def read_metrics(run_dir: str | os.PathLike, damaged: list[int] | None = None,
                 name: str = "metrics.jsonl") -> list[dict[str, Any]]:
    """The rows of `run_dir/metrics.jsonl` (or of `name`, e.g. eval.jsonl; `null` read back as NaN). Lines
    that cannot be read (a write cut off by a kill or a full disk) are left out; their line numbers are
    appended to `damaged`."""
    return read_jsonl(Path(run_dir) / name, damaged)
