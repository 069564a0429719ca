"""XLA:CPU settings pjrl chooses before JAX starts: the kernel scheduler for the runs a device holds, and
one CPU device per core."""
from __future__ import annotations

import json
import os

import jax

from pjrl_agents.config import ConfigError, divisors
from pjrl_agents.run.processes import env_int

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


def _num_cpu_devices_option() -> int:
    """JAX's `jax_num_cpu_devices` option (-1 where nothing chose a count)."""
    return jax.config.jax_num_cpu_devices  # type: ignore[attr-defined]  # jax adds its options with setattr


def _cpu_devices_to_come() -> int:
    """The CPU devices JAX will start with (`use_cpu_cores` or the user chose them), before it starts."""
    forced = _forced_cpu_devices()
    return max(_num_cpu_devices_option(), 1) if forced is None else forced


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


def choose_cpu_scheduler(devices: int | None, runs: int, gathers: bool, concurrent_runs: int) -> None:
    """Before JAX starts: XLA:CPU's scheduler for the runs each device of this plan will hold
    (`wants_cpu_scheduler`)."""
    from jax._src import distributed as jax_distributed
    from jax._src import xla_bridge
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
        count = env_int("PJRL_CPU_DEVICES")  # not None: the variable is set
        if count is None or count < 1:
            raise ConfigError(f"PJRL_CPU_DEVICES={raw}: expected a whole number >= 1")
    elif _forced_cpu_devices() is not None or _num_cpu_devices_option() >= 0:
        return None
    else:
        count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if count == max(_num_cpu_devices_option(), 1):
        return None
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # JAX has started: its devices stay as they are
        return None
    return count
