"""The worked example of docs/writing-an-adapter.md: registered in-process, its errors, and trained by name.

Its conformance (`check_env`) is in tests/test_conformance.py.
"""
import importlib
import json
import re
import sys
from pathlib import Path

import jax.numpy as jnp
import pytest
import tomllib

import pjrl_envs
from pjrl_agents import cli
from pjrl_envs import registry
from pjrl_envs.testing import EnvCheckError, check_env

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "examples" / "custom_adapter"
GUIDE = ROOT / "docs" / "writing-an-adapter.md"


def _guide_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", GUIDE.read_text(), re.S)


@pytest.fixture(scope="module")
def corridor():
    """The package's module, with its ADAPTER registered as `corridor` for this module's tests."""
    sys.path.insert(0, str(PACKAGE))
    try:
        module = importlib.import_module("pjrl_corridor")
        pjrl_envs.register("corridor", module.ADAPTER)
        yield module
    finally:
        registry._registered.pop("corridor", None)
        sys.path.remove(str(PACKAGE))


def test_entry_point_names_the_adapter(corridor):
    meta = tomllib.loads((PACKAGE / "pyproject.toml").read_text())
    target = meta["project"]["entry-points"][registry.ENTRY_POINT_GROUP]["corridor"]
    module, _, attr = target.partition(":")
    assert getattr(importlib.import_module(module), attr) is corridor.ADAPTER
    assert "corridor:Corridor-v0" in pjrl_envs.list_envs("corridor")


def test_check_env_reports_each_problem(corridor):
    class BrokenCorridor(corridor.Corridor):
        def _timestep(self, pos, reward, terminated):
            ts = super()._timestep(pos, reward, terminated)
            return ts._replace(reward=jnp.asarray(reward, jnp.int32), obs=ts.obs * pos)

    with pytest.raises(EnvCheckError) as err:
        check_env(BrokenCorridor(length=12, slip=0.1))
    # exactly the output the guide shows
    shown = [b for b in _guide_blocks("text") if "EnvCheckError" in b][0].strip().splitlines()
    assert shown[0] == f"pjrl_envs.testing.EnvCheckError: {str(err.value).splitlines()[0]}"
    assert [f"  - {p}" for p in err.value.problems] == shown[1:]

def test_guide_shows_the_package_code():
    code = _guide_blocks("python")[0]
    assert code in (PACKAGE / "pjrl_corridor" / "__init__.py").read_text()


def test_bad_option_names_the_options(corridor):
    with pytest.raises(pjrl_envs.OptionError,
                       match="^corridor:Corridor-v0 has no option width; allowed: length, slip, max_steps$"):
        pjrl_envs.make("corridor:Corridor-v0", width=3)
    with pytest.raises(pjrl_envs.UnknownEnvError, match="Did you mean: corridor:Corridor-v0"):
        pjrl_envs.make("corridor:Coridor-v0")


@pytest.mark.slow
def test_pjrl_train_learns_the_corridor_by_name(corridor, tmp_path):
    # A uniformly random (legal) policy reaches the end within 40 steps in ~15% of episodes:
    # mean return 0.15 (measured over 2000 steps x 256 envs). The optimal policy gets 1.
    out = tmp_path / "run"
    code = cli.main(["train", "--env", "corridor:Corridor-v0", "--total-timesteps", "20480", "--num-envs", "16",
                     "--set", "num_steps=32", "--set", "lr=3e-3", "--num-seeds", "2", "--out", str(out),
                     "--quiet", "--no-tensorboard"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env"] == "corridor:Corridor-v0"
    assert min(summary["final_return_per_seed"]) >= 0.9, summary["final_return_per_seed"]
