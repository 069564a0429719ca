"""Runs rejax's own SAC or TD3 on a gymnax env and prints one JSON line: compile_s, run_s, final_return.

    python benchmarks/rejax_reference.py --site DIR --algo sac --env Pendulum-v1 --seeds 16 --steps 10000
                                         [--set key=value ...] [--repeats 1]

`--site` is a directory holding rejax and what it needs beyond this Python's jax, flax and optax:
`pip install --no-deps --target DIR rejax==0.1.3 distrax==0.1.9 tensorflow-probability==0.25.0 gymnax==0.0.9`
(rejax 0.1.3 unpacks the five values gymnax 0.0.x's `step` returns; the site's gymnax comes first on the
path, so rejax steps Pendulum through its own gymnax). Training is timed with rejax's evaluation callback
replaced by a no-op and evaluated once afterwards, untimed, by rejax's own callback (128 episodes), whose
mean return over seeds is `final_return`. Seeds are vmapped over `algo.train` in one compile.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--site", required=True)
    p.add_argument("--algo", required=True)
    p.add_argument("--env", default="Pendulum-v1")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--set", action="append", default=[], help="a rejax setting, KEY=JSON")
    a = p.parse_args()
    sys.path.insert(0, a.site)
    import jax
    import jax.interpreters.xla
    import jax.numpy as jnp
    from jax._src import core

    # tensorflow-probability 0.25 (distrax's, so rejax's) reads a table this jax keeps elsewhere
    if not hasattr(jax.interpreters.xla, "pytype_aval_mappings"):
        jax.interpreters.xla.pytype_aval_mappings = core.pytype_aval_mappings
    import rejax

    settings = {k: json.loads(v) for k, v in (s.split("=", 1) for s in a.set)}
    algo = rejax.get_algo(a.algo).create(env=a.env, total_timesteps=a.steps, eval_freq=a.steps,
                                         skip_initial_evaluation=True, **settings)
    timed = algo.replace(eval_callback=lambda algo, ts, rng: jnp.zeros(()))
    keys = jax.random.split(jax.random.PRNGKey(0), a.seeds)
    train = jax.jit(jax.vmap(timed.train))
    t0 = time.perf_counter()
    compiled = train.lower(keys).compile()
    compile_s = time.perf_counter() - t0
    runs = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        ts, _ = jax.block_until_ready(compiled(keys))
        runs.append(time.perf_counter() - t0)
    _, returns = jax.jit(jax.vmap(lambda t, k: algo.eval_callback(algo, t, k)))(ts, keys)
    print(json.dumps({"ref": "rejax", "algo": a.algo, "env": a.env, "seeds": a.seeds, "steps": a.steps,
                      "compile_s": compile_s, "run_s": statistics.median(runs), "run_s_all": runs,
                      "final_return": float(returns.mean())}), flush=True)


if __name__ == "__main__":
    main()
