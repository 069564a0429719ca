"""Trains a run spec: many seeds (and sweep members) in one compile, streamed to a run directory.

The update scan is cut into chunks of K updates: each chunk is one call of a
compiled, vmapped `lax.scan`, so metrics leave the device every K updates (to
the console, files, TensorBoard, W&B) while the device holds only the current
state and K rows of scalars; checkpoints are written between chunks.
"""
from __future__ import annotations

import dataclasses
import json
import os
import queue
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from pjrl_agents import distributed
from pjrl_agents import logging as sinks
from pjrl_agents.checkpoint import CheckpointError, Checkpointer, has_checkpoint
from pjrl_agents.common import ConfigError
from pjrl_agents.experiment import RunSpec, build, final_returns, read_run

MIN_FREE_BYTES = 64 << 20


def enable_compilation_cache() -> str | None:
    """Turns on JAX's persistent compilation cache (PJRL_CACHE_DIR; 'off' disables it)."""
    path = os.environ.get("PJRL_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "pjrl", "jax"))
    if path.lower() in ("", "off", "0", "none"):
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


class Run:
    """A run directory and the compiled functions that train it."""

    def __init__(self, spec: RunSpec, out: Path, resume: bool = False):
        self.out, self.resume = out, resume
        self.experiment = build(spec)
        # run.json records every setting resolved and the device count used: `--config run.json` repeats the run
        self.spec = dataclasses.replace(spec, settings=dataclasses.asdict(self.experiment.config),
                                        devices=self.experiment.plan.num_devices)
        self.writer = distributed.is_main_process()  # process 0 alone writes logs and checkpoints
        # orbax writes a sharded state from every process together; a multi-process run keeps none
        self.checkpoints = jax.process_count() == 1
        if self.writer:
            self._prepare_directory()

    # ------------------------------------------------------------ set-up, before compiling

    def _prepare_directory(self) -> None:
        out = self.out
        if self.resume:
            if not has_checkpoint(out):
                raise CheckpointError(f"{out} holds no checkpoint to resume from")
            return
        if (out / "run.json").exists():
            raise ConfigError(f"{out} already holds a run; continue it with --resume {out} or choose another --out")
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe = out / ".write-test"
            probe.write_bytes(b"0" * 4096)
            probe.unlink()
        except OSError as e:
            raise ConfigError(f"cannot write to --out {out}: {e.strerror or e}") from None
        free = shutil.disk_usage(out).free
        if free < MIN_FREE_BYTES:
            raise ConfigError(f"only {free >> 20} MiB free at {out}; a run needs at least {MIN_FREE_BYTES >> 20} MiB")
        (out / "run.json").write_text(json.dumps(self.spec.to_dict(), indent=2))

    # ------------------------------------------------------------ training

    def train(self, progress: Callable[[str], None] | None = print) -> dict:
        spec, ex = self.spec, self.experiment
        num_updates, steps_per_update = ex.num_updates, ex.steps_per_update
        chunk_len = max(1, -(-num_updates // spec.chunks))
        if spec.checkpoint_every:
            chunk_len = min(chunk_len, spec.checkpoint_every)
        cache_dir = enable_compilation_cache()

        # COMPILE (runs sharded over the plan's mesh; plain jit on one device)
        t0 = time.perf_counter()
        keys, configs = ex.inputs()
        init_fn = ex.plan.jit(ex.agent.init, in_axes=(0, 0), one_run_at_a_time=True)
        init = init_fn.lower(keys, configs).compile()
        state_shape = jax.eval_shape(init_fn, keys, configs)
        chunk = ex.plan.jit(_chunk_fn(ex.agent, chunk_len), in_axes=(0, None),
                            metrics=True).lower(state_shape, 0).compile()
        compile_s = time.perf_counter() - t0

        # START OR RESUME
        # a final checkpoint is always written (for eval and resume) where checkpoints are kept
        checkpointer = Checkpointer(self.out) if self.writer and self.checkpoints else _NoCheckpoints()
        history: list[dict] = []
        if self.resume:
            start, state = checkpointer.restore(state_shape)
            history = [r for r in sinks.read_metrics(self.out) if r["update"] <= start]
            _rewrite_metrics(self.out, history)
        else:
            start, state = 0, init(keys, configs)
        outputs = []
        if self.writer:
            outputs.append(sinks.FileSink(self.out))
            if spec.tensorboard:
                outputs.append(sinks.TensorBoardSink(self.out))
        if spec.wandb is not None and self.writer:
            outputs.append(sinks.WandbSink(self.out, spec.to_dict(), name=self.out.name,
                                           resume_id=self.out.name if self.resume else None, **spec.wandb))
        console = sinks.Console(num_updates * steps_per_update, progress) if progress and self.writer else None

        def record(metrics, first: int, n: int) -> None:
            """One finished chunk's metrics to rows, sinks and the console (on the recorder's thread)."""
            metrics = {k: np.asarray(v)[:, :n] for k, v in jax.device_get(metrics).items()}
            rows = sinks.chunk_rows(metrics, first, steps_per_update, spec.num_seeds)
            rows += sinks.mean_rows(rows)
            for sink in outputs:
                sink.log(rows)
            history.extend(r for r in rows if r["seed"] != "mean")
            if console:
                last = first + n
                console.progress(last * steps_per_update, (last - start) * steps_per_update,
                                 time.perf_counter() - t0, float(metrics["episode_return"][:, -1].mean()),
                                 last >= num_updates)

        # TRAIN, chunk by chunk: chunk k+1 is dispatched before chunk k's metrics are written, so the
        # device trains while the host writes; SIGINT/SIGTERM stop after the chunk in flight
        stop, recorder = _StopFlag(), _Recorder(record)
        status, t0, done = "finished", time.perf_counter(), start
        last_saved, finished = start, None  # finished: (metrics, first update, updates) not yet recorded
        try:
            with stop:
                while done < num_updates:
                    state, metrics = chunk(state, done)  # dispatched; runs while the host goes on
                    if finished is not None:
                        jax.block_until_ready(finished[0])  # at most one chunk queued behind the running one
                        recorder.put(*finished)
                    n = min(chunk_len, num_updates - done)
                    finished, done = (metrics, done, n), done + n
                    if spec.checkpoint_every and done // spec.checkpoint_every > last_saved // spec.checkpoint_every:
                        recorder.put(*finished)  # the logs reach the checkpoint before it is written
                        finished = None
                        recorder.wait()
                        checkpointer.save(done, state)
                        last_saved = done
                    if stop.requested:
                        status = "interrupted"
                        break
            if finished is not None:
                recorder.put(*finished)
            recorder.wait()
            jax.block_until_ready(state)
            run_s = time.perf_counter() - t0
            if last_saved != done:
                checkpointer.save(done, state)
        finally:
            recorder.close()
            for sink in outputs:
                sink.close()
            checkpointer.close()

        summary = self._summary(history, done, compile_s, run_s, start, cache_dir, status)
        if self.writer:
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        if status == "interrupted":
            raise KeyboardInterrupt(f"stopped at update {done}/{num_updates}; resume with --resume {self.out}")
        return {**summary, "out": str(self.out)}

    def _summary(self, history, done, compile_s, run_s, start, cache_dir, status) -> dict:
        spec, ex = self.spec, self.experiment
        returns = np.full((ex.num_runs, done), np.nan)
        for r in history:
            returns[r["member"] * spec.num_seeds + r["seed"], r["update"] - 1] = r["episode_return"]
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
            "num_updates": done, "resumed_from_update": start if self.resume else None,
            "compilation_cache": cache_dir, "config": spec.settings,
        }
        if spec.sweep:
            summary["members"] = [{"settings": m, "final_return_mean": float(f.mean()),
                                   "final_return_per_seed": [float(x) for x in f]}
                                  for m, f in zip(ex.members, finals)]
        return summary


class _Recorder:
    """Runs `record(metrics, first_update, updates)` for each finished chunk, in order, on one thread."""

    def __init__(self, record: Callable):
        self._record, self._queue, self._error = record, queue.Queue(), None
        self._thread = threading.Thread(target=self._work, name="pjrl-recorder", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                if self._error is None:
                    self._record(*item)
            except BaseException as e:  # noqa: BLE001 - raised again on the training thread
                self._error = e
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def put(self, metrics, first: int, n: int) -> None:
        self._queue.put((metrics, first, n))

    def wait(self) -> None:
        """Returns once everything put is recorded; raises what recording raised."""
        self._queue.join()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


class _NoCheckpoints:
    """Stands in for the Checkpointer in processes that do not write."""

    def save(self, update, state):
        pass

    def close(self):
        pass


def _chunk_fn(agent, chunk_len: int):
    """`(state, first_update) -> (state, metrics (chunk_len,))`; updates past the end are skipped."""
    num_updates = agent.num_updates

    def run_chunk(state, start):
        metric_shape = jax.eval_shape(lambda s: agent.update(s)[1], state)
        skip = lambda s: (s, jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), metric_shape))
        body = lambda s, i: jax.lax.cond(i < num_updates, agent.update, skip, s)
        return jax.lax.scan(body, state, start + jnp.arange(chunk_len))

    return run_chunk


class _StopFlag:
    """Turns SIGINT/SIGTERM into a flag checked between chunks, so a stop loses no work."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def _handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _rewrite_metrics(out: Path, rows: list[dict]) -> None:
    """Drops logged rows past the checkpoint a run resumes from."""
    for name in ("metrics.jsonl", "metrics.csv"):
        (out / name).unlink(missing_ok=True)
    if rows:
        sink = sinks.FileSink(out)
        sink.log(rows)
        sink.close()


def default_out(env: str, algo: str) -> Path:
    return Path("runs") / f"{env.replace(':', '-')}-{algo}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(spec: RunSpec, out: str | os.PathLike | None = None,
          progress: Callable[[str], None] | None = print) -> dict:
    """Trains every seed of every sweep member of `spec`; writes the run directory and returns the summary.

    Only process 0 writes (see pjrl_agents.distributed).
    """
    return Run(spec, Path(out) if out else default_out(spec.env, spec.algo)).train(progress)


def resume(run_dir: str | os.PathLike, progress: Callable[[str], None] | None = print) -> dict:
    """Continues an interrupted run from its latest checkpoint to its planned total."""
    run_dir = Path(run_dir)
    return Run(read_run(run_dir), run_dir, resume=True).train(progress)
