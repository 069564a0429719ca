"""`check_env`: the conformance checks every adapter passes. Adapter authors run it.

    from pjrl_envs.testing import check_env
    report = check_env(my_vec_env)   # raises EnvCheckError listing every problem
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pjrl_envs import spaces
from pjrl_envs.core import Env, VecEnv
from pjrl_envs.rollout import random_policy, rollout
from pjrl_envs.types import TimeStep


class EnvCheckError(AssertionError):
    """Raised by `check_env`; `.problems` lists every failed check."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("env does not conform:\n" + "\n".join(f"  - {p}" for p in problems))


def _random_rollout(env: VecEnv, key, num_steps: int):
    """Random legal actions from a reset: `(reset TimeStep, TimeSteps (T, B), actions (T, B, ...))`."""
    reset_key, key = jax.random.split(key)
    start = env.reset(reset_key)
    _, (traj, actions) = rollout(env, random_policy(env), key, num_steps, start=start,
                                 record=lambda before, action, after, ts: (ts, action))
    return start[1], traj, actions


def _structure_problems(reset_ts: TimeStep, step_ts: TimeStep) -> list[str]:
    out = []
    for name in TimeStep._fields:
        a, b = getattr(reset_ts, name), getattr(step_ts, name)
        # jaxlib ships no type stub for PyTreeDef (what jax.tree.structure returns): mypy sees no `!=`
        if jax.tree.structure(a) != jax.tree.structure(b):  # type: ignore[operator]
            what = f"keys {sorted(a)} vs {sorted(b)}" if isinstance(a, dict) and isinstance(b, dict) else ""
            out.append(f"reset and step return differently structured {name} {what}".rstrip())
            continue
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            if x.dtype != y.dtype or x.shape != y.shape:
                out.append(f"{name}: reset gives {x.dtype}{list(x.shape)}, step gives {y.dtype}{list(y.shape)}")
                break
    return out


def _leaf_problems(where: str, x, space, lead: tuple) -> list[str]:
    out = []
    want_shape = lead + tuple(space.shape)
    if tuple(x.shape) != want_shape:
        out.append(f"{where}: shape {tuple(x.shape)}, space says {want_shape}")
    if jnp.dtype(x.dtype) != jnp.dtype(space.dtype):
        out.append(f"{where}: dtype {x.dtype}, space says {jnp.dtype(space.dtype).name}")
    elif (tuple(x.shape) == want_shape
          and not bool(jax.vmap(space.contains)(x.reshape((-1,) + tuple(space.shape))).all())):
        out.append(f"{where}: values outside {space}")
    return out


def _timestep_problems(ts: TimeStep, env: VecEnv, lead: tuple, tag: str) -> list[str]:
    out = []
    obs_spaces = env.observation_space
    # jaxlib ships no type stub for PyTreeDef: mypy sees no `!=` (here and below)
    if jax.tree.structure(ts.obs) != jax.tree.structure(obs_spaces, is_leaf=spaces.is_space):  # type: ignore[operator]
        return [f"{tag}: obs structure {jax.tree.structure(ts.obs)} does not match observation_space"]
    for name in ("obs", "final_obs"):
        tree = getattr(ts, name)
        if jax.tree.structure(tree) != jax.tree.structure(ts.obs):  # type: ignore[operator]
            out.append(f"{tag}: {name} structure differs from obs")
            continue
        for x, s in zip(jax.tree.leaves(tree), spaces.tree_spaces(obs_spaces)):
            out += _leaf_problems(f"{tag} {name}", x, s, lead)
    for name, dtype in (("reward", jnp.float32), ("terminated", jnp.bool_), ("truncated", jnp.bool_)):
        x = getattr(ts, name)
        if tuple(x.shape) != lead:
            out.append(f"{tag}: {name} shape {tuple(x.shape)}, expected {lead}")
        if x.dtype != dtype:
            out.append(f"{tag}: {name} dtype {x.dtype}, expected {jnp.dtype(dtype).name}")
    if ts.reward.dtype == jnp.float32 and not bool(jnp.isfinite(ts.reward).all()):
        out.append(f"{tag}: reward has non-finite values")
    want = lead + spaces.mask_shape(env.action_space)
    if ts.action_mask.dtype != jnp.bool_ or tuple(ts.action_mask.shape) != want:
        out.append(f"{tag}: action_mask must be bool {want}, got {ts.action_mask.dtype} {tuple(ts.action_mask.shape)}")
    elif spaces.mask_shape(env.action_space) and not bool(ts.action_mask.any(-1).all()):
        out.append(f"{tag}: an action_mask allows no action at all")
    if not isinstance(ts.info, dict):
        out.append(f"{tag}: info must be a dict, got {type(ts.info).__name__}")
    return out


def check_env(env: Env | VecEnv, num_steps: int = 300, seed: int = 0, exclusive: bool = True,
              check_vmap: bool = True) -> dict[str, Any]:
    """Checks that `env` keeps the pjrl protocol; raises `EnvCheckError` listing each problem.

    An `Env` is checked as a `VecEnv` of 4. Checks: reset and step jit and run
    inside `lax.scan` (and `vmap` over keys unless `check_vmap=False`); every
    observation, final_obs, reward, flag and mask has the shape and dtype its
    space promises and lies inside it; reset and step return the same TimeStep
    structure (info keys included); `final_obs == obs` where no episode ended;
    `terminated` and `truncated` never both True (unless `exclusive=False`); the
    same key gives the same trajectory. Returns counts of what the rollout saw.
    """
    if isinstance(env, Env):
        env = env.to_vec(4)
    problems: list[str] = []
    key = jax.random.PRNGKey(seed)
    lead = (env.num_envs,)

    try:
        _, ts0 = jax.jit(env.reset)(key)
    except Exception as e:  # any failure is the finding
        raise EnvCheckError([f"reset does not run under jit: {type(e).__name__}: {e}"]) from e
    problems += _timestep_problems(ts0, env, lead, "reset")

    try:
        state, _ = jax.jit(env.reset)(key)
        action = random_policy(env)(ts0.obs, ts0.action_mask, key)
        _, ts1 = jax.jit(env.step)(state, action, key)
    except Exception as e:
        raise EnvCheckError(problems + [f"step does not run under jit: {type(e).__name__}: {e}"]) from e
    problems += _timestep_problems(ts1, env, lead, "step")
    problems += _structure_problems(ts0, ts1)

    run = jax.jit(lambda k: _random_rollout(env, k, num_steps))
    try:
        ts_reset, traj, actions = run(key)
    except Exception as e:
        raise EnvCheckError(problems + [f"step does not run inside jit + lax.scan: {type(e).__name__}: {e}"]) from e

    for t in sorted({0, 1, num_steps // 2, num_steps - 1}):
        step_t = jax.tree.map(lambda x: x[t], traj)  # noqa: B023 - called within its iteration
        problems += _timestep_problems(step_t, env, lead, f"step {t}")
    problems = list(dict.fromkeys(problems))

    term, trunc = np.asarray(traj.terminated), np.asarray(traj.truncated)
    if term.dtype == np.bool_ and trunc.dtype == np.bool_:
        if exclusive and (term & trunc).any():
            problems.append("terminated and truncated are both True on some step; a time limit that "
                            "coincides with termination should report terminated only")
        ongoing = ~(term | trunc)
        for x, f in zip(jax.tree.leaves(traj.obs), jax.tree.leaves(traj.final_obs)):
            x, f = np.asarray(x), np.asarray(f)
            if x.shape == f.shape and not np.array_equal(x[ongoing], f[ongoing]):
                problems.append("final_obs differs from obs on steps where no episode ended")
                break
    if spaces.mask_shape(env.action_space) and isinstance(env.action_space, spaces.Discrete):
        masks = np.asarray(jnp.concatenate([ts_reset.action_mask[None], traj.action_mask[:-1]]))
        chosen = np.take_along_axis(masks, np.asarray(actions)[..., None].astype(np.int64), -1)
        if not chosen.all():
            problems.append("sampling with action_mask produced an illegal action (check mask layout)")

    again = run(key)
    same = jax.tree.map(lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)),
                        (traj, actions), (again[1], again[2]))
    if not all(jax.tree.leaves(same)):
        problems.append("same key, different trajectory: the env is not deterministic given its key")

    if check_vmap:
        try:
            keys = jax.random.split(key, 2)
            jax.jit(jax.vmap(lambda k: _random_rollout(env, k, 2)[1].reward))(keys).block_until_ready()
        except Exception as e:  # noqa: BLE001
            problems.append(f"reset/step do not run under jax.vmap: {type(e).__name__}: {str(e)[:200]}")

    if problems:
        raise EnvCheckError(problems)
    return {"steps": num_steps * env.num_envs, "terminated": int(term.sum()), "truncated": int(trunc.sum())}
