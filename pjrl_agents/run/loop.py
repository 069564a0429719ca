"""The training loop's parts: chunks of updates, their pace, the recorder thread, divergence, stops.

The update scan is cut into chunks: each chunk is one call of a compiled,
vmapped `lax.scan` (`chunk_fn`), so metrics leave the device every chunk while
the device holds only the current state and one chunk's rows of scalars. `Pace`
chooses each chunk's length, `Recorder` writes a finished chunk's rows while the
next one trains, `DivergenceWatch` finds the first non-finite update, and
`StopFlag` turns SIGINT/SIGTERM into a stop between chunks.
"""
from __future__ import annotations

import contextlib
import math
import queue
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pjrl_agents.algorithms.contract import EPISODE_METRICS, check_metrics
from pjrl_agents.numeric import all_finite, member_seed
from pjrl_agents.run import processes
from pjrl_envs import prng


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the run; what was trained is checkpointed. `signum` says which."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = signum


def chunk_lowering(agent, unbatched: bool):
    """The context a training program of `agent` is lowered in: `prng.held()` for one unbatched run of an
    agent that asks for it (`holds_keys`; one CartPole DQN seed compiles 4.9 -> 3.6 s), else none."""
    return prng.held() if unbatched and agent.holds_keys else contextlib.nullcontext()


class Pace:
    """How many updates each chunk runs: from `shortest` (the run's `chunks` pieces) up to `longest`
    (the compiled chunk's length), enough to last about `target_s`.

    A chunk costs a round trip to the host, and on CPU devices that share their cores
    more: 16 CartPole PPO seeds over 2 CPU devices ran 195 updates in 3.71 s as chunks of
    20 and in 3.54-3.55 s as chunks of 64 or one chunk (about 15 ms a boundary). So a chunk
    shorter than `target_s` is stretched, up to `STRETCH` times its planned length, where a
    run has no boundaries (checkpoints, evaluations, PBT) closer together; updates past a
    call's end are skipped by `lax.cond`, which costs about nothing beside an update (16 DQN
    seeds, compiled at 1000 updates, running 357 or 300 a call: the same time as compiled
    at that length, over 2 devices and on one). Processes of one multi-process run all run
    the planned length (their pace could differ).
    """

    STRETCH = 25
    TARGET_S = 1.0

    def __init__(self, shortest: int, longest: int, target_s: float = TARGET_S):
        self.shortest, self.longest, self.target_s = shortest, longest, target_s
        self._next = shortest
        self._queue: list[tuple[int, float]] = []  # (updates, dispatched at) of chunks not yet seen finished
        self._last_done: float | None = None  # when the last chunk seen finished

    @classmethod
    def for_run(cls, num_updates: int, chunks: int, boundaries) -> Pace:
        shortest = max(1, -(-num_updates // chunks))
        longest = shortest if jax.process_count() > 1 else min(num_updates, shortest * cls.STRETCH)
        for every in boundaries:
            if every:
                shortest, longest = min(shortest, every), min(longest, every)
        return cls(shortest, longest)

    def length(self) -> int:
        return self._next

    def dispatched(self, n: int) -> None:
        self._queue.append((n, time.perf_counter()))

    def finished(self) -> None:
        """The oldest chunk dispatched has finished: its time per update sets the next length."""
        n, dispatched_at = self._queue.pop(0)
        now = time.perf_counter()
        started = dispatched_at if self._last_done is None else max(dispatched_at, self._last_done)
        self._last_done = now
        per_update = max(now - started, 1e-9) / n
        self._next = min(self.longest, max(self.shortest, math.ceil(self.target_s / per_update)))


class Recorder:
    """Runs `record(metrics, first_update, updates)` for each finished chunk, in order, on one thread."""

    def __init__(self, record: Callable):
        self._record = record
        self._queue: queue.Queue[tuple | None] = queue.Queue()  # (metrics, first, n) per chunk; None: stop
        self._error: BaseException | None = None
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


def chunk_fn(agent, chunk_len: int, config=None, algorithm: str = "the agent"):
    """`(state, first, end) -> (state, metrics (chunk_len,))`: updates `first+1 .. end`; the rest are skipped.

    The metrics also hold `_finite`: whether every parameter is finite after each update.
    What every run shares enters each update unbatched, as in a program that builds its
    state itself, so that XLA folds it and `lax.cond`s on it stay conds under `vmap`
    (DQN's learning start: 16 seeds 14.1 -> 12.9 s, as fast as `make_train`): a state's
    `update` (updates done) is the chunk's update index, and `config`, given when every
    run trains with the same one (no sweep, no PBT), replaces `state.config` for the update (the
    state keeps its own). Metrics that break the agent contract are refused as it is traced.
    """
    def update(state, i):
        state = state._replace(update=i.astype(state.update.dtype))
        own = state.config
        if config is not None:
            state = state._replace(config=jax.tree.map(lambda c, x: jnp.asarray(c, x.dtype), config, own))
        state, metrics = agent.update(state)
        check_metrics(metrics, algorithm)
        if config is not None:
            state = state._replace(config=own)
        return state, {**metrics, "_finite": all_finite(state.params)}

    def run_chunk(state, first, end):
        metric_shape = jax.eval_shape(lambda s: update(s, jnp.int32(0))[1], state)
        skip = lambda s, i: (s, jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), metric_shape))
        body = lambda s, i: jax.lax.cond(i < end, update, skip, s, i)
        return jax.lax.scan(body, state, first + jnp.arange(chunk_len, dtype=jnp.int32))

    return run_chunk


class DivergenceWatch:
    """Finds the first update at which a run's loss terms or parameters stopped being finite."""

    def __init__(self, num_seeds: int):
        self.num_seeds = num_seeds
        self.diverged: dict | None = None
        """{update, member, seed, what} of the first divergence; None while every run is finite"""

    def check(self, metrics: dict[str, np.ndarray], first: int, n: int) -> int:
        """How many of the chunk's `n` updates to log: all, or up to the first non-finite one.

        `metrics`: `(runs, n)` per name, `_finite` among them (whether the parameters are finite).
        """
        if self.diverged is not None:
            return 0
        bad = np.zeros((metrics["_finite"].shape[0], n), bool)
        what = np.full(bad.shape, "parameters", dtype=object)
        for name, values in sorted(metrics.items(), reverse=True):  # the first in name order is named
            if name not in EPISODE_METRICS and name != "_finite":
                nonfinite = ~np.isfinite(values)
                what = np.where(nonfinite, name, what)
                bad |= nonfinite
        bad |= ~metrics["_finite"].astype(bool)
        if not bad.any():
            return bad.shape[1]
        runs, updates = np.nonzero(bad)
        u = updates.min()
        r = runs[updates == u][0]
        member, seed = member_seed(int(r), self.num_seeds)
        self.diverged = {"update": int(first + u + 1), "member": member, "seed": seed, "what": str(what[r, u])}
        return int(u + 1)


class StopFlag:
    """Turns SIGINT/SIGTERM into a flag checked between chunks (and after compiling), so a stop loses no work."""

    def __init__(self):
        self.requested = False
        self.signum = signal.SIGINT
        self._old = {}

    def _handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C stops at once
            raise Interrupted("stopped at once (a second signal)", signum)
        self.requested, self.signum = True, signum

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


def recording(watch: DivergenceWatch, sinks: list, history: list[dict], num_seeds: int,
              steps_per_update: int) -> Callable:
    """`record(metrics, first, n)`: one finished chunk's metrics to rows, the sinks and `history` (run on the
    recorder's thread); rows past a divergence are not logged."""
    from pjrl_agents.run.sinks import chunk_rows, mean_rows

    def record(metrics, first: int, n: int) -> None:
        metrics = {k: np.asarray(v)[:, :n] for k, v in jax.device_get(metrics).items()}
        n = watch.check(metrics, first, n)
        metrics = {k: v[:, :n] for k, v in metrics.items() if k != "_finite"}
        if n == 0:
            return
        rows = chunk_rows(metrics, first, steps_per_update, num_seeds)
        rows += mean_rows(rows)
        for sink in sinks:
            sink.log(rows)
        history.extend(r for r in rows if r["seed"] != "mean")

    return record


def run_chunks(chunk: Callable, state, start: int, num_updates: int, hooks: list, pace: Pace, recorder: Recorder,
               watch: DivergenceWatch, stop: StopFlag) -> tuple[Any, str, int]:
    """Trains from update `start` to `num_updates`, chunk after chunk: `(state, status, updates done)`.

    Chunk k+1 is dispatched before chunk k's rows are recorded, so the device trains while the host
    writes. Chunks end on every hook's boundaries (`hooks.Boundary`), where the hooks run once the
    logs are written; SIGINT/SIGTERM (`stop`) end it after the chunk in flight ("interrupted"); a
    divergence ends it before any hook sees the diverged state.
    """
    status, done, finished = "finished", start, None
    while done < num_updates and not watch.diverged:
        n = min([pace.length(), num_updates - done] + [h.until(done) for h in hooks if h.every])
        state, metrics = chunk(state, done, done + n)  # dispatched; runs while the host goes on
        pace.dispatched(n)
        if finished is not None:
            jax.block_until_ready(finished[0])  # at most one chunk queued behind the running one
            pace.finished()
            recorder.put(*finished)
        finished, done = (metrics, done, n), done + n
        due = [hook for hook in hooks if hook.due(done, num_updates)]
        if due:
            jax.block_until_ready(finished[0])
            pace.finished()
            recorder.put(*finished)  # the logs reach the checkpoint before it is written
            finished = None
            recorder.wait()
            if watch.diverged:
                break
            for hook in due:
                state = hook(state, done)
        if processes.any_process(stop.requested):  # every process stops after the same chunk
            status = "interrupted"
            break
    if finished is not None:
        recorder.put(*finished)
    recorder.wait()
    jax.block_until_ready(state)
    return state, ("diverged" if watch.diverged else status), done
