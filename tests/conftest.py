"""`--all-envs` (or `PJRL_ALL_ENVS=1`): check every env of every installed library, not a representative few."""
import os

import pytest


def pytest_addoption(parser):
    parser.addoption("--all-envs", action="store_true", default=os.environ.get("PJRL_ALL_ENVS") == "1",
                     help="run check_env on every env of every installed library (slow; also PJRL_ALL_ENVS=1)")


@pytest.fixture(scope="session")
def all_envs(request) -> bool:
    """True when the run checks every env (`--all-envs` or PJRL_ALL_ENVS=1)."""
    return bool(request.config.getoption("--all-envs"))
