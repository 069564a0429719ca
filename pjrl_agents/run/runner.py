"""Trains a run spec: many seeds (and sweep members) in one compile, streamed to a run directory.

The update scan is cut into chunks of K updates: each chunk is one call of a
compiled, vmapped `lax.scan`, so metrics leave the device every K updates (to
the console, files, TensorBoard, W&B) while the device holds only the current
state and K rows of scalars; checkpoints are written between chunks.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import math
import os
import queue
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from pjrl_agents.algorithms.contract import EPISODE_METRICS, check_metrics
from pjrl_agents.run import evaluate
from pjrl_agents.search import pbt
from pjrl_agents.run import processes
from pjrl_agents.run import sinks
from pjrl_agents.run.checkpoint import Checkpointer, RunLock, has_checkpoint
from pjrl_agents.run.checkpoint import steps as checkpoint_steps
from pjrl_agents.config import ConfigError
from pjrl_agents.numeric import all_finite
from pjrl_agents.numeric import nanmean as _nanmean
from pjrl_agents.run.spec import RunSpec, read_run
from pjrl_agents.run.experiment import build
from pjrl_agents.numeric import final_returns
from pjrl_agents.search.pbt import PBT
from pjrl_envs import prng

PBT_STREAM = 0x706274  # 'pbt': folded into the run's root key for the exploit/explore draws

MIN_FREE_BYTES = 64 << 20


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the run; what was trained is checkpointed. `signum` says which."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = signum


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
        self.evaluator = self._pbt_step = None
        if resume:
            self._check_unchanged()
        # every process of a multi-process run uses process 0's directory, which all of them must see
        self.out = processes.shared_directory(self.out, self._prepare_directory if self.writer else None)

    # ------------------------------------------------------------ set-up, before compiling

    def _prepare_directory(self) -> None:
        """Checks the run directory and takes its lock, before anything compiles.

        run.json is written here, so a run stopped at any moment (in compile too)
        can be resumed; a directory whose run never trained (no metrics, no
        checkpoint) may be started again.
        """
        out = self.out
        if self.resume:
            self.lock = RunLock(out)
            return
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
        self.lock = RunLock(out)
        free = shutil.disk_usage(out).free
        if free < MIN_FREE_BYTES:
            raise ConfigError(f"only {free >> 20} MiB free at {out}; a run needs at least {MIN_FREE_BYTES >> 20} MiB")
        text = json.dumps(self.spec.to_dict(), indent=2)
        (out / "run.json").write_text(text)
        (out / ".run.json").write_text(text)  # as the run began: resume compares run.json to it

    def _check_unchanged(self) -> None:
        """Refuses to resume a run whose run.json was edited since it began (it would not be that run)."""
        began = self.out / ".run.json"
        if not began.exists():
            return
        before, now = json.loads(began.read_text()), self.spec.to_dict()
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k) and k != "settings")
        changed += sorted(f"settings.{k}" for k in set(before.get("settings", {})) | set(now["settings"])
                          if before.get("settings", {}).get(k) != now["settings"].get(k))
        if changed:
            first = changed[0]
            old = before.get(first) if "." not in first else before.get("settings", {}).get(first[9:])
            new = now.get(first) if "." not in first else now["settings"].get(first[9:])
            raise ConfigError(f"{self.out}/run.json was edited since the run began ({first}: {old!r} -> {new!r}"
                              f"{', and ' + str(len(changed) - 1) + ' more' if len(changed) > 1 else ''}); "
                              f"resume continues the run as it began: undo the edit, or start a new run with "
                              f"--config {self.out}/run.json --out NEW_DIR")

    # ------------------------------------------------------------ training

    def train(self, progress: Callable[[str], None] | None = print) -> dict:
        try:
            with _StopFlag() as stop:
                return self._train(progress, stop)
        except Exception as e:
            if processes.peer_failed(e):
                self._stop_for_peer(e)
            if not isinstance(e, OSError):
                raise
            if e.errno != errno.ENOSPC:
                raise
            raise DiskFull(f"the disk is full ({e.filename or self.out}); the checkpoints and metrics written "
                           f"before are intact: free some space and continue with --resume {self.out}") from None
        finally:
            if self.writer:
                self.lock.release()

    def _train(self, progress: Callable[[str], None] | None, stop: "_StopFlag") -> dict:
        spec, ex = self.spec, self.experiment
        num_updates, steps_per_update = ex.num_updates, ex.steps_per_update
        say = progress if progress and self.writer else (lambda line: None)
        planned = ex.config.total_timesteps
        if num_updates * ex.agent.steps_per_update != planned:
            say(f"total_timesteps {planned:,} is {num_updates:,} updates of {ex.agent.steps_per_update:,} env steps: "
                f"{num_updates * ex.agent.steps_per_update:,} steps per run")
        population = PBT.from_dict(spec.pbt) if spec.pbt is not None else None
        pace = _Pace.for_run(num_updates, spec.chunks, (spec.checkpoint_every, spec.eval_every,
                                                        population and population.every))
        cache_dir = enable_compilation_cache()

        # COMPILE (runs sharded over the plan's mesh; plain jit on one device). A stop asked for
        # meanwhile takes effect once XLA returns: nothing is lost, run.json allows --resume.
        t0 = time.perf_counter()
        keys, configs = ex.inputs()
        init_fn = ex.init_fn
        # init runs once: lowered with JAX's looped Threefry where that compiles faster (one run, unbatched:
        # CartPole DQN 2.0 -> 1.1 s; batched it compiles slower), the same bits
        unbatched = ex.num_runs == 1 and ex.plan.mesh is None  # one run, traced without vmap
        with prng.looped() if unbatched else contextlib.nullcontext():
            init_program = init_fn.lower(keys, configs)
        state_shape = ex.abstract_state()  # refuses a state that breaks the agent contract
        shared = ex.member_configs()[0] if len(ex.members) == 1 and population is None else None
        with chunk_lowering(ex.agent, unbatched):
            chunk_program = ex.plan.jit(_chunk_fn(ex.agent, pace.longest, shared, ex.algorithm.name),
                                        in_axes=(0, None, None),
                                        metrics=True).lower(state_shape, 0, 0)
        with ThreadPoolExecutor(1) as pool:  # the two programs compile side by side
            compiling_init = pool.submit(init_program.compile)
            chunk = chunk_program.compile()
            init = compiling_init.result()
        compile_s = time.perf_counter() - t0
        if processes.any_process(stop.requested):
            raise Interrupted(f"stopped while compiling, before update 1; start it again with --resume {self.out}",
                              stop.signum)

        # START OR RESUME
        # a final checkpoint is always written (for eval and resume) where checkpoints are kept
        # every process writes its shards of each checkpoint (orbax commits it once all have)
        checkpointer = Checkpointer(self.out)
        self.last_saved = None
        history: list[dict] = []
        if self.resume and has_checkpoint(self.out):
            start, state = checkpointer.restore(state_shape)
            self.last_saved = start
            for step, why in checkpointer.skipped:
                say(f"checkpoint {step} cannot be read ({why}); resuming from checkpoint {start}")
            aside = checkpointer.set_aside_skipped() if self.writer else None
            if checkpointer.skipped and jax.process_count() > 1:
                processes.barrier("pjrl-set-aside")
                checkpointer.reload()
            if aside:
                say(f"the unreadable checkpoints are kept in {aside}")
            damaged = []
            history = [r for r in sinks.read_metrics(self.out, damaged) if r["update"] <= start]
            if damaged:
                say(f"metrics.jsonl: dropped {len(damaged)} damaged line(s) (lines {', '.join(map(str, damaged[:5]))})")
            if self.writer:
                _rewrite_metrics(self.out, history)
                _drop_rows_after(self.out / "eval.jsonl", start)
                _drop_rows_after(self.out / "pbt.jsonl", start)
        else:
            if self.resume and self.writer:
                say(f"{self.out} holds no checkpoint yet: training it from update 0")
                _rewrite_metrics(self.out, [])
                _drop_rows_after(self.out / "eval.jsonl", 0)
                _drop_rows_after(self.out / "pbt.jsonl", 0)
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
        watch = _DivergenceWatch(spec.num_seeds)

        def record(metrics, first: int, n: int) -> None:
            """One finished chunk's metrics to rows, sinks and the console (on the recorder's thread)."""
            metrics = {k: np.asarray(v)[:, :n] for k, v in jax.device_get(metrics).items()}
            n = watch.check(metrics, first, n)  # rows past a divergence are not logged
            metrics = {k: v[:, :n] for k, v in metrics.items() if k != "_finite"}
            if n == 0:
                return
            rows = sinks.chunk_rows(metrics, first, steps_per_update, spec.num_seeds)
            rows += sinks.mean_rows(rows)
            for sink in outputs:
                sink.log(rows)
            history.extend(r for r in rows if r["seed"] != "mean")
            if console:
                last = first + n
                console.progress(last * steps_per_update, (last - start) * steps_per_update,
                                 time.perf_counter() - t0, _nanmean(metrics["episode_return"][:, -1]),
                                 last >= num_updates)

        # TRAIN, chunk by chunk: chunk k+1 is dispatched before chunk k's metrics are written, so the
        # device trains while the host writes; SIGINT/SIGTERM stop after the chunk in flight. Chunks end
        # on checkpoint boundaries, and no state after a divergence is saved.
        recorder = _Recorder(record)
        status, t0, done = "finished", time.perf_counter(), start
        last_saved, finished = (start if self.resume and start else None), None
        every, evals = spec.checkpoint_every, spec.eval_every
        exploit = population.every if population else 0
        try:
            while done < num_updates and not watch.diverged:
                n = min(pace.length(), num_updates - done)
                for boundary in (every, evals, exploit):
                    if boundary:
                        n = min(n, boundary - done % boundary)
                state, metrics = chunk(state, done, done + n)  # dispatched; runs while the host goes on
                pace.dispatched(n)
                if finished is not None:
                    jax.block_until_ready(finished[0])  # at most one chunk queued behind the running one
                    pace.finished()
                    recorder.put(*finished)
                finished, done = (metrics, done, n), done + n
                saving, evaluating = every and done % every == 0, evals and done % evals == 0
                exploiting = exploit and done % exploit == 0 and done < num_updates
                if saving or evaluating or exploiting:
                    jax.block_until_ready(finished[0])
                    pace.finished()
                    recorder.put(*finished)  # the logs reach the checkpoint before it is written
                    finished = None
                    recorder.wait()
                    if watch.diverged:
                        break
                    if evaluating and self.writer and jax.process_count() == 1:
                        self._evaluate_now(state, done, [o for o in outputs if not isinstance(o, sinks.FileSink)], say)
                    if exploiting:
                        state = self._exploit_explore(state, population, history, done, say)
                    if saving:
                        checkpointer.save(done, state)
                        last_saved = self.last_saved = done
                if processes.any_process(stop.requested):  # every process stops after the same chunk
                    status = "interrupted"
                    break
            if finished is not None:
                recorder.put(*finished)
            recorder.wait()
            jax.block_until_ready(state)
            run_s = time.perf_counter() - t0
            if watch.diverged:
                status = "diverged"
            elif last_saved != done:
                checkpointer.save(done, state)
                last_saved = self.last_saved = done
        except Exception as e:
            if processes.peer_failed(e):  # before the clean-up below, which would wait for the dead peer
                self._stop_for_peer(e)
            raise
        finally:
            recorder.close()
            for sink in outputs:
                sink.close()
            checkpointer.close()

        if watch.diverged:
            done = watch.diverged["update"]
        summary = self._summary(history, done, compile_s, run_s, start, cache_dir, status)
        if status == "finished" and spec.eval_episodes and jax.process_count() == 1:
            greedy, per_member = self._greedy(state, say)
            summary.update(greedy)
            for member, per_seed in zip(summary.get("members", []), per_member):
                member["final_greedy_return_mean"] = _nanmean(per_seed)
                member["final_greedy_return_per_seed"] = per_seed
        if population is not None and status == "finished":
            summary["pbt"] = self._best_of_population(state, population, history, done)
        if watch.diverged:
            summary["diverged"] = {**watch.diverged, "last_finite_checkpoint": last_saved}
        if self.writer:
            (self.out / "summary.json").write_text(json.dumps(_strict_json(summary), indent=2))
        if status == "interrupted":
            raise Interrupted(f"stopped at update {done}/{num_updates}; resume with --resume {self.out}", stop.signum)
        if status == "diverged":
            d = watch.diverged
            kept = (f"the last finite checkpoint, update {last_saved}, is kept" if last_saved is not None else
                    "no checkpoint was written before it (set --checkpoint-every to keep some)")
            raise Diverged(f"diverged at update {d['update']} ({d['what']} not finite in member {d['member']} "
                           f"seed {d['seed']}): lower lr or set max_grad_norm; {kept}; see {self.out}/summary.json")
        return {**summary, "out": str(self.out)}

    def _exploit_explore(self, state, population: PBT, history: list[dict], update: int,
                         say: Callable[[str], None]):
        """One population-based training step between chunks; its lineage rows go to RUN/pbt.jsonl."""
        spec, ex = self.spec, self.experiment
        scores = pbt.scores_of(history, ex.num_runs, spec.num_seeds, update - population.every, update)
        if self._pbt_step is None:
            bounds = pbt.upper_bounds(population.perturb, ex.algorithm.ranges)
            self._pbt_step = jax.jit(lambda s, sc, k: pbt.exploit_explore(
                s, sc, k, population.fraction, population.perturb, population.factors, bounds,
                learned=ex.agent.learned))
        key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(spec.seed), PBT_STREAM), update)
        before = state
        state, parents, _ = self._pbt_step(state, jnp.asarray(scores, jnp.float32), key)
        # back onto the layout the compiled chunk takes (the members sharded over the devices)
        state = jax.tree.map(lambda new, old: jax.device_put(new, old.sharding), state, before)
        parents = np.asarray(parents)
        values = {name: np.asarray(getattr(state.config, name), np.float64) for name in population.perturb}
        if self.writer:
            with open(self.out / "pbt.jsonl", "a") as f:
                for r in range(ex.num_runs):
                    row = {"member": r // spec.num_seeds, "seed": r % spec.num_seeds, "update": update,
                           "step": update * ex.steps_per_update, "score": float(scores[r]),
                           "parent": int(parents[r]), **{k: float(v[r]) for k, v in values.items()}}
                    f.write(json.dumps(_strict_json(row)) + "\n")
        replaced = int((parents != np.arange(ex.num_runs)).sum())
        best = int(np.nanargmax(np.where(np.isnan(scores), -np.inf, scores)))
        say(f"pbt at step {update * ex.steps_per_update:,}: {replaced} of {ex.num_runs} members copied better ones; "
            f"best score {scores[best]:.2f} (" + ", ".join(f"{k}={v[best]:.3g}" for k, v in values.items()) + ")")
        return state

    def _best_of_population(self, state, population: PBT, history: list[dict], done: int) -> dict:
        """The member with the best training return over the last `every` updates, and RUN/best.json: the run
        spec `pjrl train --config` trains it with (its final settings, no sweep, no PBT)."""
        spec, ex = self.spec, self.experiment
        scores = pbt.scores_of(history, ex.num_runs, spec.num_seeds, max(0, done - population.every), done)
        best = int(np.nanargmax(np.where(np.isnan(scores), -np.inf, scores)))
        settings = {name: float(np.asarray(getattr(state.config, name))[best]) for name in population.perturb}
        if self.writer:
            spec_best = dataclasses.replace(spec, settings={**spec.settings, **settings}, sweep=[], pbt=None,
                                            devices=None)
            (self.out / "best.json").write_text(json.dumps(spec_best.to_dict(), indent=2))
            rows = sinks.read_metrics(self.out, name="pbt.jsonl")
            if rows:
                try:
                    pbt.draw_lineage(rows, population.perturb, str(self.out / "lineage.png"))
                except Exception:  # noqa: BLE001 - a figure must not lose the run's results
                    pass
        return {"best_member": best // spec.num_seeds, "best_seed": best % spec.num_seeds,
                "best_score": float(scores[best]), "best_settings": settings,
                "final_settings": {name: np.asarray(getattr(state.config, name), np.float64).tolist()
                                   for name in population.perturb}}

    def _stop_for_peer(self, error: BaseException) -> None:
        first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        kept = (f"the last complete checkpoint is update {self.last_saved}" if getattr(self, "last_saved", None)
                else "no checkpoint was complete yet")
        processes.stop_for_peer(f"process {jax.process_index()} stopped: another process of the run died or "
                                  f"stopped answering ({first[:160]}); {kept}: start every process again with "
                                  f"--resume {self.out}")

    def _evaluations(self, state, policies: tuple[str, ...]) -> dict[str, dict[str, np.ndarray]]:
        """Every run's `policies` over spec.eval_episodes episodes per seed on its evaluation envs
        (`evaluate.eval_keys`: seed i of every sweep member plays the same ones)."""
        spec, ex = self.spec, self.experiment
        rows = np.arange(ex.num_runs) * ex.plan.env_share  # the first device's row of a run split over devices
        params, env_states = (jax.tree.map(lambda x: np.asarray(x)[rows], part)
                              for part in (state.params, state.env_state))
        keys = evaluate.eval_keys(spec.seed, spec.num_seeds, len(ex.members))
        if self.evaluator is None:
            self.evaluator = evaluate.Evaluator(ex.agent)
        return self.evaluator(params, env_states, keys, spec.eval_episodes, policies)

    def _evaluate_now(self, state, update: int, outputs: list, say: Callable[[str], None]) -> None:
        """The evaluation every --eval-every updates: rows to RUN/eval.jsonl and to TensorBoard and W&B."""
        spec, ex = self.spec, self.experiment
        out = self._evaluations(state, evaluate.POLICIES)
        rows = []
        summaries = {name: evaluate.summarise(result["returns"], result["lengths"]) for name, result in out.items()}
        for r in range(ex.num_runs):
            row = {"member": r // spec.num_seeds, "seed": r % spec.num_seeds, "update": update,
                   "step": update * ex.steps_per_update}
            for name, summary in summaries.items():
                row[f"{name}_return"] = summary["return_mean"][r]
                row[f"{name}_length"] = summary["length_mean"][r]
            rows.append(row)
        with open(self.out / "eval.jsonl", "a") as f:
            for row in rows:
                f.write(json.dumps(_strict_json(row)) + "\n")
        for sink in outputs:
            sink.log(rows + sinks.mean_rows(rows))
        first = [row for row in rows if row["member"] == 0]
        say(f"eval at step {update * ex.steps_per_update:,}: greedy return "
            f"{_nanmean([r['greedy_return'] for r in first]):.2f}, stochastic "
            f"{_nanmean([r['stochastic_return'] for r in first]):.2f} (mean over seeds)")

    def _greedy(self, state, say: Callable[[str], None]) -> tuple[dict, list[list[float]]]:
        """Each run's greedy policy over spec.eval_episodes fresh episodes: summary entries, and each
        sweep member's per-seed returns."""
        spec, ex = self.spec, self.experiment
        t0 = time.perf_counter()
        greedy = self._evaluations(state, ("greedy",))["greedy"]["returns"]
        episodes = greedy.shape[1]
        returns = np.asarray(evaluate.summarise(greedy, greedy)["return_mean"]).reshape(len(ex.members),
                                                                                         spec.num_seeds)
        say(f"greedy policy: return {_nanmean(returns[0]):.2f} over {episodes} episodes per seed")
        out = {"final_greedy_return_mean": _nanmean(returns[0]),
               "final_greedy_return_per_seed": [float(x) for x in returns[0]],
               "greedy_episodes": episodes, "eval_s": round(time.perf_counter() - t0, 3)}
        return out, [[float(x) for x in r] for r in returns]

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


def chunk_lowering(agent, unbatched: bool):
    """The context a training program of `agent` is lowered in: `prng.held()` for one unbatched run of an
    agent that asks for it (`holds_keys`; one CartPole DQN seed compiles 4.9 -> 3.6 s), else none."""
    return prng.held() if unbatched and agent.holds_keys else contextlib.nullcontext()


class _Pace:
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
        self._last_done = None

    @classmethod
    def for_run(cls, num_updates: int, chunks: int, boundaries) -> "_Pace":
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


def _chunk_fn(agent, chunk_len: int, config=None, algorithm: str = "the agent"):
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


class _DivergenceWatch:
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
        self.diverged = {"update": int(first + u + 1), "member": int(r // self.num_seeds),
                         "seed": int(r % self.num_seeds), "what": str(what[r, u])}
        return int(u + 1)


def _strict_json(x):
    """`x` with every non-finite float as None (JSON has no NaN)."""
    if isinstance(x, dict):
        return {k: _strict_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_strict_json(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x


class _StopFlag:
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


def _rewrite_metrics(out: Path, rows: list[dict]) -> None:
    """Drops logged rows past the checkpoint a run resumes from."""
    for name in ("metrics.jsonl", "metrics.csv"):
        (out / name).unlink(missing_ok=True)
    if rows:
        sink = sinks.FileSink(out)
        sink.log(rows)
        sink.close()


def _drop_rows_after(path: Path, update: int) -> None:
    """Drops the rows of a JSONL log (eval.jsonl) past the checkpoint a run resumes from, and damaged lines."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("update"), int) and row["update"] <= update:
            kept.append(line + "\n")
    path.write_text("".join(kept))


def default_out(env: str, algo: str) -> Path:
    return Path("runs") / f"{env.replace(':', '-')}-{algo}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(spec: RunSpec, out: str | os.PathLike | None = None,
          progress: Callable[[str], None] | None = print) -> dict:
    """Trains every seed of every sweep member of `spec`; writes the run directory and returns the summary.

    Only process 0 writes (see pjrl_agents.distributed).
    """
    return Run(spec, Path(out) if out else default_out(spec.env, spec.algo)).train(progress)


def resume(run_dir: str | os.PathLike, progress: Callable[[str], None] | None = print) -> dict:
    """Continues an interrupted run from its latest readable checkpoint to its planned total.

    A run that already finished is left as it is and its summary returned.
    """
    run_dir = Path(run_dir)
    spec = read_run(run_dir)
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        try:
            summary = json.loads(summary_path.read_text())
        except ValueError:
            summary = {}
        if summary.get("status") == "finished" and summary.get("num_updates") in checkpoint_steps(run_dir):
            if progress:
                progress(f"{run_dir} finished all {summary['num_updates']} updates already; nothing to resume")
            return {**summary, "out": str(run_dir)}
    return Run(spec, run_dir, resume=True).train(progress)
