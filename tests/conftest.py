"""`--all-envs` (or `PJRL_ALL_ENVS=1`): check every env of every installed library, not a representative few."""
import os

import pytest

# `pjrl train` makes each CPU core a device (distributed.use_cpu_cores); the suite already runs one worker per
# core, so the runs it starts keep one device unless a test asks for more (tests/test_scale.py does).
os.environ.setdefault("PJRL_CPU_DEVICES", "1")


def pytest_addoption(parser):
    parser.addoption("--all-envs", action="store_true", default=os.environ.get("PJRL_ALL_ENVS") == "1",
                     help="run check_env on every env of every installed library (slow; also PJRL_ALL_ENVS=1)")


@pytest.fixture(scope="session")
def all_envs(request) -> bool:
    """True when the run checks every env (`--all-envs` or PJRL_ALL_ENVS=1)."""
    return bool(request.config.getoption("--all-envs"))
