"""Trains a run spec: many seeds (and sweep members) in one compile, streamed to a run directory.

    set-up      build the spec (run/experiment.py), take the run directory (run/rundir.py)
    compile     the init and chunk programs, side by side (run/loop.py: chunk_fn, Pace)
    start       from update 0, or from the newest readable checkpoint (--resume)
    loop        chunk after chunk; each finished chunk's rows go to the sinks (run/sinks.py) on a
                recorder thread while the next chunk trains; at a boundary the hooks run
                (run/hooks.py: checkpoints, evaluations; search/pbt.py: exploit/explore)
    finish      the summary, the greedy evaluation, the best PBT member; one line if it stopped early
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jax
import numpy as np

from pjrl_agents.config import ConfigError
from pjrl_agents.numeric import final_returns, nanmean, run_index
from pjrl_agents.run import processes, rundir, sinks
from pjrl_agents.run.checkpoint import Checkpointer, has_checkpoint
from pjrl_agents.run.checkpoint import steps as checkpoint_steps
from pjrl_agents.run.experiment import build
from pjrl_agents.run.hooks import Checkpoints, Evaluations
from pjrl_agents.run.loop import (
    DivergenceWatch,
    Interrupted,
    Pace,
    Recorder,
    StopFlag,
    chunk_fn,
    chunk_lowering,
    recording,
    run_chunks,
)
from pjrl_agents.run.rundir import default_out
from pjrl_agents.run.spec import RunSpec, read_run
from pjrl_agents.search.pbt import PBT, Exploit
from pjrl_envs import prng

__all__ = ["DiskFull", "Diverged", "Interrupted", "Run", "default_out", "enable_compilation_cache", "resume", "train"]


class Diverged(RuntimeError):
    """A loss or parameter became non-finite; the run stopped and kept its last finite checkpoint."""


class DiskFull(RuntimeError):
    """The disk filled up mid-run; the checkpoints and metrics written before are intact."""


def enable_compilation_cache() -> str | None:
    """Turns on JAX's persistent compilation cache (PJRL_CACHE_DIR; 'off' disables it)."""
    path = os.environ.get("PJRL_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "pjrl", "jax"))
    if path.lower() in ("", "off", "0", "none"):
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


@dataclasses.dataclass
class _Trained:
    """Where the loop left a run."""

    state: Any
    status: str
    """finished, interrupted or diverged"""
    done: int
    run_s: float
    diverged: dict | None
    signum: int
    """the signal that stopped an interrupted run"""


@dataclasses.dataclass
class _Hooks:
    """The hooks of one run, in the order they run at a shared boundary, and the sinks they write to."""

    evaluations: Evaluations
    exploit: Exploit | None
    checkpoints: Checkpoints
    sinks: list

    def __iter__(self):
        return iter([self.evaluations, *([self.exploit] if self.exploit else []), self.checkpoints])


class Run:
    """A run directory and the compiled functions that train it."""

    def __init__(self, spec: RunSpec, out: Path, resume: bool = False):
        self.out, self.resume = out, resume
        try:
            self.experiment = build(spec)
        except ConfigError as e:
            if not resume or not spec.devices or spec.devices == len(jax.devices()):
                raise
            raise ConfigError(f"{out} was trained over {spec.devices} devices and this run sees "
                              f"{len(jax.devices())} ({jax.process_count()} process(es)); its checkpoints resume on "
                              f"the layout they hold: start it with {spec.devices} devices in all (e.g. the same "
                              f"--num-processes as before) ({e})") from None
        # run.json records every setting resolved and the device count used: `--config run.json` repeats the run
        self.spec = dataclasses.replace(spec, settings=dataclasses.asdict(self.experiment.config),
                                        devices=self.experiment.plan.num_devices)
        self.writer = processes.is_main_process()  # process 0 alone writes logs; checkpoints are written by all
        self.checkpoints: Checkpoints | None = None
        if resume:
            rundir.check_unchanged(self.out, self.spec.to_dict())
        # every process of a multi-process run uses process 0's directory, which all of them must see
        self.out = processes.shared_directory(self.out, self._prepare if self.writer else None)

    def _prepare(self) -> None:
        self.lock = rundir.prepare(self.out, self.spec.to_dict(), self.resume)

    def train(self, progress: Callable[[str], None] | None = print) -> dict:
        try:
            with StopFlag() as stop:
                return self._train(progress, stop)
        except Exception as e:
            if processes.peer_failed(e):
                self._stop_for_peer(e)
            if not isinstance(e, OSError) or e.errno != errno.ENOSPC:
                raise
            raise DiskFull(f"the disk is full ({e.filename or self.out}); the checkpoints and metrics written "
                           f"before are intact: free some space and continue with --resume {self.out}") from None
        finally:
            if self.writer:
                self.lock.release()

    def _train(self, progress: Callable[[str], None] | None, stop: StopFlag) -> dict:
        spec, ex = self.spec, self.experiment
        say = progress if progress and self.writer else (lambda line: None)
        planned, steps = ex.config.total_timesteps, ex.num_updates * ex.agent.steps_per_update
        if steps != planned:
            say(f"total_timesteps {planned:,} is {ex.num_updates:,} updates of {ex.agent.steps_per_update:,} env "
                f"steps: {steps:,} steps per run")
        population = PBT.from_dict(spec.pbt) if spec.pbt is not None else None
        pace = Pace.for_run(ex.num_updates, spec.chunks, (spec.checkpoint_every, spec.eval_every,
                                                          population and population.every))
        cache_dir = enable_compilation_cache()
        t0 = time.perf_counter()
        init, chunk, state_shape = _compile(ex, pace.longest, shared=population is None)
        compile_s = time.perf_counter() - t0
        if processes.any_process(stop.requested):
            raise Interrupted(f"stopped while compiling, before update 1; start it again with --resume {self.out}",
                              stop.signum)
        # a final checkpoint is always written (for eval and resume); every process writes its shards of each
        # checkpoint (orbax commits it once all have)
        checkpointer = Checkpointer(self.out)
        start, state, history = _start(self.out, self.resume, self.writer, checkpointer, state_shape, init, say)
        self.checkpoints = Checkpoints(checkpointer, spec.checkpoint_every, start if self.resume and start else None)
        outputs = sinks.open_sinks(self.out, spec, self.resume, progress, ex.num_updates * ex.steps_per_update,
                                   start * ex.steps_per_update) if self.writer else []
        hooks = _Hooks(Evaluations(ex, spec.eval_every, outputs, self.writer and jax.process_count() == 1),
                       Exploit(population, spec, ex, history, outputs, self.out, self.writer)
                       if population is not None else None,
                       self.checkpoints, outputs)
        trained = self._chunks(chunk, state, start, hooks, pace, history, stop)
        summary = _summary(spec, ex, history, trained, start, compile_s, cache_dir, self.resume)
        return _finish(summary, trained, hooks, self.out, self.writer, ex.num_updates, say)

    def _chunks(self, chunk: Callable, state: Any, start: int, hooks: _Hooks, pace: Pace, history: list[dict],
                stop: StopFlag) -> _Trained:
        """Trains chunk after chunk (`loop.run_chunks`); no state after a divergence is saved."""
        watch = DivergenceWatch(self.spec.num_seeds)
        recorder = Recorder(recording(watch, hooks.sinks, history, self.spec.num_seeds,
                                      self.experiment.steps_per_update))
        try:
            t0 = time.perf_counter()
            state, status, done = run_chunks(chunk, state, start, self.experiment.num_updates, list(hooks), pace,
                                             recorder, watch, stop)
            run_s = time.perf_counter() - t0
            if not watch.diverged:
                hooks.checkpoints.final(state, done)
        except Exception as e:
            if processes.peer_failed(e):  # before the clean-up below, which would wait for the dead peer
                self._stop_for_peer(e)
            raise
        finally:
            recorder.close()
            for sink in hooks.sinks:
                sink.close()
            hooks.checkpoints.close()
        diverged = watch.diverged
        return _Trained(state, status, diverged["update"] if diverged else done, run_s, diverged, stop.signum)

    def _stop_for_peer(self, error: BaseException) -> None:
        first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        last_saved = self.checkpoints.last_saved if self.checkpoints else None
        kept = (f"the last complete checkpoint is update {last_saved}" if last_saved
                else "no checkpoint was complete yet")
        processes.stop_for_peer(f"process {jax.process_index()} stopped: another process of the run died or "
                                f"stopped answering ({first[:160]}); {kept}: start every process again with "
                                f"--resume {self.out}")


def _compile(ex: Any, longest: int, shared: bool) -> tuple[Callable, Callable, Any]:
    """The compiled init and chunk programs, and the state's shapes (runs sharded over the plan's mesh;
    plain jit on one device). A stop asked for meanwhile takes effect once XLA returns: nothing is lost,
    run.json allows --resume."""
    keys, configs = ex.inputs()
    # init runs once: lowered with JAX's looped Threefry where that compiles faster (one run, unbatched:
    # CartPole DQN 2.0 -> 1.1 s; batched it compiles slower), the same bits
    unbatched = ex.num_runs == 1 and ex.plan.mesh is None  # one run, traced without vmap
    with prng.looped() if unbatched else contextlib.nullcontext():
        init_program = ex.init_fn.lower(keys, configs)
    state_shape = ex.abstract_state()  # refuses a state that breaks the agent contract
    # what every run shares enters each update as constants (no sweep, no PBT: one member)
    config = ex.member_configs()[0] if len(ex.members) == 1 and shared else None
    with chunk_lowering(ex.agent, unbatched):
        chunk_program = ex.plan.jit(chunk_fn(ex.agent, longest, config, ex.algorithm.name),
                                    in_axes=(0, None, None), metrics=True).lower(state_shape, 0, 0)
    with ThreadPoolExecutor(1) as pool:  # the two programs compile side by side
        compiling_init = pool.submit(init_program.compile)
        chunk = chunk_program.compile()
        init = compiling_init.result()
    return (lambda: init(keys, configs)), chunk, state_shape


def _start(out: Path, resume: bool, writer: bool, checkpointer: Checkpointer, state_shape: Any,
           init: Callable, say: Callable[[str], None]) -> tuple[int, Any, list[dict]]:
    """`(update, state, metric rows so far)`: a fresh start, or the newest readable checkpoint (--resume),
    with the logs cut back to it."""
    if not (resume and has_checkpoint(out)):
        if resume and writer:
            say(f"{out} holds no checkpoint yet: training it from update 0")
            rundir.keep_rows_until(out, 0, [])
        return 0, init(), []
    start, state = checkpointer.restore(state_shape)
    for step, why in checkpointer.skipped:
        say(f"checkpoint {step} cannot be read ({why}); resuming from checkpoint {start}")
    aside = checkpointer.set_aside_skipped() if writer else None
    if checkpointer.skipped and jax.process_count() > 1:
        processes.barrier("pjrl-set-aside")
        checkpointer.reload()
    if aside:
        say(f"the unreadable checkpoints are kept in {aside}")
    damaged: list[int] = []
    history = [r for r in sinks.read_metrics(out, damaged) if r["update"] <= start]
    if damaged:
        say(f"metrics.jsonl: dropped {len(damaged)} damaged line(s) (lines {', '.join(map(str, damaged[:5]))})")
    if writer:
        rundir.keep_rows_until(out, start, history)
    return start, state, history


def _summary(spec: RunSpec, ex: Any, history: list[dict], trained: _Trained, start: int, compile_s: float,
             cache_dir: str | None, resume: bool) -> dict:
    """summary.json's entries from the logged rows (the greedy evaluation and PBT's best are added after)."""
    done, run_s, status = trained.done, trained.run_s, trained.status
    returns = np.full((ex.num_runs, done), np.nan)
    for r in history:
        returns[run_index(r["member"], r["seed"], spec.num_seeds), r["update"] - 1] = r["episode_return"]
    finals = final_returns(returns).reshape(len(ex.members), spec.num_seeds)
    new_steps = (done - start) * ex.steps_per_update * ex.num_runs
    summary = {
        "env": spec.env, "algo": spec.algo, "status": status,
        "total_timesteps": done * ex.steps_per_update, "planned_timesteps": ex.num_updates * ex.steps_per_update,
        "num_seeds": spec.num_seeds, "seed": spec.seed,
        "final_return_mean": float(finals[0].mean()),
        "final_return_per_seed": [float(x) for x in finals[0]],
        "compile_s": round(compile_s, 3), "run_s": round(run_s, 3),
        "steps_per_s": round(new_steps / max(run_s, 1e-9)),
        "num_updates": done, "resumed_from_update": start if resume else None,
        "compilation_cache": cache_dir, "config": spec.settings,
    }
    if spec.sweep:
        summary["members"] = [{"settings": m, "final_return_mean": float(f.mean()),
                               "final_return_per_seed": [float(x) for x in f]}
                              for m, f in zip(ex.members, finals)]
    return summary


def _finish(summary: dict, trained: _Trained, hooks: _Hooks, out: Path, writer: bool, num_updates: int,
            say: Callable[[str], None]) -> dict:
    """Completes and writes RUN/summary.json, however training stopped; raises Interrupted or Diverged where it
    stopped early."""
    last_saved = hooks.checkpoints.last_saved
    if trained.status == "finished" and hooks.evaluations.greedy_due():
        greedy, per_member = hooks.evaluations.greedy(trained.state, say)
        summary.update(greedy)
        for member, per_seed in zip(summary.get("members", []), per_member):
            member["final_greedy_return_mean"] = nanmean(per_seed)
            member["final_greedy_return_per_seed"] = per_seed
    if hooks.exploit is not None and trained.status == "finished":
        summary["pbt"] = hooks.exploit.best(trained.state, trained.done)
    if trained.diverged:
        summary["diverged"] = {**trained.diverged, "last_finite_checkpoint": last_saved}
    if writer:
        rundir.write_summary(out, summary)
    if trained.status == "interrupted":
        raise Interrupted(f"stopped at update {trained.done}/{num_updates}; resume with --resume {out}",
                          trained.signum)
    if trained.diverged:
        d = trained.diverged
        kept = (f"the last finite checkpoint, update {last_saved}, is kept" if last_saved is not None else
                "no checkpoint was written before it (set --checkpoint-every to keep some)")
        raise Diverged(f"diverged at update {d['update']} ({d['what']} not finite in member {d['member']} "
                       f"seed {d['seed']}): lower lr or set max_grad_norm; {kept}; see {out}/summary.json")
    return {**summary, "out": str(out)}


def train(spec: RunSpec, out: str | os.PathLike | None = None,
          progress: Callable[[str], None] | None = print) -> dict:
    """Trains every seed of every sweep member of `spec`; writes the run directory and returns the summary.

    Only process 0 writes (see pjrl_agents.run.processes).
    """
    return Run(spec, Path(out) if out else default_out(spec.env, spec.algo)).train(progress)


def resume(run_dir: str | os.PathLike, progress: Callable[[str], None] | None = print) -> dict:
    """Continues an interrupted run from its latest readable checkpoint to its planned total.

    A run that already finished is left as it is and its summary returned.
    """
    run_dir = Path(run_dir)
    spec = read_run(run_dir)
    summary = rundir.read_summary(run_dir)
    if summary.get("status") == "finished" and summary.get("num_updates") in checkpoint_steps(run_dir):
        if progress:
            progress(f"{run_dir} finished all {summary['num_updates']} updates already; nothing to resume")
        return {**summary, "out": str(run_dir)}
    return Run(spec, run_dir, resume=True).train(progress)
