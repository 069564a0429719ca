"""Helpers for benchmark scripts: timing with compile apart, the reference as a subprocess."""
from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax

from pjrl_agents.run import devices, xla_cpu


def time_compiled(fn, *args, repeats: int = 3) -> dict:
    """Compile `fn` (a jitted function) for `args`, then run it `repeats` times."""
    prog = Program(fn, *args)
    compile_s = prog.compile()
    runs = [prog.run() for _ in range(repeats)]
    return {"compile_s": compile_s, "run_s": statistics.median(runs), "run_s_all": runs, "out": prog.out}


def seeds_program(train, keys, cores: bool = False):
    """`(fn, keys)` to time: `train` over `keys` on one device (vmapped; one seed runs unbatched), or (`cores`)
    with the seeds split over the devices; both as `pjrl train` runs them (`devices.plan`)."""
    if not cores:
        return devices.plan(1, 1, len(keys)).jit(train, in_axes=(0,)), keys
    plan = devices.plan(None, 1, len(keys))
    return plan.jit(train, in_axes=(0,)), plan.put(keys)


def run_reference(path: str, args: list[str], timeout: float | None = None) -> dict | None:
    """Runs the reference script (same Python) and returns its JSON line, or None on failure.

    `timeout` (seconds) guards against the reference hanging: flax's QR-based
    orthogonal init, vmapped over seeds, can deadlock XLA's CPU thread pool. The
    reference runs with XLA_FLAGS as this process started (without pjrl's `CPU_FLAGS`).
    """
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "PJRL_ADDED_XLA_FLAGS")}
    if xla_cpu.USER_XLA_FLAGS is not None:
        env["XLA_FLAGS"] = xla_cpu.USER_XLA_FLAGS
    try:
        res = subprocess.run([sys.executable, path, *args], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        print(f"reference gave no result in {timeout:.0f}s (a hang in its batched QR init on CPU); "
              "run again", file=sys.stderr)
        return None
    lines = [line for line in res.stdout.splitlines() if line.startswith("{")]
    if res.returncode != 0 or not lines:
        print(f"reference failed ({res.returncode}): {res.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1])


class Program:
    """A jitted program on fixed arguments: `compile()` times lowering and compiling it afresh (JAX's
    in-memory caches cleared first, so every compile is cold), `run()` times one run."""

    def __init__(self, fn, *args, lowering=None):
        self.fn, self.args, self.compiled, self.out = fn, args, None, None
        self.lowering = lowering or contextlib.nullcontext  # e.g. `loop.chunk_lowering`, as the runner lowers

    def compile(self) -> float:
        jax.clear_caches()
        t0 = time.perf_counter()
        with self.lowering():
            lowered = self.fn.lower(*self.args)
        self.compiled = lowered.compile()
        return time.perf_counter() - t0

    def run(self) -> float:
        t0 = time.perf_counter()
        self.out = jax.block_until_ready(self.compiled(*self.args))
        return time.perf_counter() - t0

    def close(self) -> None:
        pass


class ChildProgram:
    """A `Program` built by `build(cores)` and timed in a Python process of its own, started with
    XLA's concurrency-optimised CPU scheduler on or off (`scheduler`), as `pjrl train` would run its
    layout (`xla_cpu.wants_cpu_scheduler`; XLA reads the setting once per process). `out` is
    `(None, metrics)` of the last run."""

    def __init__(self, build, cores: bool, scheduler: bool):
        ctx = multiprocessing.get_context("spawn")
        self._conn, there = ctx.Pipe()
        self._out = None
        self._proc = ctx.Process(target=_serve, args=(there, build, cores, scheduler), daemon=True)
        self._proc.start()

    def _ask(self, what: str):
        self._conn.send(what)
        ok, value = self._conn.recv()
        if not ok:
            raise RuntimeError(f"the program's own process failed: {value}")
        return value

    def compile(self) -> float:
        return self._ask("compile")

    def run(self) -> float:
        self._out = None
        return self._ask("run")

    @property
    def out(self):
        """Fetched from the program's process once per run."""
        if self._out is None:
            self._out = self._ask("out")
        return self._out

    def close(self) -> None:
        self._conn.send("close")
        self._proc.join(timeout=60)


def _serve(conn, build, cores: bool, scheduler: bool) -> None:
    """A `ChildProgram`'s process: its XLA:CPU settings and devices before JAX starts, then what `conn` asks."""
    xla_cpu.use_cpu_flags(concurrent=scheduler)
    xla_cpu.use_cpu_cores()
    try:
        prog = build(cores)
    except BaseException as e:  # noqa: BLE001 - reported at the first question
        prog, failed = None, repr(e)
    while (what := conn.recv()) != "close":
        try:
            if prog is None:
                raise RuntimeError(failed)
            answers = {"compile": prog.compile, "run": prog.run, "out": lambda: (None, jax.device_get(prog.out[1]))}
            value = answers[what]()
            conn.send((True, value))
        except Exception as e:  # noqa: BLE001 - raised again in the parent
            conn.send((False, repr(e)))


class TrainCommand:
    """What users run: `pjrl train --algo ALGO --num-seeds SEEDS` (files and TensorBoard on), each call a
    new process sharing one fresh persistent cache: the first call compiles cold, the others warm."""

    def __init__(self, steps: int, seeds: int = 1, algo: str = "ppo", env: str | None = None,
                 settings: dict | None = None):
        sets = [f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in (settings or {}).items()]
        self.args = ["--algo", algo, "--total-timesteps", str(steps), "--num-seeds", str(seeds), "--quiet",
                     *(["--env", env] if env else []), *(a for s in sets for a in ("--set", s))]
        self._tmp = tempfile.TemporaryDirectory()
        self._env = {**os.environ, "PJRL_CACHE_DIR": os.path.join(self._tmp.name, "cache")}
        self._runs = 0

    def __call__(self) -> dict:
        """One run's summary.json (compile_s, run_s, ...)."""
        run_dir = os.path.join(self._tmp.name, f"run{self._runs}")
        self._runs += 1
        subprocess.run([sys.executable, "-m", "pjrl_agents.cli", "train", *self.args, "--out", run_dir],
                       env=self._env, check=True, capture_output=True)
        return json.loads(Path(run_dir, "summary.json").read_text())

    def close(self) -> None:
        self._tmp.cleanup()


def layouts(build, seeds: int, concurrent_runs: int = xla_cpu.CONCURRENT_RUNS) -> tuple[dict[str, Program], str]:
    """`({"one device": build(False), "cores": build(True)}, core)`: the seeds vmapped on one device and, above
    one seed with several devices, split over them; `core` names the layout `pjrl train` runs.

    A layout whose runs a device would run with XLA's concurrency-optimised CPU scheduler set
    otherwise than this process (`xla_cpu.wants_cpu_scheduler`, from the algorithm's `concurrent_runs`)
    is built and timed in a process of its own (`ChildProgram`); `build` must then pickle (a module-level
    function or a partial of one).
    """
    shares = {"one device": (False, seeds)}
    if seeds > 1 and jax.device_count() > 1:
        shares["cores"] = (True, seeds // xla_cpu.cpu_devices_for(seeds, jax.device_count()))
    programs = {}
    for name, (cores, per_device) in shares.items():
        scheduler = xla_cpu.wants_cpu_scheduler(per_device, concurrent_runs)
        on_cpu = jax.devices()[0].platform == "cpu"
        programs[name] = ChildProgram(build, cores, scheduler) \
            if on_cpu and scheduler != xla_cpu.cpu_scheduler_on() else build(cores)
    return programs, list(programs)[-1]


def add_round_flags(p) -> None:
    """--rounds, --repeats and --no-train for a script timed by `paired_rounds`."""
    p.add_argument("--rounds", type=int, default=3, help="rounds of pjrl, the reference and `pjrl train` side by "
                   "side (medians over them)")
    p.add_argument("--repeats", type=int, default=1, help="timed runs of each program per round (median)")
    p.add_argument("--no-train", action="store_true", help="leave out `pjrl train`")


def check_round_flags(p, a) -> None:
    for name in ("rounds", "repeats"):
        if getattr(a, name) < 1:
            p.error(f"--{name} {getattr(a, name)}: use 1 or more")


def paired_rounds(rounds: int, repeats: int, programs: dict[str, Program], reference=None,
                  train: TrainCommand | None = None, core: str | None = None) -> dict:
    """Times pjrl's programs, the reference and `pjrl train` side by side, `rounds` times over.

    This machine's speed drifts by tens of percent over minutes, more than the ratios
    measured, so each round compiles and runs every program (median of `repeats` runs),
    then the reference (`reference()`: its JSON line, compile and `repeats` runs of its
    own), then `pjrl train` once (warm cache) and the program it runs as (`core`) once
    straight after it. Ratios are taken within a round and reported as their median
    over the rounds, beside the medians of the figures. A cold `pjrl train` comes first
    (its compile is the cold figure; its run is not paired).
    """
    out = {name: {"compile_s": [], "run_s": []} for name in programs}
    refs, trains, cores, cold = [], [], [], train() if train else None
    for _ in range(rounds):
        for name, prog in programs.items():
            out[name]["compile_s"].append(prog.compile())
            out[name]["run_s"].append(statistics.median(prog.run() for _ in range(repeats)))
        if reference:
            refs.append(reference())
            if refs[-1] is None:
                raise SystemExit("the reference failed (its error is above)")
        if train:
            trains.append(train())
            cores.append(programs[core].run())
    res = {name: {"compile_s": statistics.median(r["compile_s"]), "run_s": statistics.median(r["run_s"]),
                  "run_s_rounds": r["run_s"]} for name, r in out.items()}
    if refs:
        ref = res["reference"] = {k: v for k, v in refs[-1].items() if k != "run_s_all"}
        ref.update(compile_s=statistics.median(r["compile_s"] for r in refs),
                   run_s=statistics.median(r["run_s"] for r in refs), run_s_rounds=[r["run_s"] for r in refs])
        ref["steps_per_s"] = round(ref["steps"] * ref["seeds"] / ref["run_s"])
        for name, r in out.items():  # above 1: pjrl is faster
            res[name]["speedup_run"] = statistics.median(f["run_s"] / x for f, x in zip(refs, r["run_s"]))
            res[name]["speedup_compile"] = statistics.median(f["compile_s"] / x for f, x in zip(refs, r["compile_s"]))
    if train:
        res["pjrl_train"] = {"compile_cold_s": cold["compile_s"],
                             "compile_warm_s": statistics.median(t["compile_s"] for t in trains),
                             "run_s": statistics.median(t["run_s"] for t in trains),
                             "core": core, "core_run_s": statistics.median(cores),
                             "train_over_core": statistics.median(t["run_s"] / c for t, c in zip(trains, cores))}
        train.close()
    return res


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"
