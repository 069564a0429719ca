"""The processes of one run over several hosts: joining (`jax.distributed`), the run directory they share,
agreeing between chunks, and stopping in one line when a peer dies.

Several hosts: call `initialize` (or pass `--coordinator HOST:PORT
--num-processes P --process-id I` to `pjrl train`) in every process before
anything else touches JAX; every process then runs the same program over the
mesh of all processes' devices, and `is_main_process()` gates writing.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import jax
import numpy as np

from pjrl_agents.config import ConfigError

if TYPE_CHECKING:
    import subprocess

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
    num_processes = num_processes if num_processes is not None else env_int("JAX_NUM_PROCESSES")
    process_id = process_id if process_id is not None else env_int("JAX_PROCESS_ID")
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


_native_filter: subprocess.Popen | None = None
"""the filter process `_filter_native_output` started (None before it runs)"""


def _filter_native_output(who: str) -> None:
    """Sends what the native libraries write to fds 1 and 2 through a small filter process onto stderr,
    while Python keeps the real stdout and stderr: Gloo's connection lines are dropped, and the coordination
    service's fatal abort (a peer died; it cannot be caught) becomes one line."""
    import subprocess
    import sys
    global _native_filter
    if _native_filter is not None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    real_out, real_err = os.dup(1), os.dup(2)
    read, write = os.pipe()
    _native_filter = subprocess.Popen([sys.executable, "-c", _NATIVE_FILTER, who], stdin=read, stdout=real_err,
                                      start_new_session=True)
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
    if _native_filter is not None:
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
    assert client is not None  # more than one process: jax.distributed is initialised
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


def env_int(name: str) -> int | None:
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
