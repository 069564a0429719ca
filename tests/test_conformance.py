"""The one conformance suite: `check_env` on each adapter's envs, parametrised over (library, env id);
each env's state must also survive a checkpoint save and restore.

By default it checks every gymnax env, the custom adapter's example env and a
representative few of each other library, chosen to cover their kinds of spaces
and endings (each of those compiles for 10-60 s on a CPU). The fast tier (`make
test`, `-m "not slow"`) checks the ones each library names `fast`: one env of
each library but pgx (whose semantics tests are fast), playground, craftax and
xminigrid, whose checks take 15-100 s of CPU each; the others are marked `slow`
(`make test-slow`). With `--all-envs` (or
PJRL_ALL_ENVS=1) it checks every env of every installed library, less the
exclusions below, each skipped with its reason; there an envpool env the adapter
declines (NotImplementedError: a space it does not convert) or that needs a
system library missing here (ImportError) is skipped with that message. A
library that is not installed is skipped, saying what to install.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pjrl_envs
from pjrl_envs import registry
from pjrl_envs.testing import check_env

CORRIDOR = Path(__file__).resolve().parents[1] / "examples" / "custom_adapter"


@dataclasses.dataclass(frozen=True)
class Library:
    """How one library's envs are checked."""

    module: str
    """the library's import name; empty for the custom adapter, which needs none"""
    num_envs: int
    num_steps: int
    representative: tuple[str, ...] | None
    """the env ids checked by default; None: every env, always"""
    fast: tuple[str, ...]
    """the env ids the fast tier checks, a cheap one where the library has one; the others are marked slow"""
    vmap_by_default: bool = True
    """`check_vmap` outside `--all-envs` (which always checks it)"""
    excluded: Callable[[list[str]], dict[str, str]] = lambda ids: {}
    """env id -> why it is not checked, for the ids about to be checked"""
    options: Callable[[str], dict] = lambda env_id: {}
    """keyword options for `make`"""
    expect: Callable[[str, Any, dict], None] = lambda env_id, env, report: None
    """library-specific checks on the env and `check_env`'s report"""


# ---------------------------------------------------------------- per library


def _gymnax_excluded(ids):
    return {"MNISTBandit-bsuite": "downloads MNIST from the internet when made"}


def _brax_expect(env_id, env, report):
    assert isinstance(env.action_space, pjrl_envs.Box)
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    assert report["terminated"] + report["truncated"] > 0


def _brax_options(env_id):
    # inverted_pendulum runs the "fresh" auto-reset path as well, at no extra compile
    return {"episode_length": 40, "auto_reset": "fresh" if env_id == "inverted_pendulum" else "cached"}


def _brax_excluded(ids):
    return {"swimmer": "brax 0.14.2's fluid model calls jnp.clip(a_min=...), which jax 0.10 removed; "
                       "its step fails inside brax itself"}


def _jumanji_excluded(ids):
    from pjrl_adapters import jumanji as jumanji_adapter
    return dict(jumanji_adapter.NEEDS_NETWORK)  # Sokoban-v0: downloads its levels when made


def _pgx_expect(env_id, env, report):
    assert report["truncated"] == 0  # pgx games end by their own rules


ENVPOOL_OPTIONS = {
    "Pong-v5": {"max_episode_steps": 40},  # Atari, uint8 frames; a short limit to see truncation
    "Breakout-v5": {"episodic_life": True, "stack_num": 2},
}


def _envpool_expect(env_id, env, report):
    if env_id == "Pong-v5":
        assert report["truncated"] == 3 and report["terminated"] == 0  # the time limit is truncation
    if env_id == "Breakout-v5":
        assert env.observation_space.shape == (2, 84, 84) and env.observation_space.dtype == np.uint8


def _envpool_excluded(ids):
    from envpool.registration import registry as envpool_registry
    why = {"envpool.vizdoom": "making a vizdoom pool here crashes the process (signal 11 in DoomController)"}
    out = {i: why[envpool_registry.specs[i][0]] for i in ids if envpool_registry.specs[i][0] in why}
    for i in ("Sudoku-v0", "Sudoku-very-easy-v0"):
        out[i] = "envpool 1.2.5's wheel lacks the Sudoku puzzle database it opens when made"
    return out


def _playground_expect(env_id, env, report):
    assert isinstance(env.action_space, pjrl_envs.Box)
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    assert report["truncated"] > 0 and report["terminated"] == 0  # DM Control ends by its time limit (or NaN)


def _playground_options(env_id):
    # PendulumSwingup runs the "fresh" auto-reset path as well
    return {"episode_length": 40, "auto_reset": "fresh" if env_id == "PendulumSwingup" else "cached"}


def _craftax_expect(env_id, env, report):
    assert env.max_episode_steps == 20 and report["truncated"] > 0  # the time limit is truncation
    if "Pixels" in env_id:
        assert len(env.observation_space.shape) == 3 and env.observation_space.shape[-1] == 3


def _navix_options(env_id):
    return {"observation_fn": "categorical_first_person"} if env_id == "Navix-DoorKey-5x5-v0" else {}


def _navix_expect(env_id, env, report):
    assert env.max_episode_steps == 100
    if env_id == "Navix-Empty-5x5-v0":
        assert report["terminated"] > 0 and report["truncated"] > 0  # the goal and the time limit both end episodes


def _xminigrid_expect(env_id, env, report):
    if env_id == "MiniGrid-EmptyRandom-5x5":
        assert report["terminated"] > 0 and report["truncated"] > 0  # the goal and the time limit both end episodes


def _corridor_expect(env_id, env, report):
    if env_id == "Corridor-v0":
        assert report["terminated"] > 0 and report["truncated"] > 0  # both ways an episode ends are seen


LIBRARIES = {
    "gymnax": Library("gymnax", num_envs=3, num_steps=120, representative=None,
                      fast=("CartPole-v1",), excluded=_gymnax_excluded),
    "brax": Library("brax", num_envs=3, num_steps=90, representative=("fast", "inverted_pendulum"), fast=("fast",),
                    excluded=_brax_excluded, options=_brax_options, expect=_brax_expect),
    # one env per kind of action space: Discrete with a mask and a corrected bound (TSP), a joint
    # multi-discrete mask turned Discrete (Minesweeper), a per-choice multi-discrete mask (Cleaner)
    "jumanji": Library("jumanji", num_envs=3, num_steps=60,
                       representative=("TSP-v1", "Minesweeper-v0", "Cleaner-v0"), fast=("TSP-v1",),
                       vmap_by_default=False, excluded=_jumanji_excluded),
    # two players with masks; one player, stochastic
    # (minatar-asterix keeps an empty array in its state, which checkpoints must survive)
    "pgx": Library("pgx", num_envs=4, num_steps=60,
                   representative=("tic_tac_toe", "minatar-breakout", "minatar-asterix"), fast=(),
                   vmap_by_default=False, expect=_pgx_expect),
    # classic control, Box actions, Atari frames, MuJoCo (float64 on the host), dm_control (dict obs)
    "envpool": Library("envpool", num_envs=3, num_steps=60,
                       representative=("CartPole-v1", "Acrobot-v1", "Pendulum-v1", "Pong-v5", "Breakout-v5",
                                       "Hopper-v5", "CheetahRun-v1"), fast=("CartPole-v1",),
                       excluded=_envpool_excluded, options=lambda env_id: ENVPOOL_OPTIONS.get(env_id, {}),
                       expect=_envpool_expect),
    # DM Control through MJX (Menagerie's robots are not listed); the pendulum in --all-envs runs "fresh" resets
    "playground": Library("mujoco_playground", num_envs=3, num_steps=90, representative=("CartpoleBalance",),
                          fast=(), options=_playground_options, expect=_playground_expect),
    # Craftax-Classic from symbols and from pixels, one env with its own world on every reset
    # (full Craftax compiles for ~2 min on a CPU: --all-envs only)
    "craftax": Library("craftax", num_envs=3, num_steps=60,
                       representative=("Craftax-Classic-Symbolic-v1", "Craftax-Classic-Pixels-v1"),
                       fast=(),
                       vmap_by_default=False, expect=_craftax_expect,
                       options=lambda env_id: {"max_timesteps": 20, "resets": 3 if "Pixels" in env_id else 1}),
    # an Empty room (goal and time limit), a Door/Key one in a first-person view with its widened bounds,
    # dynamic obstacles (balls moved by the step key)
    "navix": Library("navix", num_envs=3, num_steps=120,
                     representative=("Navix-Empty-5x5-v0", "Navix-DoorKey-5x5-v0", "Navix-Dynamic-Obstacles-6x6-v0"),
                     fast=("Navix-Empty-5x5-v0",),
                     vmap_by_default=False, options=_navix_options, expect=_navix_expect),
    # an open room (a short limit: both endings), keys and doors, a memory corridor
    "xminigrid": Library("xminigrid", num_envs=8, num_steps=120,
                         representative=("MiniGrid-EmptyRandom-5x5", "MiniGrid-DoorKey-5x5", "MiniGrid-MemoryS8"),
                         fast=(),
                         vmap_by_default=False,
                         options=lambda env_id: {"max_steps": 20} if env_id == "MiniGrid-EmptyRandom-5x5" else {},
                         expect=_xminigrid_expect),
    # the worked example of docs/writing-an-adapter.md
    "corridor": Library("", num_envs=8, num_steps=300, representative=("Corridor-v0",), fast=("Corridor-v0",),
                        expect=_corridor_expect),
}


# ---------------------------------------------------------------- parametrisation


def _corridor_module():
    sys.path.insert(0, str(CORRIDOR))
    try:
        return importlib.import_module("pjrl_corridor")
    finally:
        sys.path.remove(str(CORRIDOR))


def _ids(name: str) -> list[str]:
    if name == "corridor":
        return _corridor_module().list_envs()
    return [n.partition(":")[2] for n in pjrl_envs.list_envs(name)]


def _params(name: str, everything: bool) -> list:
    lib = LIBRARIES[name]
    if lib.module and importlib.util.find_spec(lib.module) is None:
        reason = f"{lib.module} is not installed: pip install '{registry.get_adapter(name).requires}'"
        return [pytest.param(name, None, id=name, marks=pytest.mark.skip(reason=reason))]
    ids = _ids(name) if everything or lib.representative is None else list(lib.representative)
    assert set(lib.fast) <= set(ids), lib.fast
    excluded = lib.excluded(ids)
    return [pytest.param(name, i, id=f"{name}:{i}",
                         marks=([pytest.mark.skip(reason=excluded[i])] if i in excluded else [])
                         + ([] if i in lib.fast else [pytest.mark.slow]))
            for i in ids]


def pytest_generate_tests(metafunc):
    if "env_id" in metafunc.fixturenames:
        everything = metafunc.config.getoption("--all-envs")
        metafunc.parametrize("library, env_id", [p for name in LIBRARIES for p in _params(name, everything)])


@pytest.fixture(scope="module", autouse=True)
def corridor():
    """The custom adapter registered as `corridor` for this module's tests."""
    pjrl_envs.register("corridor", _corridor_module().ADAPTER)
    yield
    registry._registered.pop("corridor", None)


# ---------------------------------------------------------------- the check


def check_checkpoint(env, directory) -> None:
    """The env's state after a step survives a checkpoint save and restore, and steps on identically."""
    import jax

    from pjrl_agents.run.checkpoint import Checkpointer
    key = jax.random.PRNGKey(1)
    reset, step = jax.jit(env.reset), jax.jit(env.step)
    state, ts = reset(key)
    action = pjrl_envs.random_policy(env)(ts.obs, ts.action_mask, key)
    state, ts = step(state, action, key)
    checkpointer = Checkpointer(directory)
    try:
        checkpointer.save(1, state)
        step_saved, restored = checkpointer.restore(jax.eval_shape(lambda: state))
    finally:
        checkpointer.close()
    assert step_saved == 1 and not checkpointer.skipped
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    if env.host_callbacks:  # a host env steps only its latest state: the restored one, once
        step(restored, action, key)
        return
    _, after = step(state, action, key)
    _, after_restored = step(restored, action, key)
    for a, b in zip(jax.tree.leaves(after.obs), jax.tree.leaves(after_restored.obs)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_check_env(library, env_id, all_envs, tmp_path):
    lib = LIBRARIES[library]
    try:
        env = pjrl_envs.make(f"{library}:{env_id}", num_envs=lib.num_envs, **lib.options(env_id))
    except (NotImplementedError, ImportError) as e:
        if lib.representative is None or env_id in lib.representative:
            raise
        pytest.skip(f"{type(e).__name__}: {e}")
    try:
        report = check_env(env, num_steps=lib.num_steps, check_vmap=all_envs or lib.vmap_by_default)
        assert report["steps"] == lib.num_steps * lib.num_envs
        lib.expect(env_id, env, report)
        check_checkpoint(env, tmp_path)
    finally:
        if library == "envpool":
            env.close()  # its host pools
