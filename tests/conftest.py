"""The suite's options and shared fixtures.

`--all-envs` (or `PJRL_ALL_ENVS=1`): check every env of every installed library, not a representative few.
`finished_run`: one small finished run, trained once per session, for the tests that need a run to read.
"""
import os
import shutil
from pathlib import Path

import pytest

from tests import shared_run

# `pjrl train` makes each CPU core a device (run.xla_cpu.use_cpu_cores); the suite already runs one worker per
# core, so the runs it starts keep one device unless a test asks for more (tests/test_scale.py does).
os.environ.setdefault("PJRL_CPU_DEVICES", "1")


def pytest_addoption(parser):
    parser.addoption("--all-envs", action="store_true", default=os.environ.get("PJRL_ALL_ENVS") == "1",
                     help="run check_env on every env of every installed library (slow; also PJRL_ALL_ENVS=1)")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Keeps `xdist_group` working under `pytest -n --dist loadgroup` (the Makefile's): pytest-xdist 3.8
    names a test's group by appending `@group` to `item._nodeid`, which pytest 9.2 no longer reads (it
    keeps node ids in `item._id`), so every group was spread over the workers, and the module fixtures
    the groups keep on one worker were built on each (pytest-dev/pytest-xdist#1386). This copies the
    suffixed id across; it does nothing where xdist's id already took effect."""
    for item in items:
        suffixed = getattr(item, "_nodeid", None)
        if isinstance(suffixed, str) and "@" in suffixed and item.nodeid != suffixed and hasattr(item, "_id"):
            from _pytest.nodeid import NodeId
            item._id = NodeId.parse(suffixed)


@pytest.fixture(scope="session")
def all_envs(request) -> bool:
    """True when the run checks every env (`--all-envs` or PJRL_ALL_ENVS=1)."""
    return bool(request.config.getoption("--all-envs"))


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    """A finished 2-seed PPO CartPole run directory (tests/shared_run.py), trained once per session and
    shared by every test and `-n` worker: read it, never write into it (use `finished_run_copy`)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's directory, above each worker's own
    return shared_run.train_once(root)


@pytest.fixture
def finished_run_copy(finished_run, tmp_path) -> Path:
    """A copy of `finished_run` in this test's directory, to resume, damage or write into."""
    target = tmp_path / "run"
    shutil.copytree(finished_run, target)
    return target
