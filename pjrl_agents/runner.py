"""Runs an agent on a named env for many seeds (and sweep members) in one compile.

The update scan is cut into chunks of K updates: each chunk is one call of a
compiled, vmapped `lax.scan`, so metrics leave the device every K updates (to
the console, files, TensorBoard, W&B) while the device holds only the current
state and K rows of scalars; checkpoints are written between chunks.
"""
from __future__ import annotations

import dataclasses
import importlib
import itertools
import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

import pjrl_envs
from pjrl_agents import distributed
from pjrl_agents import logging as sinks
from pjrl_agents.checkpoint import CheckpointError, Checkpointer, has_checkpoint
from pjrl_agents.common import ConfigError, numeric_fields, stack_configs

ALGOS = {"ppo": "pjrl_agents.ppo", "dqn": "pjrl_agents.dqn"}
"""algorithm name -> module with `default_config(env_name, **overrides)`, `validate(config, env)`, `Agent`."""

MIN_FREE_BYTES = 64 << 20


def algorithm(name: str):
    if name not in ALGOS:
        raise ConfigError(f"unknown algorithm {name!r}; choose one of {', '.join(sorted(ALGOS))}")
    return importlib.import_module(ALGOS[name])


def enable_compilation_cache() -> str | None:
    """Turns on JAX's persistent compilation cache (PJRL_CACHE_DIR; 'off' disables it)."""
    path = os.environ.get("PJRL_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "pjrl", "jax"))
    if path.lower() in ("", "off", "0", "none"):
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def parse_sweep(specs: list[str], config: Any) -> list[dict[str, float]]:
    """`["lr=1e-4,3e-4", "gamma=0.99,0.995"]` -> the grid of members, each a dict of overrides."""
    numeric = numeric_fields(config)
    axes = []
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not values:
            raise ConfigError(f"--sweep {spec!r}: write NAME=V1,V2,...")
        if name not in numeric:
            static = {f.name for f in dataclasses.fields(config)} - set(numeric)
            why = "fixes array shapes and cannot be swept in one compile" if name in static else "is not a setting"
            raise ConfigError(f"--sweep {name}: {name} {why}; sweepable: {', '.join(numeric)}")
        try:
            axes.append([(name, float(v)) for v in values.split(",")])
        except ValueError:
            raise ConfigError(f"--sweep {spec!r}: values must be numbers") from None
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]


def final_returns(episode_return: np.ndarray) -> np.ndarray:
    """Mean episodic return over the last 5% of updates, per run. Input `(runs, updates)`."""
    tail = max(1, episode_return.shape[1] // 20)
    return episode_return[:, -tail:].mean(axis=1)


@dataclasses.dataclass
class RunSpec:
    """Everything needed to rebuild a run (saved as run.json; `--resume` reads it)."""

    env: str = "gymnax:CartPole-v1"
    algo: str = "ppo"
    overrides: dict = dataclasses.field(default_factory=dict)
    sweep: list = dataclasses.field(default_factory=list)
    num_seeds: int = 1
    seed: int = 0
    chunks: int = 50
    checkpoint_every: int = 0
    tensorboard: bool = True
    wandb: dict | None = None  # {"project", "entity", "group"} when tracking
    devices: int | None = None  # devices to spread runs (or one run's envs) over; None: all visible


class Run:
    """A run directory and the compiled functions that train it."""

    def __init__(self, spec: RunSpec, out: Path, resume: bool = False):
        self.spec, self.out, self.resume = spec, out, resume
        module = algorithm(spec.algo)
        if spec.num_seeds < 1:
            raise ConfigError(f"num_seeds must be >= 1, got {spec.num_seeds}")
        if spec.checkpoint_every < 0:
            raise ConfigError(f"checkpoint_every must be >= 0, got {spec.checkpoint_every}")
        self.config = module.default_config(spec.env, **spec.overrides)
        module.validate(self.config)
        self.members = parse_sweep(spec.sweep, self.config)
        # scale-out: checks and layout before anything compiles (pjrl_agents.distributed)
        self.plan = distributed.plan(spec.devices, self.config, spec.num_seeds, len(self.members), module)
        self.env = pjrl_envs.make(spec.env, num_envs=self.plan.num_envs)  # this device's envs
        self.agent = self.plan.agent(module, self.config, self.env)
        self.writer = distributed.is_main_process()  # process 0 alone writes logs and checkpoints
        # orbax writes a sharded state from every process together; a multi-process run keeps none
        self.checkpoints = jax.process_count() == 1
        if self.writer:
            self._prepare_directory()

    # ------------------------------------------------------------ set-up, before compiling

    def _prepare_directory(self) -> None:
        out = self.out
        if self.resume:
            if not (out / "run.json").exists():
                raise CheckpointError(f"{out} holds no run (no run.json) to resume")
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
        (out / "run.json").write_text(json.dumps(dataclasses.asdict(self.spec), indent=2))
        (out / "config.json").write_text(json.dumps(_jsonable(dataclasses.asdict(self.config)), indent=2))

    # ------------------------------------------------------------ training

    def train(self, progress: Callable[[str], None] | None = print) -> dict:
        spec, agent = self.spec, self.agent
        member_configs = [self.config.replace(**m) for m in self.members]
        num_runs = len(self.members) * spec.num_seeds
        configs = jax.tree.map(lambda x: jnp.repeat(x, spec.num_seeds), stack_configs(member_configs))
        keys = jnp.tile(jax.random.split(jax.random.PRNGKey(spec.seed), spec.num_seeds), (len(self.members), 1))
        num_updates = agent.num_updates
        chunk_len = max(1, -(-num_updates // spec.chunks))
        if spec.checkpoint_every:
            chunk_len = min(chunk_len, spec.checkpoint_every)
        cache_dir = enable_compilation_cache()

        # COMPILE (runs sharded over the plan's mesh; plain jit on one device)
        t0 = time.perf_counter()
        keys, configs = self.plan.put(keys, configs)
        init_fn = self.plan.jit(agent.init, in_axes=(0, 0), one_run_at_a_time=True)
        init = init_fn.lower(keys, configs).compile()
        state_shape = jax.eval_shape(init_fn, keys, configs)
        chunk = self.plan.jit(_chunk_fn(agent, chunk_len), in_axes=(0, None),
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
            outputs.append(sinks.WandbSink(self.out, _jsonable(dataclasses.asdict(spec)), name=self.out.name,
                                           resume_id=self.out.name if self.resume else None, **spec.wandb))
        console = sinks.Console(num_updates * agent.steps_per_update, progress) if progress and self.writer else None

        # TRAIN, chunk by chunk; SIGINT/SIGTERM stop after the chunk in flight
        stop = _StopFlag()
        status, t0, done = "finished", time.perf_counter(), start
        last_saved = start
        try:
            with stop:
                while done < num_updates:
                    state, metrics = chunk(state, done)
                    n = min(chunk_len, num_updates - done)
                    metrics = {k: np.asarray(v)[:, :n] for k, v in jax.device_get(metrics).items()}
                    rows = sinks.chunk_rows(metrics, done, agent.steps_per_update, spec.num_seeds)
                    rows += sinks.mean_rows(rows)
                    for sink in outputs:
                        sink.log(rows)
                    history += [r for r in rows if r["seed"] != "mean"]
                    done += n
                    if console:
                        console.progress(done * agent.steps_per_update, (done - start) * agent.steps_per_update,
                                         time.perf_counter() - t0, float(metrics["episode_return"][:, -1].mean()),
                                         done >= num_updates)
                    if spec.checkpoint_every and done // spec.checkpoint_every > last_saved // spec.checkpoint_every:
                        checkpointer.save(done, state)
                        last_saved = done
                    if stop.requested:
                        status = "interrupted"
                        break
            jax.block_until_ready(state)
            run_s = time.perf_counter() - t0
            if last_saved != done:
                checkpointer.save(done, state)
        finally:
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
        spec, steps_per_update = self.spec, self.agent.steps_per_update
        num_runs = len(self.members) * spec.num_seeds
        returns = np.full((num_runs, done), np.nan)
        for r in history:
            returns[r["member"] * spec.num_seeds + r["seed"], r["update"] - 1] = r["episode_return"]
        finals = final_returns(returns).reshape(len(self.members), spec.num_seeds)
        new_steps = (done - start) * steps_per_update * num_runs
        summary = {
            "env": spec.env, "algo": spec.algo, "status": status,
            "total_timesteps": done * steps_per_update, "planned_timesteps": self.agent.num_updates * steps_per_update,
            "num_seeds": spec.num_seeds, "seed": spec.seed,
            "final_return_mean": float(finals[0].mean()),
            "final_return_per_seed": [float(x) for x in finals[0]],
            "compile_s": round(compile_s, 3), "run_s": round(run_s, 3),
            "steps_per_s": round(new_steps / max(run_s, 1e-9)),
            "num_updates": done, "resumed_from_update": start if self.resume else None,
            "compilation_cache": cache_dir, "config": _jsonable(dataclasses.asdict(self.config)),
        }
        if spec.sweep:
            summary["members"] = [{"overrides": m, "final_return_mean": float(f.mean()),
                                   "final_return_per_seed": [float(x) for x in f]}
                                  for m, f in zip(self.members, finals)]
        return summary


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


def train(env_name: str, algo: str = "ppo", overrides: dict | None = None, sweep: list[str] | None = None,
          num_seeds: int = 1, seed: int = 0, out: str | os.PathLike | None = None, chunks: int = 50,
          checkpoint_every: int = 0, tensorboard: bool = True, wandb: dict | None = None,
          progress: Callable[[str], None] | None = print, devices: int | None = None) -> dict:
    """Trains `num_seeds` seeds of every sweep member; writes the run directory and returns the summary.

    `devices`: how many devices to spread the runs (or one run's envs) over; all
    visible ones by default (pjrl_agents.distributed). Only process 0 writes.
    """
    spec = RunSpec(env_name, algo, dict(overrides or {}), list(sweep or []), num_seeds, seed, chunks,
                   checkpoint_every, tensorboard, wandb, devices)
    try:
        run = Run(spec, Path(out) if out else default_out(env_name, algo))
    except TypeError as e:
        if "option" in str(e) or "argument" in str(e):
            raise ConfigError(str(e)) from None
        raise
    return run.train(progress)


def resume(run_dir: str | os.PathLike, progress: Callable[[str], None] | None = print) -> dict:
    """Continues an interrupted run from its latest checkpoint to its planned total."""
    run_dir = Path(run_dir)
    try:
        spec = RunSpec(**json.loads((run_dir / "run.json").read_text()))
    except FileNotFoundError:
        raise CheckpointError(f"{run_dir} holds no run (no run.json) to resume") from None
    except (json.JSONDecodeError, TypeError) as e:
        raise CheckpointError(f"{run_dir}/run.json is unreadable: {e}") from None
    return Run(spec, run_dir, resume=True).train(progress)


def load(run_dir: str | os.PathLike):
    """`(run, state)`: a finished or interrupted run rebuilt and its latest checkpoint restored."""
    run_dir = Path(run_dir)
    spec = RunSpec(**json.loads((run_dir / "run.json").read_text()))
    run = Run(spec, run_dir, resume=True)
    member_configs = [run.config.replace(**m) for m in run.members]
    configs = jax.tree.map(lambda x: jnp.repeat(x, spec.num_seeds), stack_configs(member_configs))
    keys = jnp.tile(jax.random.split(jax.random.PRNGKey(spec.seed), spec.num_seeds), (len(run.members), 1))
    shape = jax.eval_shape(jax.vmap(run.agent.init), keys, configs)
    checkpointer = Checkpointer(run_dir)
    try:
        _, state = checkpointer.restore(shape)
    finally:
        checkpointer.close()
    return run, state


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.ndarray, jax.Array)):
        return np.asarray(x).tolist()
    return x
