"""What stepping envpool from inside jit costs: steps per second of

  (a) envpool's own Python loop, random actions (`env.step` of its gymnasium API);
  (b) the pjrl adapter inside one jitted `lax.scan`, random actions drawn in JAX;
  (c) PPO training (`pjrl_agents.algorithms.ppo.make_train`) through the adapter;
  (x) for reference, envpool's own XLA interface (`env.xla()`) in a jitted scan, random
      actions: no same-step auto-reset, no seeding from a key, no vmap; see DESIGN.md;

for each env and num_envs given. Every figure is the median of `--repeats` timed
runs after a warm-up; compile time is reported apart. Run from the repo root:

    python benchmarks/envpool_overhead.py                   # CartPole-v1 and Pong-v5, 8 and 64 envs
    python benchmarks/envpool_overhead.py --envs CartPole-v1 --num-envs 8 --steps 2000
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import pjrl_envs
from pjrl_agents.algorithms import ppo


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def envpool_loop(env_id: str, num_envs: int, steps: int, repeats: int) -> float:
    import envpool
    env = envpool.make(env_id, env_type="gymnasium", num_envs=num_envs, seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    space = env.action_space

    def draw():
        if hasattr(space, "n"):
            return rng.integers(0, space.n, num_envs).astype(np.int32)
        return rng.uniform(space.low, space.high, (num_envs,) + space.shape)

    def loop():
        for _ in range(steps):
            env.step(draw())
    loop()
    return steps * num_envs / median_time(loop, repeats)


def envpool_xla_scan(env_id: str, num_envs: int, steps: int, repeats: int) -> float:
    import envpool
    env = envpool.make(env_id, env_type="gymnasium", num_envs=num_envs, seed=0)
    handle, _, _, step = env.xla()
    space = env.action_space

    def run(handle, key):
        def body(handle, k):
            if hasattr(space, "n"):
                action = jax.random.randint(k, (num_envs,), 0, space.n, jnp.int32)
            else:
                action = jax.random.uniform(k, (num_envs,) + space.shape, minval=-1.0, maxval=1.0)
            handle, (_, reward, *_) = step(handle, action)
            return handle, reward.sum()
        return jax.lax.scan(body, handle, jax.random.split(key, steps))

    run = jax.jit(run)
    key = jax.random.PRNGKey(0)
    env.reset()
    jax.block_until_ready(run(handle, key))
    return steps * num_envs / median_time(lambda: jax.block_until_ready(run(handle, key)), repeats)


def random_actions(space, key, num_envs: int):
    if isinstance(space, pjrl_envs.Discrete):  # as cheap as the numpy draw in (a)
        return jax.random.randint(key, (num_envs,), 0, space.n, space.dtype)
    return jax.vmap(space.sample)(jax.random.split(key, num_envs))


def adapter_scan(env_id: str, num_envs: int, steps: int, repeats: int) -> tuple[float, float]:
    env = pjrl_envs.make(f"envpool:{env_id}", num_envs=num_envs)

    def run(state, key):
        def body(state, k):
            act_key, step_key = jax.random.split(k)
            state, ts = env.step(state, random_actions(env.action_space, act_key, num_envs), step_key)
            return state, ts.reward.sum()
        return jax.lax.scan(body, state, jax.random.split(key, steps))[1].sum()

    key = jax.random.PRNGKey(0)
    reset = jax.jit(lambda k: env.reset(k)[0])
    state = jax.eval_shape(reset, key)
    t0 = time.perf_counter()
    compiled = jax.jit(run).lower(state, key).compile()
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats + 1):  # a host env steps only its latest state: a fresh reset (untimed) per run
        state = jax.block_until_ready(reset(key))
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(state, key))
        times.append(time.perf_counter() - t0)
    env.close()
    return steps * num_envs / statistics.median(times[1:]), compile_s


def ppo_train(env_id: str, num_envs: int, updates: int, num_steps: int, repeats: int) -> tuple[float, float]:
    env = pjrl_envs.make(f"envpool:{env_id}", num_envs=num_envs)
    config = ppo.default_config(f"envpool:{env_id}", num_envs=num_envs, num_steps=num_steps,
                                total_timesteps=updates * num_envs * num_steps)
    train = ppo.make_train(config, env)
    key = jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    compiled = jax.jit(train).lower(key).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(key))
    run_s = median_time(lambda: jax.block_until_ready(compiled(key)), repeats)
    env.close()
    return config.num_updates * config.steps_per_update / run_s, compile_s


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", nargs="+", default=["CartPole-v1", "Pong-v5"])
    p.add_argument("--num-envs", nargs="+", type=int, default=[8, 64])
    p.add_argument("--steps", type=int, default=0, help="env steps per timed run (default: per env)")
    p.add_argument("--ppo-updates", type=int, default=4)
    p.add_argument("--ppo-num-steps", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-ppo", action="store_true")
    args = p.parse_args()

    print(f"jax {jax.__version__}, devices {jax.devices()}; median of {args.repeats} runs, steps/s over all envs")
    print(f"{'env':<14}{'envs':>5} | {'(a) envpool loop':>17} | {'(b) adapter scan':>17} {'b/a':>6} | "
          f"{'(c) PPO train':>14} | {'(x) env.xla()':>14} | compile b, c")
    for env_id in args.envs:
        heavy = (env_id.endswith("-v5") and "Pong" in env_id) or "NoFrameskip" in env_id
        for num_envs in args.num_envs:
            steps = args.steps or max(200, (400 if heavy else 20_000) // max(1, num_envs // 8))
            a = envpool_loop(env_id, num_envs, steps, args.repeats)
            b, b_compile = adapter_scan(env_id, num_envs, steps, args.repeats)
            x = envpool_xla_scan(env_id, num_envs, steps, args.repeats)
            if args.skip_ppo:
                c, c_compile = float("nan"), float("nan")
            else:
                num_steps = min(args.ppo_num_steps, 32) if heavy else args.ppo_num_steps
                c, c_compile = ppo_train(env_id, num_envs, args.ppo_updates, num_steps, args.repeats)
            print(f"{env_id:<14}{num_envs:>5} | {a:>17,.0f} | {b:>17,.0f} {b / a:>6.2f} | {c:>14,.0f} | {x:>14,.0f} | "
                  f"{b_compile:.1f}s, {c_compile:.1f}s", flush=True)


if __name__ == "__main__":
    main()
