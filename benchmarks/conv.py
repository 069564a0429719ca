"""Convolution on CPU: XLA's convolution against `PatchConv`'s patches-times-matrix form.

    python benchmarks/conv.py [--seeds 1,4] [--repeats 3]

Times one gradient step (forward and backward, vmapped over seeds' parameters, as
`--num-seeds` and sweeps run) of the two conv torsos PPO uses: MinAtar's one 3x3
conv at 1024 frames of 10x10x4 (a PureJaxRL MinAtar minibatch), and the Nature CNN
at 256 frames of 84x84x4 (one seed unless `--seeds` is given: XLA's convolution
takes seconds a step there). Prints the median per step, compile apart, and the ratio.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flax.linen as nn
import jax
import jax.numpy as jnp

from benchmarks.common import ratio, time_compiled
from pjrl_agents.algorithms.networks import PatchConv

STEPS = 10  # gradient steps per timed call


class Net(nn.Module):
    layers: tuple  # (features, kernel, stride, padding) per conv
    impl: str

    @nn.compact
    def __call__(self, x):
        for features, kernel, stride, padding in self.layers:
            x = nn.relu(PatchConv(features, (kernel, kernel), (stride, stride), padding, impl=self.impl)(x))
        return nn.Dense(1)(nn.relu(nn.Dense(64)(x.reshape(x.shape[0], -1))))[:, 0]


# name: (conv layers, input shape, default seeds)
NETS = {"minatar 3x3 conv": (((16, 3, 1, "SAME"),), (1024, 10, 10, 4), (1, 4)),
        "nature cnn": (((32, 8, 4, "VALID"), (64, 4, 2, "VALID"), (64, 3, 1, "VALID")), (256, 84, 84, 4), (1,))}


def time_step(layers, shape, impl: str, seeds: int, repeats: int) -> dict:
    net = Net(layers, impl)
    x = jax.random.uniform(jax.random.PRNGKey(0), (seeds, *shape))
    params = jax.vmap(net.init)(jax.random.split(jax.random.PRNGKey(1), seeds), x)
    grad = jax.vmap(jax.grad(lambda p, x: jnp.square(net.apply(p, x)).mean()))

    @jax.jit
    def sgd(params, x):
        step = lambda p, _: (jax.tree.map(lambda a, g: a - 1e-3 * g, p, grad(p, x)), None)
        return jax.lax.scan(step, params, None, STEPS)[0]

    r = time_compiled(sgd, params, x, repeats=repeats)
    return {"compile_s": r["compile_s"], "step_ms": 1000 * r["run_s"] / STEPS}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default=None, help="comma-separated numbers of vmapped parameter sets")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    print(f"one SGD step, vmapped over seeds, on {jax.devices()[0].platform}; median of {args.repeats}")
    for name, (layers, shape, default_seeds) in NETS.items():
        for seeds in [int(s) for s in args.seeds.split(",")] if args.seeds else default_seeds:
            conv, patches = (time_step(layers, shape, impl, seeds, args.repeats) for impl in ("conv", "patches"))
            print(f"{name:>17} | {seeds} seed(s) | XLA conv {conv['step_ms']:9.1f} ms"
                  f" (compile {conv['compile_s']:.1f}s)"
                  f" | patches {patches['step_ms']:8.1f} ms (compile {patches['compile_s']:.1f}s)"
                  f" | {ratio(conv['step_ms'], patches['step_ms'])} faster", flush=True)


if __name__ == "__main__":
    main()
