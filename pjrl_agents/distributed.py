"""One training run over many devices and hosts, with JAX's own sharding.

    plan = distributed.plan(4, num_envs=8, runs=8, members=1, splits_envs=True)  # checks counts, compiles nothing
    env = pjrl_envs.make(name, num_envs=plan.num_envs)       # this device's envs
    agent = ppo.PPO(plan.local(config), env, axis_name=plan.axis_name)
    keys, configs = plan.put(keys, configs)                  # (runs, ...) onto the mesh
    init = plan.jit(agent.init, in_axes=(0, 0), one_run_at_a_time=True)
    state = init(keys, configs)                              # sharded over the 4 devices

`pjrl_agents.experiment.build` does all of this for a run spec.

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
import json
import math
import os
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from pjrl_agents.common import ConfigError, divisors

AXIS = "devices"
"""Name of the mesh axis; agents take it as `axis_name` to average over devices."""


# ---------------------------------------------------------------- processes


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> bool:
    """Joins a multi-process run with `jax.distributed.initialize`; returns whether one was joined.

    Arguments left out come from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
    JAX_PROCESS_ID; `coordinator="auto"` leaves all three to JAX's cluster
    detection (SLURM, Open MPI, Kubernetes, Cloud TPU). With none of them set
    this is a single-process run and nothing happens. Must run before JAX
    touches a device.
    """
    env = os.environ
    coordinator = coordinator or env.get("JAX_COORDINATOR_ADDRESS")
    num_processes = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
    if coordinator is None and num_processes is None and process_id is None:
        return False
    if jax.distributed.is_initialized():
        return True
    if coordinator == "auto":
        coordinator = None
    else:
        if coordinator is None:
            raise ConfigError("--num-processes/--process-id need --coordinator HOST:PORT "
                              "(the address of process 0), or --coordinator auto on a managed cluster")
        host, sep, port = coordinator.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"--coordinator {coordinator!r}: write HOST:PORT, e.g. 10.0.0.1:1234")
        if num_processes is None or process_id is None:
            raise ConfigError("--coordinator needs --num-processes P and --process-id I "
                              "(or JAX_NUM_PROCESSES and JAX_PROCESS_ID)")
    if num_processes is not None and num_processes < 1:
        raise ConfigError(f"--num-processes must be >= 1, got {num_processes}")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise ConfigError(f"--process-id {process_id}: use 0 to {num_processes - 1} for {num_processes} processes")
    _filter_native_output(f"process {process_id if process_id is not None else '?'}")
    # SIGINT and SIGTERM are the runner's (every process stops after the same chunk, checkpointed), not the
    # preemption service's, which would catch SIGTERM in C++ and keep training
    jax.config.update("jax_enable_preemption_service", False)
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id, heartbeat_timeout_seconds=HEARTBEAT_S)
    except RuntimeError as e:
        raise ConfigError(f"jax.distributed.initialize failed: {str(e).splitlines()[0]}") from None
    return True


SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"
CONCURRENT_RUNS = 32
"""XLA's concurrency-optimised scheduler orders a program's kernels so that independent ones can run on
different threads. An RL update is thousands of kernels of microseconds each, and on a CPU the hand-offs
cost more than they save until a device holds many runs (each kernel batched over them): pjrl runs
without it, and with it where a CPU device holds `CONCURRENT_RUNS` runs or more, or as many as the
algorithm's own `Algorithm.concurrent_runs` (DQN's 16; `plan` chooses, before JAX starts). CartPole at
PureJaxRL's configs on 2 cores: one DQN seed trains 7-10 % faster without it, 16 PPO seeds vmapped on
one device about the same either way, 64 vmapped seeds faster with it (PPO 18-20 %, DQN 7 %), and
DQN, which values its targets beside the gradient where the scheduler is on, 16 seeds 12-20 % faster.
Results are the same bit for bit (docs/design.md has the figures)."""

CPU_FLAGS = (f"{SCHEDULER_FLAG}=false",)
"""XLA:CPU settings pjrl adds when imported (`use_cpu_flags`)."""

_ADDED = "PJRL_ADDED_XLA_FLAGS"
"""`{"xla_flags": XLA_FLAGS as pjrl left them, "added": [the flags it added]}`, so that a process started
from this one tells pjrl's flags from the user's (while XLA_FLAGS are as pjrl left them)"""


def _added() -> list[str]:
    try:
        mark = json.loads(os.environ.get(_ADDED) or "{}")
    except ValueError:
        return []
    return mark.get("added", []) if mark.get("xla_flags") == os.environ.get("XLA_FLAGS") else []


def _user_flags() -> str | None:
    flags, added = os.environ.get("XLA_FLAGS"), _added()
    if flags is None or not added:
        return flags
    own = [f for f in flags.split() if f not in added]
    return " ".join(own) if own else None


USER_XLA_FLAGS = _user_flags()
"""XLA_FLAGS as the user set them, without the flags pjrl added (benchmarks run references with them)"""


def use_cpu_flags(concurrent: bool = False) -> list[str]:
    """Puts `CPU_FLAGS` in XLA_FLAGS, the scheduler on where `concurrent`, each unless the user named it.

    Runs when pjrl_agents is imported, and again from `plan` for the runs a CPU
    device will hold; XLA reads the variable once, when JAX first touches a device,
    so after that it changes nothing. Returns the flags set.
    """
    from jax._src import xla_bridge
    if xla_bridge.backends_are_initialized():
        return []
    wanted = [f"{SCHEDULER_FLAG}={str(concurrent).lower()}"] if _scheduler_in(USER_XLA_FLAGS) is None else []
    added = _added()
    kept = [f for f in os.environ.get("XLA_FLAGS", "").split() if f not in added]
    if wanted or added:
        os.environ["XLA_FLAGS"] = " ".join(kept + wanted)
        os.environ[_ADDED] = json.dumps({"xla_flags": os.environ["XLA_FLAGS"], "added": wanted})
    return wanted


def _scheduler_in(flags: str | None) -> bool | None:
    """What `flags` (XLA_FLAGS text) set the concurrency-optimised scheduler to; None where they do not name it."""
    named = [f for f in (flags or "").split() if f.split("=")[0] == SCHEDULER_FLAG]
    return named[-1].split("=", 1)[-1].lower() not in ("false", "0") if named else None


def cpu_scheduler_on() -> bool:
    """Whether XLA_FLAGS (as this process's JAX reads them) turn XLA:CPU's concurrency-optimised scheduler on."""
    return _scheduler_in(os.environ.get("XLA_FLAGS")) is not False


def _forced_cpu_devices() -> int | None:
    """The CPU device count XLA_FLAGS force (`--xla_force_host_platform_device_count`); None where they do not."""
    named = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if f.split("=")[0] == "--xla_force_host_platform_device_count"]
    if not named:
        return None
    value = named[-1].split("=", 1)[-1]
    return int(value) if value.isdigit() else 1  # XLA itself refuses a bad count


def _cpu_devices_to_come() -> int:
    """The CPU devices JAX will start with (`use_cpu_cores` or the user chose them), before it starts."""
    forced = _forced_cpu_devices()
    return max(jax.config.jax_num_cpu_devices, 1) if forced is None else forced


def cpu_devices_for(runs: int, cores: int, gathers: bool = False) -> int:
    """The CPU devices of one process a run of `runs` runs uses by default: the most cores the runs divide
    over, or one where the run gathers runs across devices."""
    return 1 if gathers else max(d for d in divisors(runs) if d <= cores)


def cpu_kernels_side_by_side() -> bool:
    """Whether this process's programs run on a CPU whose XLA runs independent kernels side by side (the
    concurrency-optimised scheduler on). Starts JAX if nothing has yet."""
    return jax.default_backend() == "cpu" and cpu_scheduler_on()


def wants_cpu_scheduler(runs_per_device: int, concurrent_runs: int = CONCURRENT_RUNS) -> bool:
    """Whether a process whose CPU devices hold `runs_per_device` runs each runs with XLA's concurrency-optimised
    scheduler: as the user's XLA_FLAGS say where they name it, else from `concurrent_runs` runs a device (the
    algorithm's `Algorithm.concurrent_runs`; `CONCURRENT_RUNS` by default)."""
    user = _scheduler_in(USER_XLA_FLAGS)
    return runs_per_device >= concurrent_runs if user is None else user


def _choose_cpu_scheduler(devices: int | None, runs: int, gathers: bool, concurrent_runs: int) -> None:
    """Before JAX starts: XLA:CPU's scheduler for the runs each device of this plan will hold (`wants_cpu_scheduler`)."""
    from jax._src import distributed as jax_distributed, xla_bridge
    if xla_bridge.backends_are_initialized() or jax_distributed.global_state.client is not None:
        return
    count = _cpu_devices_to_come()
    devices = cpu_devices_for(runs, count, gathers) if devices is None else devices
    if 1 <= devices <= count and runs % devices == 0:  # else `plan` refuses the counts
        use_cpu_flags(concurrent=wants_cpu_scheduler(runs // devices, concurrent_runs))


def use_cpu_cores() -> int | None:
    """One CPU device per core (cores this process may run on), for a single-process run on the CPU.

    XLA runs one small program no faster on two cores than on one (a PPO update of
    CartPole at PureJaxRL's size: the same time, 16 seeds vmapped), but two
    programs side by side on two devices run in parallel. With core devices,
    `plan(None, ...)` splits the seeds over the cores (one seed stays on one
    device). Must run before JAX touches a device; returns the count set, or None
    where it leaves JAX as it is: a CPU device count already chosen
    (`--xla_force_host_platform_device_count`, `jax_num_cpu_devices`), JAX
    already started, one core, or `PJRL_CPU_DEVICES` set (its value, >= 1, is
    then the count).
    """
    raw = os.environ.get("PJRL_CPU_DEVICES")
    if raw not in (None, ""):
        count = _env_int("PJRL_CPU_DEVICES")
        if count < 1:
            raise ConfigError(f"PJRL_CPU_DEVICES={raw}: expected a whole number >= 1")
    elif _forced_cpu_devices() is not None or jax.config.jax_num_cpu_devices >= 0:
        return None
    else:
        count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if count == max(jax.config.jax_num_cpu_devices, 1):
        return None
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # JAX has started: its devices stay as they are
        return None
    return count


HEARTBEAT_S = int(os.environ.get("PJRL_HEARTBEAT_S", "30"))
"""seconds without a heartbeat after which JAX's coordination service declares a process dead (JAX's own
default is 100); a process stuck that long ends the run"""

_NATIVE_FILTER = r"""
import signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
who, dying, said = sys.argv[1], None, False
for raw in sys.stdin.buffer:
    line = raw.decode("utf-8", "replace")
    if line.startswith("\0said"):
        said = True
    elif line.startswith("[Gloo] Rank"):
        pass
    elif dying or any(m in line for m in ("Polled an error from coordination service", "detected fatal errors",
                                          "heartbeat timeout", "Use error polling to propagate",
                                          "coordination service", "preemption_sync_manager", "Socket closed")):
        dying = True
    else:
        sys.stdout.write(line)
        sys.stdout.flush()
if dying and not said:
    sys.stdout.write(f"pjrl: {who} stopped: another process of the run died or stopped answering; resume every "
                     "process from the last complete checkpoint with --resume RUN_DIR\n")
"""


def _filter_native_output(who: str) -> None:
    """Sends what the native libraries write to fds 1 and 2 through a small filter process onto stderr,
    while Python keeps the real stdout and stderr: Gloo's connection lines are dropped, and the coordination
    service's fatal abort (a peer died; it cannot be caught) becomes one line."""
    import subprocess
    import sys
    if getattr(_filter_native_output, "child", None) is not None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    real_out, real_err = os.dup(1), os.dup(2)
    read, write = os.pipe()
    _filter_native_output.child = subprocess.Popen([sys.executable, "-c", _NATIVE_FILTER, who], stdin=read,
                                                   stdout=real_err, start_new_session=True)
    os.close(read)
    os.dup2(write, 1)
    os.dup2(write, 2)
    os.close(write)
    sys.stdout = os.fdopen(real_out, "w", buffering=1)
    sys.stderr = os.fdopen(real_err, "w", buffering=1)


PEER_FAILURES = ("Gloo", "heartbeat timeout", "Barrier failed", "UNAVAILABLE", "Connection reset by peer",
                 "Connection closed by peer", "coordination service")
"""words of the errors JAX raises in a process whose peer died or hung"""


def peer_failed(error: BaseException) -> bool:
    """Whether `error` is a collective or barrier failing because another process of the run is gone."""
    return jax.process_count() > 1 and any(word in str(error) for word in PEER_FAILURES)


def stop_for_peer(message: str) -> None:
    """Says `message` in one line and ends this process at once (exit code 1): after a peer died, JAX's
    shutdown would wait for it and then abort with a stack dump."""
    import sys
    print(f"pjrl: {message}", file=sys.stderr, flush=True)
    if getattr(_filter_native_output, "child", None) is not None:
        os.write(2, b"\0said\n")  # the filter need not say it again
    os._exit(1)


def any_process(flag: bool) -> bool:
    """`flag` or-ed over the processes of the run (a collective: every process must call it)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils
    return bool(np.asarray(multihost_utils.process_allgather(np.asarray([flag], np.int32))).any())


def barrier(name: str) -> None:
    """Waits until every process of the run gets here."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def shared_directory(path: Path, prepare: Callable[[], None] | None = None) -> Path:
    """The run directory every process of the run uses: process 0's `path`, made absolute.

    Process 0 runs `prepare` (which may raise; every process then fails with its message), writes a token
    into the directory and publishes its path; every other process checks it sees the token there, since
    checkpoints are written by all processes together into one directory (shared storage). One process that
    cannot see it fails all of them with one line, before anything compiles.
    """
    if jax.process_count() == 1:
        if prepare:
            prepare()
        return path
    from jax._src.distributed import global_state
    client, me = global_state.client, jax.process_index()
    timeout_ms = 1000 * max(60, HEARTBEAT_S)
    if me == 0:
        try:
            if prepare:
                prepare()
            token = f"{os.getpid()}-{time.time_ns()}"
            (path / ".shared").write_text(token)
            client.key_value_set("pjrl/run_dir", f"ok\n{path.resolve()}\n{token}")
        except Exception as e:
            client.key_value_set("pjrl/run_dir", f"error\n{e}\n")
            raise
    status, where, token = client.blocking_key_value_get("pjrl/run_dir", timeout_ms).split("\n", 2)
    if status == "error":
        raise ConfigError(f"process 0 could not start the run: {where}")
    where = Path(where)
    if me != 0:
        try:
            seen = (where / ".shared").read_text() == token
        except OSError:
            seen = False
        client.key_value_set(f"pjrl/sees/{me}", "yes" if seen else "no")
    blind = [i for i in range(1, jax.process_count())
             if client.blocking_key_value_get(f"pjrl/sees/{i}", timeout_ms) != "yes"]
    if blind:
        raise ConfigError(f"process{'es' if len(blind) > 1 else ''} {', '.join(map(str, blind))} cannot see the "
                          f"run directory {where} that process 0 writes: every process writes its share of each "
                          "checkpoint there, so it must be on storage all hosts mount at the same path "
                          "(give --out such a path)")
    return where


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected an integer") from None


def is_main_process() -> bool:
    """True in process 0 (and in every single-process run): the one that writes logs and checkpoints."""
    return jax.process_index() == 0


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
         splits_envs: bool = False, gathers: bool = False, concurrent_runs: int = CONCURRENT_RUNS) -> Plan:
    """Lays `members x num_seeds` runs over `devices` visible devices; raises ConfigError before anything compiles.

    `devices=None` uses every device of the default backend (every process's
    devices in a multi-process run); on the CPU of one process, the most cores the
    runs divide over, or one where the run `gathers` runs across devices (PBT's
    exploit step): no collectives among CPU devices unless asked for. Made before JAX starts, it
    sets XLA:CPU's scheduler for the runs a device will hold (`wants_cpu_scheduler`, from
    `concurrent_runs`).
    """
    _choose_cpu_scheduler(devices, members * num_seeds, gathers, concurrent_runs)  # before jax.devices() starts JAX
    visible = jax.devices()
    if devices is None:
        devices = len(visible)
        if visible[0].platform == "cpu" and jax.process_count() == 1:
            # CPU devices are cores: the most that the runs divide over; one run stays on one
            devices = cpu_devices_for(members * num_seeds, devices, gathers)
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
