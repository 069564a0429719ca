"""Threefry, the default PRNG, lowered without a loop on the CPU.

JAX lowers the Threefry-2x32 hash on the CPU as a 5-iteration `while` loop (on GPU and
TPU it is straight-line code). Every `jax.random` call in a scanned training step then
runs a small loop of its own, and on the CPU each iteration of it costs a handful of
dispatched kernels: in PPO's rollout, where an env step and an action draw make five
such calls on arrays of a few numbers, the loops are a large part of the step.
`unroll_threefry_on_cpu()` registers JAX's own straight-line lowering of the same hash
for the CPU, so XLA fuses each call into one kernel. The random bits are the same, bit
for bit; only the compiled program changes (docs/design.md gives its compile-time cost).

`import pjrl_envs` applies it. It touches a private JAX table, so it is applied only
for the JAX it was checked against (`JAX_VERSIONS`); `active()` says whether it is in
force.
"""
from __future__ import annotations

import contextlib
from functools import partial

import jax

JAX_VERSIONS = ("0.10.2",)
_state = {"active": False}


def unroll_threefry_on_cpu() -> bool:
    """Lower Threefry-2x32 on the CPU without a loop; returns whether it is in force."""
    if _state["active"] or jax.__version__ not in JAX_VERSIONS:
        return _state["active"]
    _register(rolled=False)
    _state["active"] = True
    return True


def active() -> bool:
    """Whether the straight-line CPU lowering is registered."""
    return _state["active"]


def looped():
    """Programs lowered inside use JAX's own looped lowering (the same bits).

    For a program that runs once, such as a run's initial state: there the loop
    costs microseconds, while the straight-line hash, fused into every kernel that
    draws from a derived key, compiles slowly (CartPole DQN's one-run init: 2.0 s
    against 1.1 s; a vmapped init compiles faster without the loop). Not thread-safe:
    a program lowered meanwhile on another thread gets the loop too (the same bits,
    only slower).
    """
    return _lowered(rolled=True)


def held():
    """Programs lowered inside compute each hash once, in a kernel of its own (the same bits).

    The straight-line hash is cheap to run but XLA fuses it into every kernel that
    reads its output, so a key derived once and drawn from in many places is hashed
    in each of them, and every copy is compiled. Here each output is divided by a
    one XLA cannot see through (an integer divide it will not duplicate into its
    consumers), so the hash stays one kernel. It suits a program that derives many
    keys; a rollout that draws a few numbers a step runs faster with the hash
    fused. Not thread-safe, as `looped`.
    """
    return _lowered(held=True)


@contextlib.contextmanager
def _lowered(**how):
    """Programs lowered inside use the lowering `_register(**how)` names, then the straight line again."""
    if not _state["active"]:
        yield
        return
    _register(**how)
    try:
        yield
    finally:
        _register(rolled=False)


def _held_hash(key1, key2, x1, x2):
    from jax._src.random import threefry2x32 as threefry

    y1, y2 = threefry._threefry2x32_lowering(key1, key2, x1, x2, use_rolled_loops=False)
    odd = key1 | jax.numpy.uint32(1)
    one = odd // odd
    return y1 // one, y2 // one


def _register(rolled: bool = False, held: bool = False) -> None:
    """Registers a Threefry lowering for the CPU: JAX's loop (`rolled`), the straight line, or the straight line
    held in a kernel of its own (`held`)."""
    from jax._src.interpreters import mlir
    from jax._src.random import threefry2x32 as threefry

    fn = _held_hash if held else partial(threefry._threefry2x32_lowering, use_rolled_loops=rolled)
    mlir.register_lowering(threefry.threefry2x32_p, mlir.lower_fun(fn, multiple_results=True), platform="cpu")
