"""Helpers for benchmark scripts: timing with compile apart, the reference as a subprocess."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax

from pjrl_agents import distributed


def time_compiled(fn, *args, repeats: int = 3) -> dict:
    """Compile `fn` (a jitted function) for `args`, then run it `repeats` times."""
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    runs, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        runs.append(time.perf_counter() - t0)
    return {"compile_s": compile_s, "run_s": statistics.median(runs), "run_s_all": runs, "out": out}


def seeds_program(train, keys, cores: bool = False):
    """`(fn, keys)` to time: `train` over `keys` on one device (vmapped; one seed runs unbatched), or (`cores`)
    with the seeds split over the devices; both as `pjrl train` runs them (`distributed.plan`)."""
    if not cores:
        return distributed.plan(1, 1, len(keys)).jit(train, in_axes=(0,)), keys
    plan = distributed.plan(None, 1, len(keys))
    return plan.jit(train, in_axes=(0,)), plan.put(keys)


def run_reference(path: str, args: list[str], timeout: float | None = None) -> dict | None:
    """Runs the reference script (same Python) and returns its JSON line, or None on failure.

    `timeout` (seconds) guards against the reference hanging: flax's QR-based
    orthogonal init, vmapped over seeds, can deadlock XLA's CPU thread pool. The
    reference runs with XLA_FLAGS as this process started (without pjrl's `CPU_FLAGS`).
    """
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if distributed.USER_XLA_FLAGS is not None:
        env["XLA_FLAGS"] = distributed.USER_XLA_FLAGS
    try:
        res = subprocess.run([sys.executable, path, *args], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        print(f"reference gave no result in {timeout:.0f}s (a hang in its batched QR init on CPU); "
              "run again", file=sys.stderr)
        return None
    lines = [l for l in res.stdout.splitlines() if l.startswith("{")]
    if res.returncode != 0 or not lines:
        print(f"reference failed ({res.returncode}): {res.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def pjrl_train(steps: int, runs: int = 3, seeds: int = 1, algo: str = "ppo") -> dict:
    """What users run: `pjrl train --algo ALGO` (files and TensorBoard on) `runs` times sharing a fresh
    persistent cache. Returns the cold compile (first run), the warm one (median of the others) and
    the median run s."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PJRL_CACHE_DIR": os.path.join(tmp, "cache")}
        out = []
        for i in range(runs):
            run_dir = os.path.join(tmp, f"run{i}")
            subprocess.run([sys.executable, "-m", "pjrl_agents.cli", "train", "--algo", algo, "--total-timesteps",
                            str(steps), "--num-seeds", str(seeds), "--quiet", "--out", run_dir], env=env, check=True,
                           capture_output=True)
            out.append(json.loads(Path(run_dir, "summary.json").read_text()))
    return {"compile_cold_s": out[0]["compile_s"],
            "compile_warm_s": statistics.median([o["compile_s"] for o in out[1:]]),
            "run_s": statistics.median([o["run_s"] for o in out])}


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"
