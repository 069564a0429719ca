"""One training run over many devices and hosts, with JAX's own sharding.

    plan = devices.plan(4, num_envs=8, runs=8, members=1, splits_envs=True)  # checks counts, compiles nothing
    env = pjrl_envs.make(name, num_envs=plan.num_envs)       # this device's envs
    agent = ppo.PPO(plan.local(config), env, axis_name=plan.axis_name)
    keys, configs = plan.put(keys, configs)                  # (runs, ...) onto the mesh
    init = plan.jit(agent.init, in_axes=(0, 0), one_run_at_a_time=True)
    state = init(keys, configs)                              # sharded over the 4 devices

`pjrl_agents.run.experiment.build` does all of this for a run spec.

Devices form a 1-D mesh with one axis, `AXIS`. Two layouts, picked by the run count:

* seeds: with R runs (seeds x sweep members) on D devices, each device trains
  R/D of them, each a whole agent; nothing crosses devices but the metrics.
  Needs R divisible by D. Per-seed results equal those on one device.
* envs: one run (R = 1) splits its `num_envs` over the D devices. Every device
  steps num_envs/D envs and keeps a copy of the one agent; the gradient of every
  minibatch, the advantage normalisation and the metrics are averaged over the
  mesh, so the copies stay equal: one agent trained on the whole batch (each
  minibatch an equal random share of every device's rollout).
  Its state gains a leading device axis (D, ...); every row holds the same
  params, and row d the env state of device d. Running statistics of
  `normalize_obs` / `normalize_reward` stay per device.

Both run as `jax.shard_map` inside `jax.jit`, the state sharded over the mesh
between chunks. With one device the plan is the identity: plain `jax.jit`,
no mesh, the single-device program exactly.

Several hosts: call `initialize` (or pass `--coordinator HOST:PORT
--num-processes P --process-id I` to `pjrl train`) in every process before
anything else touches JAX; every process then runs the same program over the
mesh of all processes' devices, and `is_main_process()` gates writing.

Host envs (envpool) step on the host through callbacks, so their pool lives in
the process that steps it: a sharded run with a host env uses one device per
process (one pool per process, each holding its share of seeds or envs).
More than one device in a process with a host env is refused.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from pjrl_agents.config import ConfigError, divisors
from pjrl_agents.run.xla_cpu import CONCURRENT_RUNS, choose_cpu_scheduler, cpu_devices_for

AXIS = "devices"
"""Name of the mesh axis; agents take it as `axis_name` to average over devices."""


# ---------------------------------------------------------------- the plan


@dataclasses.dataclass(frozen=True)
class Plan:
    """How one run is laid out over devices. Build it with `plan(...)` (or `restore_plan` to read a checkpoint)."""

    layout: str
    """'single' (one device), 'seeds' (runs split) or 'envs' (one run's envs split)"""
    num_devices: int
    num_envs: int
    """envs each device steps (the whole `num_envs` unless the layout is 'envs')"""
    mesh: Mesh | None = None
    """1-D mesh over the devices used; None on one device, and when only reading a checkpoint"""

    @property
    def axis_name(self) -> str | None:
        """The mesh axis an agent averages over: only in the 'envs' layout, on a mesh."""
        return AXIS if self.layout == "envs" and self.mesh is not None else None

    @property
    def env_share(self) -> int:
        """How many devices one run's envs are split over (1 unless the layout is 'envs')."""
        return self.num_devices if self.layout == "envs" else 1

    def local(self, config):
        """The config of one device's share of a run: num_envs and total_timesteps divided in the 'envs' layout."""
        d = self.env_share
        if d == 1:
            return config
        return config.replace(num_envs=config.num_envs // d, total_timesteps=config.total_timesteps // d)

    def check_env(self, env) -> None:
        """Refuses a host env (stepped through callbacks, one pool per process) on several local devices."""
        if self.mesh is None or not env.host_callbacks:
            return
        local = len([d for d in self.mesh.devices.flat if d.process_index == jax.process_index()])
        if local > 1:
            raise ConfigError(
                f"this env steps on the host, one pool per process, so each process drives one device, "
                f"not {local}: use --devices 1, or start one process per device "
                f"(--coordinator HOST:PORT --num-processes P --process-id I)")

    def put(self, *trees):
        """Places per-run inputs `(runs, ...)` on the mesh (tiled to `(D, ...)` in the 'envs' layout)."""
        d = self.env_share

        def place(x):
            x = np.asarray(x)
            if d > 1:
                x = np.repeat(x, d, axis=0)
            if self.mesh is None:
                return jnp.asarray(x)
            return jax.make_array_from_callback(x.shape, NamedSharding(self.mesh, P(AXIS)), lambda index: x[index])

        placed = tuple(jax.tree.map(place, t) for t in trees)
        return placed if len(placed) > 1 else placed[0]

    def jit(self, fn: Callable, in_axes: tuple, metrics: bool = False, one_run_at_a_time: bool = False):
        """`jax.jit(jax.vmap(fn, in_axes))`, run per device under `shard_map` when there is a mesh; a device
        with one run runs `fn` unbatched (`_runs`).

        `fn` works on one run. `in_axes[i]` is 0 for an argument with a leading
        run axis (split over the devices) and None for one every run shares.
        With `metrics`, `fn` returns `(state, metrics)` and the metrics come back
        whole on every process (`(runs, ...)`), ready for `jax.device_get`.
        `one_run_at_a_time`: on a mesh, each device loops over its runs
        (`lax.map`) instead of vmapping them. Meant for init: batched LAPACK
        calls (orthogonal weight init) on several CPU devices at once can
        deadlock XLA's CPU thread pool, and init is cheap either way.
        """
        if self.mesh is None:
            return jax.jit(_runs(fn, in_axes))
        batched = _loop(fn, in_axes) if one_run_at_a_time else _runs(fn, in_axes)
        mesh, split, whole = self.mesh, P(AXIS), P()
        in_specs = tuple(split if a == 0 else whole for a in in_axes)
        # a (state, metrics) pair with metrics, the state alone without
        out_specs: P | tuple[P, P]
        out_shardings: NamedSharding | tuple[NamedSharding, NamedSharding]
        if metrics:
            # 'envs': every device holds the same metrics (averaged over the mesh); take them as they are.
            # 'seeds': each device's metrics stay on it and the host assembles them; only several processes
            # gather them on every device (an all-gather). A program without collectives never waits for
            # another device's: CPU devices share one thread pool, and a collective among them can stall it.
            out_specs = (split, whole if self.layout == "envs" else split)
            gathered = self.layout == "envs" or jax.process_count() > 1
            out_shardings = (NamedSharding(mesh, split), NamedSharding(mesh, whole if gathered else split))
        else:
            out_specs, out_shardings = split, NamedSharding(mesh, split)
        mapped = jax.shard_map(batched, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
        return jax.jit(mapped, in_shardings=tuple(NamedSharding(mesh, s) for s in in_specs),
                       out_shardings=out_shardings)


def _runs(fn: Callable, in_axes: tuple) -> Callable:
    """`jax.vmap(fn, in_axes)` (axes 0 or None only); over a run axis of length 1, `fn` itself on that run.

    A vmap of one run keeps a batch axis of 1 on every array, and XLA:CPU runs the batched
    kernels slower than plain ones (CartPole PPO at PureJaxRL's config, one seed: about 7 %).
    Same maths; the last bits of a float may differ from the batched program's.
    """
    vmapped = jax.vmap(fn, in_axes=in_axes)

    def batched(*args):
        runs = {jax.tree.leaves(x)[0].shape[0] for x, a in zip(args, in_axes) if a == 0 and jax.tree.leaves(x)}
        if runs != {1}:
            return vmapped(*args)
        out = fn(*(jax.tree.map(lambda v: v[0], x) if a == 0 else x for x, a in zip(args, in_axes)))
        return jax.tree.map(lambda v: jnp.expand_dims(v, 0), out)
    return batched


def _loop(fn: Callable, in_axes: tuple) -> Callable:
    """Like `jax.vmap(fn, in_axes)` (axes 0 or None only), but one run after another with `lax.map`."""

    def looped(*args):
        def one(run_args):
            it = iter(run_args)
            return fn(*(next(it) if a == 0 else x for x, a in zip(args, in_axes)))
        return jax.lax.map(one, tuple(x for x, a in zip(args, in_axes) if a == 0))

    return looped


def layout(devices: int, num_envs: int, num_seeds: int, members: int, splits_envs: bool) -> tuple[str, int]:
    """`(layout, envs per device)` of `members x num_seeds` runs on `devices`; ConfigError if they do not divide.

    Several runs split over the devices when they divide; one run splits its
    `num_envs` (for an algorithm whose agent averages over a mesh axis).
    """
    runs = members * num_seeds
    if devices == 1:
        return "single", num_envs
    if runs > 1:
        if runs % devices:
            step = devices // math.gcd(members, devices)  # num_seeds must be a multiple of this
            lower, upper = num_seeds // step * step, (num_seeds // step + 1) * step
            fits = " or ".join(f"num_seeds={n}" for n in (lower, upper) if n > 1)
            runs_text = f"{runs} runs ({members} sweep members x {num_seeds} seeds) do" if members > 1 else \
                f"num_seeds={num_seeds} does"
            raise ConfigError(f"{runs_text} not divide over {devices} devices; use {fits}, "
                              f"or --devices {max(d for d in divisors(runs) if d <= devices)}")
        return "seeds", num_envs
    if not splits_envs:
        raise ConfigError(f"this algorithm cannot split one seed's envs over devices; use --num-seeds {devices} "
                          f"(seeds split over devices) or --devices 1")
    if num_envs % devices:
        lower, upper = num_envs // devices * devices, (num_envs // devices + 1) * devices
        fits = " or ".join(f"num_envs={k}" for k in (lower, upper) if k > 0)
        raise ConfigError(f"num_envs={num_envs} does not divide over {devices} devices (one seed splits its envs); "
                          f"use {fits}")
    return "envs", num_envs // devices


def plan(devices: int | None, num_envs: int, num_seeds: int = 1, members: int = 1,
         splits_envs: bool = False, gathers: bool = False, concurrent_runs: int = CONCURRENT_RUNS,
         host_env: bool = False) -> Plan:
    """Lays `members x num_seeds` runs over `devices` visible devices; raises ConfigError before anything compiles.

    `devices=None` uses every device of the default backend (every process's
    devices in a multi-process run); on the CPU of one process, the most cores the
    runs divide over, or one where the run `gathers` runs across devices (PBT's
    exploit step) or its env steps on the host (`host_env`: one pool per process): no collectives among
    CPU devices unless asked for. Made before JAX starts, it
    sets XLA:CPU's scheduler for the runs a device will hold (`wants_cpu_scheduler`, from
    `concurrent_runs`).
    """
    one = gathers or host_env
    choose_cpu_scheduler(devices, members * num_seeds, one, concurrent_runs)  # before jax.devices() starts JAX
    visible = jax.devices()
    if devices is None:
        devices = len(visible)
        if visible[0].platform == "cpu" and jax.process_count() == 1:
            # CPU devices are cores: the most that the runs divide over; one run stays on one
            devices = cpu_devices_for(members * num_seeds, devices, one)
        elif host_env and jax.process_count() == 1:
            devices = 1  # one pool per process drives one device
    if devices < 1:
        raise ConfigError(f"--devices must be >= 1, got {devices}")
    if devices > len(visible):
        kind = visible[0].platform
        raise ConfigError(f"--devices {devices}: only {len(visible)} {kind} device"
                          f"{'s are' if len(visible) > 1 else ' is'} visible; use --devices {len(visible)} or fewer")
    if jax.process_count() > 1 and devices != len(visible):
        raise ConfigError(f"--devices {devices}: a run over {jax.process_count()} processes uses all "
                          f"{len(visible)} of their devices; leave --devices out")
    kind, local_envs = layout(devices, num_envs, num_seeds, members, splits_envs)
    mesh = None if devices == 1 else Mesh(np.asarray(visible[:devices]), (AXIS,))
    return Plan(kind, devices, local_envs, mesh)


def restore_plan(devices: int, num_envs: int, num_seeds: int = 1, members: int = 1,
                 splits_envs: bool = False) -> Plan:
    """The layout a run was trained with, on no mesh: enough to read its checkpoint in one process
    with any number of devices (the state comes back whole, not sharded)."""
    kind, local_envs = layout(devices, num_envs, num_seeds, members, splits_envs)
    return Plan(kind, devices, local_envs, None)
