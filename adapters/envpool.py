"""envpool's C++ environments as `envpool:<id>`, stepped on the host from inside jit.

    env = pjrl_envs.make("envpool:Pong-v5", num_envs=8, frame_skip=4, episodic_life=True)

Every envpool task id is an env name; keyword arguments other than `num_envs`
go to `envpool.make` as they are, and an option envpool rejects fails at `make`
with envpool's own message.

How it runs. The pool lives on the host. `reset(key)` and `step(state, action,
key)` are `jax.pure_callback`s, so they run inside `jit` and `lax.scan` like any
JAX env: `reset` builds a fresh pool whose per-env seeds come from `key` (same
key, same trajectory), `step` sends the actions and receives the next batch.
The env state is a small handle (pool, row, step count) threaded from call to
call; that data dependency is what orders the host calls.

Seeds under `jax.vmap`. The callbacks hand the whole vmapped batch to one host
call (`vmap_method="broadcast_all"`): `vmap(train)(keys)` over S seeds builds
ONE pool of S x num_envs envs at reset, each row seeded from its own key, and
steps all rows with one send/recv per step. Row s of the result is exactly
what `train(keys[s])` gives alone. `pjrl train --num-seeds S` needs nothing else.

Auto-reset. envpool resets an env on the step AFTER it is done, ignoring that
step's action and returning reward 0. The adapter turns this into the
protocol's same-step auto-reset: within the host call that ends an episode it
resets the finished envs at once, returns their first observation as `obs` and
the true last observation as `final_obs`; envpool's reset transition never
reaches the agent. `terminated` and `truncated` are envpool's `done & ~trunc`
and `trunc` (time limits such as Atari's `max_episode_steps` and MuJoCo's 1000
steps are truncation), with one correction and one limit:

  * envpool reports `trunc` for any episode that ends on its time-limit step,
    even when it ended there by its own rules (a pole that falls on CartPole's
    500th step comes back truncated), and its `discount` is 0 on every ending,
    so it cannot tell the two apart. Where the env's info says the game is over
    (Atari's `info["terminated"]`), such a step is `terminated`, as it should be.
  * Elsewhere (classic control, MuJoCo, dm_control) nothing tells them apart:
    an ending by the env's own rules exactly on the limit step stays
    `truncated`, so an agent bootstraps from that one terminal state. It is one
    step in `max_episode_steps`, and only where both coincide.

What a host env cannot do, unlike a JAX env:
  * step a state other than the latest one: a saved, copied or earlier state
    cannot be stepped again (the pool has moved on). Doing so raises an error
    naming the stale step count.
  * share one state among vmapped members (`vmap` over actions with a single
    unbatched state): each member needs its own `reset`, i.e. vmap over keys.
  * be differentiated, or be run on an accelerator without a round trip to the
    host every step; `jax.pure_callback` copies actions and observations.
  * run asynchronously (envpool's `batch_size < num_envs`): every step waits for
    all envs.
Each `reset` creates a pool; an env keeps its last `max_pools` pools alive and
closes older ones (stepping a state of a closed pool raises an error).
"""
from __future__ import annotations

import itertools
import threading
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from pjrl_envs import spaces
from pjrl_envs.core import VecEnv
from pjrl_envs.registry import Adapter, OptionError, check_options, require
from pjrl_envs.types import TimeStep

REQUIRES = "envpool==1.2.5"
# Options the adapter sets itself; the value is what to do instead.
RESERVED = {
    "num_envs": "pass num_envs to pjrl_envs.make",
    "seed": "seeds come from the key given to reset",
    "env_seed": "seeds come from the key given to reset",
    "batch_size": "envpool's asynchronous mode is not supported: every step waits for all envs",
    "max_num_players": "multi-player envpool tasks are not supported",
    "gym_reset_return_info": "the adapter always reads the reset info",
}
# envpool declares the smallest positive float (C++'s numeric_limits<T>::min()) as the lower
# bound of unbounded observations: float64's in dm_control, float32's in box2d.
_TINY = (np.finfo(np.float64).tiny, np.finfo(np.float32).tiny)


def _envpool():
    return require("envpool", REQUIRES)


def _dtype(dtype) -> np.dtype:
    """The JAX-side dtype of an envpool array: 64-bit becomes 32-bit, as JAX keeps it."""
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return np.dtype(np.float32)
    if dtype == np.int64:
        return np.dtype(np.int32)
    if dtype == np.uint64:
        return np.dtype(np.uint32)
    return dtype


def _bound(x, sign: float) -> np.ndarray:
    x = np.asarray(x, np.float64)
    unbounded = (np.abs(x) >= 1e30) | ((sign < 0) & np.isin(x, _TINY))
    return np.where(unbounded, sign * np.inf, x)


def _convert_space(space, where: str):
    name = type(space).__name__
    if name == "Discrete":
        return spaces.Discrete(int(space.n), jnp.int32)
    if name == "MultiDiscrete":
        return spaces.MultiDiscrete(tuple(int(n) for n in np.asarray(space.nvec).ravel()), jnp.int32)
    if name == "Box":
        return spaces.Box(_bound(space.low, -1.0), _bound(space.high, 1.0), tuple(space.shape), _dtype(space.dtype))
    if name == "Dict":
        return {k: _convert_space(v, f"{where}[{k!r}]") for k, v in space.spaces.items()}
    raise NotImplementedError(f"the adapter does not support the envpool space {space!r} ({where})")


@struct.dataclass
class EnvpoolState:
    """Which host envs a (possibly vmapped) batch is: one row of one pool per member."""

    pool: jax.Array  # () int32, id of the host pool
    row: jax.Array  # () int32, this member's block of num_envs envs in that pool
    t: jax.Array  # () int32, steps taken since reset; must match the host's count


class _HostPool:
    """One envpool pool of `rows x num_envs` envs and each row's step count."""

    def __init__(self, env, rows: int, num_envs: int):
        self.env = env
        self.rows = rows
        self.num_envs = num_envs
        self.t = np.zeros(rows, np.int32)
        self.all_ids = np.arange(rows * num_envs, dtype=np.int32)


class EnvpoolVecEnv(VecEnv):
    """An envpool task under the pjrl `VecEnv` protocol (see the module docstring)."""

    host_callbacks = True

    def __init__(self, env_id: str, num_envs: int = 1, max_pools: int = 4, **options):
        _envpool()  # a missing envpool says how to install it before any other error
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        for name in sorted(set(options) & set(RESERVED)):
            raise OptionError(f"envpool:{env_id} option {name!r} is set by the adapter: {RESERVED[name]}")
        self.env_id = env_id
        self.name = f"envpool:{env_id}"
        self.num_envs = int(num_envs)
        self.options = dict(options)
        self.max_pools = int(max_pools)
        probe = self._make_pool([0])
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", ".*precision lowered", UserWarning)
                self._read_layout(probe)
        finally:
            probe.close()
        self._lock = threading.Lock()
        self._pools: dict[int, _HostPool] = {}
        self._ids = itertools.count()

    # ------------------------------------------------------------ host side

    def _make_pool(self, seeds: list[int]):
        """An envpool pool of `len(seeds)` envs, env i seeded with `seeds[i]`."""
        envpool = _envpool()
        try:
            with warnings.catch_warnings():  # gymnasium's note that float64 bounds became float32
                warnings.filterwarnings("ignore", ".*precision lowered", UserWarning)
                return envpool.make(self.env_id, env_type="gymnasium", num_envs=len(seeds), seed=list(seeds),
                                    **self.options)
        except TypeError as e:  # an option envpool does not know, or a value of the wrong type
            rejected = e
        except (AssertionError, ValueError, RuntimeError) as e:
            raise OptionError(f"envpool rejected the options {self.options} for {self.env_id}: "
                              f"{e or type(e).__name__}") from None
        known = set(envpool.make_spec(self.env_id).config._fields) - set(RESERVED) - {"base_path"}
        check_options(f"envpool:{self.env_id}", self.options, sorted(known))
        raise OptionError(f"envpool rejected the options {self.options} for {self.env_id}: {rejected}")

    def _read_layout(self, env):
        """Spaces and where each field sits in envpool's raw state list, from a 1-env probe."""
        self.observation_space = _convert_space(env.observation_space, f"envpool:{self.env_id} observation")
        self.action_space = _convert_space(env.action_space, f"envpool:{self.env_id} action")
        if not isinstance(self.action_space, (spaces.Discrete, spaces.MultiDiscrete, spaces.Box)):
            raise NotImplementedError(f"envpool:{self.env_id}: dict actions are not supported")
        limit = getattr(env.spec.config, "max_episode_steps", None)
        self.max_episode_steps = None if limit is None else int(limit)
        self._action_dtype = env.spec._action_spec[-1][0]
        start = np.asarray(getattr(env.action_space, "start", 0) if type(env.action_space).__name__ != "Box" else 0)
        self._action_start = start if start.any() else None  # gymnasium Discrete(n, start)
        keys = list(env._state_keys)
        self._index = {k: i for i, k in enumerate(keys)}
        obs_names = ({k: f"obs:{k}" for k in self.observation_space}
                     if isinstance(self.observation_space, dict) else "obs")
        leaves, self._obs_tree = jax.tree.flatten(obs_names)
        if any(k not in self._index for k in leaves):
            raise NotImplementedError(f"envpool:{self.env_id}: nested observations are not supported")
        self._obs_idx = [self._index[k] for k in leaves]
        self._info_names = ["elapsed_step"] + [k[len("info:"):] for k in keys if k.startswith("info:")
                                               and k not in ("info:env_id", "info:players.env_id")]
        self._info_idx = [self._index["elapsed_step" if n == "elapsed_step" else f"info:{n}"]
                          for n in self._info_names]
        env.async_reset()
        raw = env._recv()
        self._info_specs = [jax.ShapeDtypeStruct((self.num_envs,) + raw[i].shape[1:], _dtype(raw[i].dtype))
                            for i in self._info_idx]
        self._mask = spaces.no_mask(self.action_space)

    def _obs_specs(self) -> list:
        return [jax.ShapeDtypeStruct((self.num_envs,) + s.shape, s.dtype)
                for s in spaces.tree_spaces(self.observation_space)]

    def _in_order(self, raw, env_ids):
        """envpool returns envs in completion order; put them in the order they were sent."""
        got = raw[self._index["info:env_id"]]
        if np.array_equal(got, env_ids):
            return raw
        where = np.empty(int(got.max()) + 1, np.int64)
        where[got] = np.arange(got.size)
        take = where[env_ids]
        return [x[take] for x in raw]

    def _host_reset(self, seeds):
        """Builds a pool seeded row by row; returns `[pool, row, *obs, *info]`, leading dims `seeds.shape[:-1]`."""
        batch = seeds.shape[:-1]
        seeds = np.asarray(seeds).reshape(-1)
        rows = seeds.size // self.num_envs
        env = self._make_pool(seeds.tolist())
        env.async_reset()
        raw = self._in_order(env._recv(), np.arange(seeds.size, dtype=np.int32))
        with self._lock:
            pool_id = next(self._ids) % (2**31 - 1)
            self._pools[pool_id] = _HostPool(env, rows, self.num_envs)
            while len(self._pools) > self.max_pools:
                oldest = next(iter(self._pools))
                self._pools.pop(oldest).env.close()
        per_member = [np.full(batch, pool_id, np.int32), np.arange(rows, dtype=np.int32).reshape(batch)]
        return per_member + self._per_env([raw[i] for i in self._obs_idx + self._info_idx], batch)

    def _host_step(self, packed):
        """Steps every member's envs; returns `[t, *obs, *final_obs, reward, terminated, truncated, *info]`.

        `packed` is `(*batch, 3 + action size)` int32: pool, row, step count, then the
        action's bits (one callback input, as each input costs a transfer).
        """
        packed = np.asarray(packed)  # JAX hands callbacks jax.Arrays; work on a numpy view
        batch = packed.shape[:-1]
        packed = packed.reshape(-1, packed.shape[-1])
        pool_ids, rows, ts = packed[:, 0], packed[:, 1], packed[:, 2]
        action = packed[:, 3:].view(np.dtype(self.action_space.dtype))
        action = action.reshape((pool_ids.size * self.num_envs,) + tuple(self.action_space.shape))
        if (pool_ids == pool_ids[0]).all():  # the usual case: one pool
            t, per_env = self._step_pool(int(pool_ids[0]), rows, ts, action, np.arange(rows.size))
        else:  # members from several pools: step each pool once, put results back in place
            parts = [(m, self._step_pool(int(p), rows[m], ts[m], action, m))
                     for p in np.unique(pool_ids) for m in [np.flatnonzero(pool_ids == p)]]
            members = np.concatenate([m for m, _ in parts])
            t = np.concatenate([out[0] for _, out in parts])[np.argsort(members)]
            order = np.argsort(_env_rows(members, self.num_envs))
            per_env = [np.concatenate(xs)[order] for xs in zip(*[out[1] for _, out in parts])]
        return [t.reshape(batch)] + self._per_env(per_env, batch)

    def _step_pool(self, pid: int, rows, ts, action, members):
        """One send/recv on pool `pid` for the given members; returns `(t, per-env arrays)`."""
        E = self.num_envs
        with self._lock:
            pool = self._pools.get(pid)
        if pool is None:
            raise RuntimeError(f"envpool:{self.env_id}: this env state belongs to a pool that was closed "
                               f"(more than max_pools={self.max_pools} resets since); a host env can only "
                               "step its latest states")
        whole = rows.size == pool.rows and (rows == np.arange(pool.rows)).all()
        if not whole and np.unique(rows).size != rows.size:
            raise RuntimeError(f"envpool:{self.env_id}: one host env state is stepped by several vmapped "
                               "members at once; give each member its own reset (vmap over reset keys, as "
                               "`pjrl train --num-seeds` does) instead of sharing one state")
        stale = pool.t[rows] != ts
        if stale.any():
            r = int(np.flatnonzero(stale)[0])
            raise RuntimeError(f"envpool:{self.env_id}: stepping a stale env state (step {int(ts[r])}, but the "
                               f"host env is at step {int(pool.t[rows[r]])}); a host env cannot re-step a "
                               "saved or earlier state, only its latest one")
        pool.t[rows] += 1
        env_ids = pool.all_ids if whole else _env_rows(rows, E)
        in_order = members.size * E == action.shape[0] and (members == np.arange(members.size)).all()
        act = action if in_order else action[_env_rows(members, E)]
        if self._action_start is not None:
            act = act + self._action_start
        act = np.require(act, self._action_dtype, ["C", "W"])  # envpool takes writeable buffers

        env = pool.env
        env._send([env_ids, env_ids, act])
        raw = self._in_order(env._recv(), env_ids)
        final_obs = [raw[i] for i in self._obs_idx]
        done = raw[self._index["done"]]
        game_over = raw[self._index["info:terminated"]] if "info:terminated" in self._index else None
        terminated, trunc = _endings(done, raw[self._index["trunc"]], game_over)
        obs = final_obs
        if done.any():
            # SAME-STEP AUTO-RESET: reset the finished envs now, so the agent never
            # sees envpool's reset transition on the next step.
            ended = env_ids[done]
            env._reset(ended)
            fresh = self._in_order(env._recv(), ended)
            obs = [o.copy() for o in final_obs]
            for o, i in zip(obs, self._obs_idx):
                o[done] = fresh[i]
        reward = raw[self._index["reward"]]
        info = [raw[i] for i in self._info_idx]
        return pool.t[rows].copy(), [*obs, *final_obs, reward, terminated, trunc, *info]

    def _per_env(self, arrays: list, batch: tuple) -> list:
        """Host arrays `(members * num_envs, ...)` as `batch + (num_envs, ...)`, in JAX dtypes."""
        out = []
        for x in arrays:
            dtype = _dtype(x.dtype)
            out.append(x.reshape(batch + (self.num_envs,) + x.shape[1:]).astype(dtype, copy=False))
        return out

    # ------------------------------------------------------------ protocol

    def reset(self, key: jax.Array) -> tuple[EnvpoolState, TimeStep]:
        seeds = jax.random.randint(key, (self.num_envs,), 0, 2**31 - 1, dtype=jnp.int32)
        i32 = jax.ShapeDtypeStruct((), jnp.int32)
        n_obs = len(self._obs_idx)
        out = jax.pure_callback(self._host_reset, [i32, i32, *self._obs_specs(), *self._info_specs], seeds,
                                vmap_method="broadcast_all")
        pool, row, obs, info = out[0], out[1], out[2:2 + n_obs], out[2 + n_obs:]
        obs = jax.tree.unflatten(self._obs_tree, obs)
        false = jnp.zeros((self.num_envs,), jnp.bool_)
        ts = TimeStep(obs=obs, reward=jnp.zeros((self.num_envs,), jnp.float32), terminated=false,
                      truncated=false, final_obs=obs, action_mask=self._masks(),
                      info=dict(zip(self._info_names, info)))
        return EnvpoolState(pool, row, jnp.zeros((), jnp.int32)), ts

    def step(self, state: EnvpoolState, action: jax.Array, key: jax.Array) -> tuple[EnvpoolState, TimeStep]:
        del key  # envpool draws its randomness on the host, from the seeds given at reset
        action = jnp.asarray(action, self.action_space.dtype)
        flag = jax.ShapeDtypeStruct((self.num_envs,), jnp.bool_)
        obs_specs = self._obs_specs()
        result = [jax.ShapeDtypeStruct((), jnp.int32), *obs_specs, *obs_specs,
                  jax.ShapeDtypeStruct((self.num_envs,), jnp.float32), flag, flag, *self._info_specs]
        bits = jax.lax.bitcast_convert_type(action, jnp.int32).reshape(-1)  # every action dtype is 32-bit
        packed = jnp.concatenate([jnp.stack([state.pool, state.row, state.t]), bits])
        out = jax.pure_callback(self._host_step, result, packed, vmap_method="broadcast_all")
        n = len(obs_specs)
        obs = jax.tree.unflatten(self._obs_tree, out[1:1 + n])
        final_obs = jax.tree.unflatten(self._obs_tree, out[1 + n:1 + 2 * n])
        reward, terminated, truncated = out[1 + 2 * n:4 + 2 * n]
        info = dict(zip(self._info_names, out[4 + 2 * n:]))
        ts = TimeStep(obs=obs, reward=reward, terminated=terminated, truncated=truncated, final_obs=final_obs,
                      action_mask=self._masks(), info=info)
        # flax.struct.dataclass adds `replace` at run time; its typing does not declare it
        return state.replace(t=out[0]), ts  # type: ignore[attr-defined]

    def _masks(self) -> jax.Array:
        return jnp.broadcast_to(self._mask, (self.num_envs,) + self._mask.shape)

    def close(self) -> None:
        """Closes every host pool this env made."""
        with self._lock:
            while self._pools:
                self._pools.popitem()[1].env.close()


def _endings(done: np.ndarray, trunc: np.ndarray, game_over: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """`(terminated, truncated)` from envpool's `done` and `trunc`; a step where the game is over (where the
    env says) is terminated even when it fell on the time limit, which envpool reports as `trunc`."""
    trunc = trunc.astype(bool) & done
    if game_over is not None:
        trunc = trunc & ~game_over.astype(bool)
    return done & ~trunc, trunc


def _env_rows(rows, num_envs: int) -> np.ndarray:
    """Env ids (or action rows) of pool rows `rows`, each a block of `num_envs`."""
    return (np.asarray(rows, np.int32)[:, None] * num_envs + np.arange(num_envs, dtype=np.int32)).reshape(-1)


def list_envs() -> list[str]:
    """Each envpool task once: a namespaced alias (`Jumanji/Maze-v0`, `phys2d/CartPole-v1`) whose spec
    entry (import path, spec class, config) is the same as its plain name's is left out, and so is a
    name that differs from an earlier one by case alone (`highway-v0`) with the same entry. Versions
    envpool happens to build alike (`Hopper-v3`, `Hopper-v4`) are different names users ask for, and stay.
    """
    specs = require("envpool.registration", REQUIRES).registry.specs

    def entry(name):
        import_path, spec_cls, config = specs[name]
        return repr((import_path, spec_cls, sorted(config.items())))

    def alias(name):
        plain = name.partition("/")[2]
        return plain in specs and entry(plain) == entry(name)

    first_by_case: dict[tuple, str] = {}  # `highway-v0` and `Highway-v0`: the one registered first
    for name in specs:
        first_by_case.setdefault((name.lower(), entry(name)), name)
    return [name for name in specs if not alias(name) and first_by_case[name.lower(), entry(name)] == name]


def make(env_id: str, num_envs: int = 1, **options) -> EnvpoolVecEnv:
    return EnvpoolVecEnv(env_id, num_envs=num_envs, **options)


ADAPTER = Adapter(list_envs=list_envs, make=make, requires=REQUIRES, steps_on_host=True)
