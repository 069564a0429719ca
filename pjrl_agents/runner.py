"""Runs an agent on a named env for many seeds (and sweep members) in one compile.

The update scan is cut into chunks of K updates: each chunk is one call of a
compiled, vmapped `lax.scan`, so progress leaves the device every K updates
while the device holds only the current state and K rows of scalar metrics.
"""
from __future__ import annotations

import csv
import dataclasses
import importlib
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

import pjrl_envs
from pjrl_agents import distributed
from pjrl_agents.common import ConfigError, numeric_fields, stack_configs

ALGOS = {"ppo": "pjrl_agents.ppo", "dqn": "pjrl_agents.dqn"}
"""algorithm name -> module with `default_config(env_name, **overrides)`, `validate(config, env)`, `Agent`."""


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
class Progress:
    """Prints one line per chunk (at most every `every_s` seconds): steps, SPS, return, ETA."""

    total_steps: int
    every_s: float = 1.0
    write: Callable[[str], None] = print
    _last: float = 0.0

    def __call__(self, steps: int, elapsed: float, episode_return: float, done: bool = False):
        now = time.perf_counter()
        if not done and now - self._last < self.every_s:
            return
        self._last = now
        sps = steps / max(elapsed, 1e-9)
        eta = (self.total_steps - steps) / max(sps, 1e-9)
        self.write(f"step {steps:>12,}/{self.total_steps:,} | {sps:>10,.0f} steps/s | "
                   f"return {episode_return:9.2f} | ETA {eta:6.1f}s")


def train(env_name: str, algo: str = "ppo", overrides: dict | None = None, sweep: list[str] | None = None,
          num_seeds: int = 1, seed: int = 0, out: str | os.PathLike | None = None,
          chunks: int = 50, progress: Callable[[str], None] | None = print, devices: int | None = None) -> dict:
    """Trains `num_seeds` seeds of every sweep member; writes and returns the summary.

    `devices`: how many devices to spread the runs (or one run's envs) over; all
    visible ones by default (pjrl_agents.distributed). Only process 0 writes.
    """
    module = algorithm(algo)
    overrides = dict(overrides or {})
    if num_seeds < 1:
        raise ConfigError(f"num_seeds must be >= 1, got {num_seeds}")
    try:
        config = module.default_config(env_name, **overrides)
    except TypeError as e:
        raise ConfigError(str(e)) from None
    module.validate(config)
    members = parse_sweep(sweep or [], config)
    plan = distributed.plan(devices, config, num_seeds, len(members), module)  # scale-out: checks, no compile
    env = pjrl_envs.make(env_name, num_envs=plan.num_envs)  # scale-out: this device's envs
    agent = plan.agent(module, config, env)  # scale-out
    cache_dir = enable_compilation_cache()
    out = Path(out) if out else Path("runs") / f"{env_name.replace(':', '-')}-{algo}-{time.strftime('%Y%m%d-%H%M%S')}"
    writer = distributed.is_main_process()  # scale-out: process 0 alone writes
    if writer:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(_jsonable(dataclasses.asdict(config)), indent=2))

    # one run per (member, seed), member-major; every member sees the same seeds
    member_configs = [config.replace(**m) for m in members]
    stacked = stack_configs(member_configs)
    runs = len(members) * num_seeds
    configs = jax.tree.map(lambda x: jnp.repeat(x, num_seeds), stacked)
    keys = jnp.tile(jax.random.split(jax.random.PRNGKey(seed), num_seeds), (len(members), 1))

    num_updates = agent.num_updates
    chunk_len = max(1, -(-num_updates // chunks))

    def run_chunk(state, start):
        metric_shape = jax.eval_shape(lambda s: agent.update(s)[1], state)

        def body(state, i):
            return jax.lax.cond(i < num_updates, agent.update,
                                lambda s: (s, jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), metric_shape)),
                                state)
        return jax.lax.scan(body, state, start + jnp.arange(chunk_len))

    t0 = time.perf_counter()
    keys, configs = plan.put(keys, configs)  # scale-out: runs sharded over the mesh
    # scale-out: on one device these are jax.jit(jax.vmap(fn, in_axes)); on a mesh, shard_map'd per device
    init_fn = plan.jit(agent.init, in_axes=(0, 0), one_run_at_a_time=True)
    init = init_fn.lower(keys, configs).compile()
    state_shape = jax.eval_shape(init_fn, keys, configs)
    chunk = plan.jit(run_chunk, in_axes=(0, None), metrics=True).lower(state_shape, 0).compile()
    compile_s = time.perf_counter() - t0

    steps_per_update = agent.steps_per_update
    report = Progress(config.total_timesteps) if progress and writer else None
    if report and progress is not print:
        report.write = progress
    t0 = time.perf_counter()
    state = init(keys, configs)
    collected = []
    for start in range(0, num_updates, chunk_len):
        state, metrics = chunk(state, start)
        metrics = jax.device_get(metrics)
        n = min(chunk_len, num_updates - start)
        collected.append({k: v[:, :n] for k, v in metrics.items()})
        if report:
            report((start + n) * steps_per_update, time.perf_counter() - t0,
                   float(np.mean(metrics["episode_return"][:, n - 1])), done=start + n >= num_updates)
    jax.block_until_ready(state)
    run_s = time.perf_counter() - t0

    metrics = {k: np.concatenate([c[k] for c in collected], axis=1) for k in collected[0]}  # (runs, updates)
    finals = final_returns(metrics["episode_return"]).reshape(len(members), num_seeds)
    summary = {
        "env": env_name, "algo": algo, "total_timesteps": num_updates * steps_per_update,
        "num_seeds": num_seeds, "seed": seed,
        "final_return_mean": float(finals[0].mean()),
        "final_return_per_seed": [float(x) for x in finals[0]],
        "compile_s": round(compile_s, 3), "run_s": round(run_s, 3),
        "steps_per_s": round(num_updates * steps_per_update * runs / run_s),
        "num_updates": num_updates, "compilation_cache": cache_dir,
        "config": _jsonable(dataclasses.asdict(config)),
    }
    if sweep:
        summary["members"] = [{"overrides": m, "final_return_mean": float(f.mean()),
                               "final_return_per_seed": [float(x) for x in f]} for m, f in zip(members, finals)]
    if writer:
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        _write_metrics_csv(out / "metrics.csv", metrics, members, num_seeds, steps_per_update)
    summary["out"] = str(out)
    return summary


def _write_metrics_csv(path: Path, metrics: dict, members: list, num_seeds: int, steps_per_update: int):
    names = sorted(metrics)
    runs, updates = metrics[names[0]].shape
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["member", "seed", "update", "step"] + names)
        for r in range(runs):
            cols = [metrics[k][r] for k in names]
            for u in range(updates):
                w.writerow([r // num_seeds, r % num_seeds, u + 1, (u + 1) * steps_per_update]
                           + [f"{c[u]:.6g}" for c in cols])


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.ndarray, jax.Array)):
        return np.asarray(x).tolist()
    return x
