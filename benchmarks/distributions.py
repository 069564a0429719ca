"""Action distributions: `pjrl_agents.algorithms.distributions` against distrax, at PPO minibatch sizes.

    python benchmarks/distributions.py [--batches 128,4096] [--repeats 51]

For a masked Categorical (4 and 18 actions; masked logits set to -1e9, as
`Categorical` does) and a 6-dim DiagGaussian, times one jitted gradient of a
PPO-style loss term, mean(log_prob(action) * advantage - 0.01 * entropy), with
respect to the logits (or mean and log_std), and one jitted sample. Each function
is compiled apart; the two implementations' runs alternate, and the median of
`--repeats` runs is printed with the ratio distrax / hand-written. Also prints the
largest absolute difference between the two in log_prob, entropy and the gradient,
and whether they draw the same samples from the same key.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp

t0 = time.perf_counter()
import distrax  # noqa: E402

DISTRAX_IMPORT_S = time.perf_counter() - t0

from benchmarks.common import ratio  # noqa: E402
from pjrl_agents.algorithms.distributions import _MASKED, Categorical, DiagGaussian  # noqa: E402

ENT_COEF = 0.01
RTOL, ATOL = 1e-5, 1e-6


# Each case gives, per implementation, (log_prob, entropy, sample) as functions of
# (params, action, mask) / (params, mask) / (key, params, mask).

def hand_categorical():
    return (Categorical.log_prob, Categorical.entropy, Categorical.sample)


def distrax_categorical():
    def dist(logits, mask):
        return distrax.Categorical(logits=jnp.where(mask, logits, _MASKED))

    return (lambda logits, action, mask: dist(logits, mask).log_prob(action),
            lambda logits, mask: dist(logits, mask).entropy(),
            lambda key, logits, mask: dist(logits, mask).sample(seed=key))


def hand_gaussian():
    return (DiagGaussian.log_prob, DiagGaussian.entropy, DiagGaussian.sample)


def distrax_gaussian():
    def dist(params):
        mean, log_std = params
        return distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))

    return (lambda params, action, mask: dist(params).log_prob(action),
            lambda params, mask: dist(params).entropy(),
            lambda key, params, mask: dist(params).sample(seed=key))


def make_inputs(kind: str, batch: int, dim: int, key):
    """Actor output, mask (None for the Gaussian), actions drawn from the masked policy, advantages."""
    k_p, k_m, k_a, k_adv = jax.random.split(key, 4)
    adv = jax.random.normal(k_adv, (batch,))
    if kind == "categorical":
        logits = jax.random.normal(k_p, (batch, dim))
        mask = jax.random.bernoulli(k_m, 0.7, (batch, dim))
        mask = mask.at[:, 0].set(True)  # at least one legal action a row
        action = Categorical.sample(k_a, logits, mask)
        return logits, mask, action, adv
    params = (jax.random.normal(k_p, (batch, dim)), 0.3 * jax.random.normal(k_m, (batch, dim)) - 0.5)
    return params, None, DiagGaussian.sample(k_a, params), adv


def build(fns):
    log_prob, entropy, sample = fns

    def loss(params, action, mask, adv):
        return jnp.mean(log_prob(params, action, mask) * adv - ENT_COEF * entropy(params, mask))

    return jax.jit(jax.grad(loss)), jax.jit(sample), jax.jit(log_prob), jax.jit(entropy)


def time_pair(fa, fb, args, repeats):
    """Compile both, then alternate their runs; returns (compile_a, compile_b, median_a, median_b) in seconds."""
    compiled, compile_s = [], []
    for f in (fa, fb):
        t = time.perf_counter()
        compiled.append(f.lower(*args).compile())
        compile_s.append(time.perf_counter() - t)
    for c in compiled:  # one warm run each
        jax.block_until_ready(c(*args))
    runs = ([], [])
    for _ in range(repeats):
        for c, r in zip(compiled, runs):
            t = time.perf_counter()
            jax.block_until_ready(c(*args))
            r.append(time.perf_counter() - t)
    return compile_s[0], compile_s[1], statistics.median(runs[0]), statistics.median(runs[1])


def max_abs_diff(a, b):
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


CASES = [  # name, kind, dim, (hand-written, distrax)
    ("Categorical(4), masked", "categorical", 4, (hand_categorical, distrax_categorical)),
    ("Categorical(18), masked", "categorical", 18, (hand_categorical, distrax_categorical)),
    ("DiagGaussian(6)", "gaussian", 6, (hand_gaussian, distrax_gaussian)),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="128,4096")
    parser.add_argument("--repeats", type=int, default=51)
    args = parser.parse_args()
    repeats = max(7, args.repeats)

    print(f"jax {jax.__version__}, distrax {distrax.__version__}, {jax.devices()[0].platform}; "
          f"distrax import in this process {DISTRAX_IMPORT_S:.2f}s (jax already imported)")
    print(f"median of {repeats} runs, compile apart; times in microseconds\n")
    header = (f"{'distribution':<24} {'batch':>5} {'op':<6} {'hand us':>9} {'distrax us':>10} "
              f"{'ratio':>7} {'compile hand/distrax s':>23}")
    print(header)
    print("-" * len(header))
    agreement = []
    key = jax.random.PRNGKey(0)
    for batch in [int(b) for b in args.batches.split(",")]:
        for name, kind, dim, impls in CASES:
            key, k_in, k_s = jax.random.split(key, 3)
            params, mask, action, adv = make_inputs(kind, batch, dim, k_in)
            (grad_h, sample_h, lp_h, ent_h), (grad_d, sample_d, lp_d, ent_d) = (build(f()) for f in impls)

            rows = [("grad", grad_h, grad_d, (params, action, mask, adv)),
                    ("sample", sample_h, sample_d, (k_s, params, mask))]
            for op, fh, fd, op_args in rows:
                ch, cd, th, td = time_pair(fh, fd, op_args, repeats)
                print(f"{name:<24} {batch:>5} {op:<6} {th * 1e6:>9.1f} {td * 1e6:>10.1f} "
                      f"{ratio(td, th):>7} {ch:>11.3f} /{cd:>6.3f}")

            s_d = sample_d(k_s, params, mask)
            legal = "n/a" if mask is None else str(bool(jnp.all(jnp.take_along_axis(mask, s_d[:, None], -1))))
            same = bool(jnp.array_equal(s_d, sample_h(k_s, params, mask)))
            pairs = [(lp_h(params, action, mask), lp_d(params, action, mask)),
                     (ent_h(params, mask), ent_d(params, mask)),
                     (grad_h(params, action, mask, adv), grad_d(params, action, mask, adv))]
            close = all(bool(jnp.allclose(x, y, rtol=RTOL, atol=ATOL))
                        for a, b in pairs for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
            agreement.append((name, batch, *(max_abs_diff(a, b) for a, b in pairs), close, same, legal))

    print(f"\nagreement: max |hand-written - distrax|, float32; allclose at rtol={RTOL:g}, atol={ATOL:g}")
    print(f"{'distribution':<24} {'batch':>5} {'log_prob':>10} {'entropy':>10} {'grad':>10} "
          f"{'allclose':>9} {'same samples':>13} {'distrax samples legal':>22}")
    for name, batch, d_lp, d_ent, d_grad, close, same, legal in agreement:
        print(f"{name:<24} {batch:>5} {d_lp:>10.2e} {d_ent:>10.2e} {d_grad:>10.2e} "
              f"{close!s:>9} {same!s:>13} {legal:>22}")

if __name__ == "__main__":
    main()
