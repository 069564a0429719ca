"""What an adapter costs: each library's env stepped raw and through pjrl, side by side.

Both run the same batch of envs on the same random actions inside one jitted
`lax.scan`, each with the auto-reset the library itself offers (raw) or the
protocol's same-step auto-reset with `final_obs` (adapter). Prints compile time
apart from run time, the median of `--repeats` runs, and adapter / raw.

    python benchmarks/adapter_overhead.py --num-envs 256 --steps 500 --repeats 5
    python benchmarks/adapter_overhead.py --only brax
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

import pjrl_envs


def _actions(key, space, num_envs):
    return jax.vmap(space.sample)(jax.random.split(key, num_envs))


def _time(fn, arg, repeats):
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(arg).compile()
    compile_s = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(arg))
        runs.append(time.perf_counter() - t0)
    return compile_s, statistics.median(runs)


def adapter_rollout(name, num_envs, steps, **kwargs):
    env = pjrl_envs.make(name, num_envs=num_envs, **kwargs)

    def run(key):
        state, _ = env.reset(key)

        def body(state, k):
            state, ts = env.step(state, _actions(k, env.action_space, num_envs), k)
            return state, ts.reward.sum()

        return jax.lax.scan(body, state, jax.random.split(key, steps))[1].sum()

    return run, env.action_space


def raw_brax(name, num_envs, steps, space):
    from brax import envs
    env = envs.create(name, episode_length=1000, auto_reset=True, batch_size=num_envs)

    def run(key):
        state = env.reset(key)  # VmapWrapper splits it

        def body(state, k):
            state = env.step(state, _actions(k, space, num_envs))
            return state, state.reward.sum()

        return jax.lax.scan(body, state, jax.random.split(key, steps))[1].sum()

    return run


def raw_jumanji(name, num_envs, steps, space):
    import jumanji
    from jumanji.wrappers import VmapAutoResetWrapper
    env = VmapAutoResetWrapper(jumanji.make(name))

    def run(key):
        state, _ = env.reset(jax.random.split(key, num_envs))

        def body(state, k):
            state, ts = env.step(state, _actions(k, space, num_envs))
            return state, ts.reward.sum()

        return jax.lax.scan(body, state, jax.random.split(key, steps))[1].sum()

    return run


def raw_pgx(name, num_envs, steps, space):
    import pgx
    env = pgx.make(name)

    def run(key):
        state = jax.vmap(env.init)(jax.random.split(key, num_envs))

        def body(state, k):
            step_key, reset_key = jax.random.split(k)
            keys = jax.random.split(step_key, num_envs)
            state = jax.vmap(env.step)(state, _actions(k, space, num_envs), keys)
            reward = state.rewards.sum()
            # pgx has no auto-reset of its own: restart finished games, as any user must
            fresh = jax.vmap(env.init)(jax.random.split(reset_key, num_envs))
            done = state.terminated | state.truncated
            state = jax.tree.map(lambda a, b: jnp.where(done.reshape((-1,) + (1,) * (a.ndim - 1)), a, b),
                                 fresh, state)
            return state, reward

        return jax.lax.scan(body, state, jax.random.split(key, steps))[1].sum()

    return run


def raw_gymnax(name, num_envs, steps, space):
    import gymnax
    env, params = gymnax.make(name)

    def run(key):
        _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, num_envs), params)

        def body(state, k):
            keys = jax.random.split(k, num_envs)
            out = jax.vmap(env.step, in_axes=(0, 0, 0, None))(keys, state, _actions(k, space, num_envs), params)
            return out[1], out[2].sum()  # (obs, state, reward, ...) with gymnax's own auto-reset

        return jax.lax.scan(body, state, jax.random.split(key, steps))[1].sum()

    return run


def raw_playground(name, num_envs, steps, space):
    from mujoco_playground import registry, wrapper

    from pjrl_adapters.playground import default_impl
    # Playground's own training wrapper (vmap, episode limit, auto-reset to the cached first state),
    # on the physics pipeline the adapter picks by default
    env = wrapper.wrap_for_brax_training(registry.load(name, config_overrides={"impl": default_impl()}),
                                         episode_length=1000)

    def run(key):
        state = env.reset(jax.random.split(key, num_envs))

        def body(state, k):
            state = env.step(state, _actions(k, space, num_envs))
            return state, state.reward.sum()

        return jax.lax.scan(body, state, jax.random.split(key, steps))[1].sum()

    return run


def raw_craftax(name, num_envs, steps, space):
    from craftax.craftax_env import make_craftax_env_from_name
    env = make_craftax_env_from_name(name, auto_reset=True)
    params = env.default_params

    def run(key):
        _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, num_envs), params)

        def body(state, k):
            keys = jax.random.split(k, num_envs)
            out = jax.vmap(env.step, in_axes=(0, 0, 0, None))(keys, state, _actions(k, space, num_envs), params)
            return out[1], out[2].sum()  # (obs, state, reward, done, info), craftax's own auto-reset

        return jax.lax.scan(body, state, jax.random.split(key, steps))[1].sum()

    return run


def raw_navix(name, num_envs, steps, space):
    import navix
    env = navix.make(name)

    def run(key):
        ts = jax.vmap(env.reset)(jax.random.split(key, num_envs))

        def body(ts, k):
            # navix's own step: an ended episode is reset on the next call, which ignores its action
            ts = jax.vmap(env.step)(ts, _actions(k, space, num_envs))
            return ts, ts.reward.sum()

        return jax.lax.scan(body, ts, jax.random.split(key, steps))[1].sum()

    return run


def raw_xminigrid(name, num_envs, steps, space):
    import xminigrid
    from xminigrid.wrappers import GymAutoResetWrapper
    env, params = xminigrid.make(name)
    env = GymAutoResetWrapper(env)  # xminigrid's own same-step auto-reset

    def run(key):
        timestep = jax.vmap(env.reset, in_axes=(None, 0))(params, jax.random.split(key, num_envs))

        def body(timestep, k):
            timestep = jax.vmap(env.step, in_axes=(None, 0, 0))(params, timestep, _actions(k, space, num_envs))
            return timestep, timestep.reward.sum()

        return jax.lax.scan(body, timestep, jax.random.split(key, steps))[1].sum()

    return run


CASES = [
    ("gymnax", "CartPole-v1", raw_gymnax),
    ("gymnax", "Breakout-MinAtar", raw_gymnax),
    ("brax", "inverted_double_pendulum", raw_brax),
    ("pgx", "minatar-breakout", raw_pgx),
    ("pgx", "2048", raw_pgx),
    ("jumanji", "Game2048-v1", raw_jumanji),
    ("jumanji", "Snake-v1", raw_jumanji),
    ("playground", "CartpoleBalance", raw_playground),
    # a world per env per step on both sides (resets=num_envs), as craftax's own auto-reset; slow on a CPU
    ("craftax", "Craftax-Classic-Symbolic-v1", raw_craftax),
    ("navix", "Navix-Empty-5x5-v0", raw_navix),
    ("navix", "Navix-DoorKey-5x5-v0", raw_navix),
    ("xminigrid", "MiniGrid-Empty-6x6", raw_xminigrid),
    ("xminigrid", "MiniGrid-DoorKey-8x8", raw_xminigrid),
]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-envs", type=int, default=256)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--only", default=None, help="one library: " + ", ".join(sorted({c[0] for c in CASES})))
    args = p.parse_args()
    key = jax.random.PRNGKey(0)
    print(f"{'env':34} {'raw compile':>11} {'raw run':>9} {'pjrl compile':>12} {'pjrl run':>9} {'ratio':>6}")
    for lib, env_id, raw_fn in CASES:
        if args.only and lib != args.only:
            continue
        name = f"{lib}:{env_id}"
        options = {"resets": args.num_envs} if lib == "craftax" else {}  # like for like with the raw env
        adapter, space = adapter_rollout(name, args.num_envs, args.steps, **options)
        raw = raw_fn(env_id, args.num_envs, args.steps, space)
        raw_c, raw_r = _time(raw, key, args.repeats)
        ad_c, ad_r = _time(adapter, key, args.repeats)
        print(f"{name:34} {raw_c:10.1f}s {raw_r:8.3f}s {ad_c:11.1f}s {ad_r:8.3f}s {ad_r / raw_r:6.2f}", flush=True)


if __name__ == "__main__":
    main()
