"""The agent contract (pjrl_agents.algorithms.contract).

An algorithm from outside pjrl whose learned state is more than `params` (examples/custom_algorithm: A2C
with a critic and two optimisers of its own, written from docs/writing-an-algorithm.md) trains by
`--algo`, sweeps, resumes exactly, runs under population-based training with all of its learned state
copied, and evaluates. An algorithm that breaks the contract is refused in one line naming what is
missing, before anything compiles, and leaves no checkpoint behind.
"""
import collections
import dataclasses
import importlib
import json
import shutil
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pjrl_agents import algorithms, cli, load_policy
from pjrl_agents.algorithms import ContractError, contract
from pjrl_agents.run import experiment, runner
from pjrl_agents.run.spec import RunSpec
from pjrl_agents.search import pbt

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "examples" / "custom_algorithm"
SETTINGS = {"total_timesteps": 4096, "num_envs": 4, "num_steps": 16}  # 64 updates
BUDGET = [arg for k, v in SETTINGS.items() for arg in ("--set", f"{k}={v}")]


@pytest.fixture(scope="module")
def a2c():
    """The package's module, its ALGORITHM registered as `a2c` for this module's tests."""
    sys.path.insert(0, str(PACKAGE))
    try:
        module = importlib.import_module("pjrl_a2c")
        algorithms.register(module.ALGORITHM)
        yield module
    finally:
        for name in [n for n in contract._registered if n.startswith("a2c")]:
            contract._registered.pop(name)
        sys.path.remove(str(PACKAGE))


def _variant(module, name: str, agent_class) -> str:
    algorithms.register(dataclasses.replace(module.ALGORITHM, name=name, make_agent=agent_class))
    return name


def test_trains_sweeps_and_evaluates_by_name(a2c, tmp_path):
    out = tmp_path / "run"
    assert cli.main(["train", "--algo", "a2c", "--num-seeds", "2", "--sweep", "critic_lr=1e-3,3e-3", *BUDGET,
                     "--eval-episodes", "4", "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["algo"] == "a2c" and summary["num_updates"] == 64
    assert [m["settings"] for m in summary["members"]] == [{"critic_lr": 1e-3}, {"critic_lr": 3e-3}]
    assert len(summary["final_greedy_return_per_seed"]) == 2
    assert cli.main(["eval", str(out), "--episodes", "4"]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert [m["settings"] for m in report["members"]] == [{"critic_lr": 1e-3}, {"critic_lr": 3e-3}]
    assert all(np.isfinite(m["greedy"]["return_mean"]) for m in report["members"])
    policy = load_policy(out, seed=1, member=1)
    action = policy(jnp.zeros(4))
    assert action.shape == () and 0 <= int(action) < 2


def test_resumes_to_the_same_numbers(a2c, tmp_path):
    spec = RunSpec(algo="a2c", num_seeds=2, checkpoint_every=16, settings=SETTINGS, tensorboard=False,
                   eval_episodes=0)
    whole = tmp_path / "whole"
    runner.train(spec, whole, progress=None)
    cut = tmp_path / "cut"
    shutil.copytree(whole, cut, ignore=shutil.ignore_patterns(".lock"))
    shutil.rmtree(cut / "checkpoints" / "64")  # as if the run had been killed after its checkpoint at 48
    (cut / "summary.json").unlink()
    assert runner.resume(cut, progress=None)["resumed_from_update"] == 48

    def rows(run):
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return sorted((json.loads(line) for line in lines), key=lambda r: (r["member"], r["seed"], r["update"]))

    assert rows(cut) == rows(whole)
    (_, a), (_, b) = experiment.load(whole), experiment.load(cut)
    for name in a2c.A2C.learned:
        jax.tree.map(np.testing.assert_array_equal, getattr(a, name), getattr(b, name))


def test_population_based_training_copies_every_learned_field(a2c, tmp_path):
    out = tmp_path / "pbt"
    assert cli.main(["tune", "--algo", "a2c", "--num-seeds", "4", "--pbt-every", "16", "--perturb", "lr,critic_lr",
                     *BUDGET, "--eval-episodes", "0", "--out", str(out), "--quiet"]) == 0
    lineage = [json.loads(line) for line in (out / "pbt.jsonl").read_text().splitlines()]
    assert any(row["parent"] != row["seed"] for row in lineage)

    ex = experiment.build(RunSpec(algo="a2c", num_seeds=4, settings=SETTINGS))
    state = ex.init_fn(*ex.inputs())
    new, parents, _ = pbt.exploit_explore(state, jnp.array([1.0, 2.0, 3.0, 4.0]), jax.random.PRNGKey(0), 0.5,
                                          ("lr",), (2.0,), learned=ex.agent.learned)
    parents = np.asarray(parents)
    assert list(parents[:2]) != [0, 1] and list(parents[2:]) == [2, 3]
    for name in ("params", "critic_params", "actor_opt", "critic_opt"):
        for child, parent in enumerate(parents):
            jax.tree.map(lambda x, y, c=child, p=parent: np.testing.assert_array_equal(x[c], y[p]),
                         getattr(new, name), getattr(state, name))
    np.testing.assert_array_equal(new.key, state.key)  # its own randomness, envs and counters
    jax.tree.map(np.testing.assert_array_equal, new.env_state, state.env_state)


def _refused(algo: str, tmp_path: Path, capsys, *words: str) -> None:
    """`pjrl train --algo algo` exits 2 with one line naming `words`, before compiling; no checkpoint is left."""
    out = tmp_path / algo
    assert cli.main(["train", "--algo", algo, *BUDGET, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert all(w in err for w in words), err
    assert not (out / "checkpoints").exists() and not (out / "metrics.jsonl").exists()


def test_a_state_without_params_is_refused_before_training(a2c, tmp_path, capsys):
    Weights = collections.namedtuple("Weights", ["weights" if f == "params" else f for f in a2c.A2CState._fields])

    class Renamed(a2c.A2C):
        learned = ("weights", "critic_params", "actor_opt", "critic_opt")

        def init(self, key, config=None):
            return Weights(*super().init(key, config))

    _refused(_variant(a2c, "a2c-renamed", Renamed), tmp_path, capsys, "no field params", "Weights")
    with pytest.raises(ContractError, match="no field params"):
        runner.train(RunSpec(algo="a2c-renamed", settings=SETTINGS), tmp_path / "api", progress=None)


def test_an_env_without_episode_statistics_is_refused(a2c, tmp_path, capsys):
    class Unwrapped(a2c.A2C):
        def __init__(self, config, env, axis_name=None, hints=algorithms.Hints()):
            super().__init__(config, env, axis_name, hints)
            self.env = env

    _refused(_variant(a2c, "a2c-unwrapped", Unwrapped), tmp_path, capsys, "EpisodeStatistics")


def test_metrics_without_the_episode_return_are_refused(a2c, tmp_path, capsys):
    class Quiet(a2c.A2C):
        def update(self, state):
            state, metrics = super().update(state)
            return state, {k: v for k, v in metrics.items() if k != "episode_return"}

    _refused(_variant(a2c, "a2c-quiet", Quiet), tmp_path, capsys, "lack episode_return")


def test_a_learned_field_the_state_lacks_is_refused(a2c, tmp_path, capsys):
    class Forgetful(a2c.A2C):
        learned = ("params", "critic_params", "baseline")

    _refused(_variant(a2c, "a2c-forgetful", Forgetful), tmp_path, capsys, "no field baseline")


def test_an_agent_that_is_not_an_agent_is_refused(a2c, tmp_path, capsys):
    class Loose:
        def __init__(self, config, env, axis_name=None, hints=None):
            pass

    _refused(_variant(a2c, "a2c-loose", Loose), tmp_path, capsys, "not a pjrl_agents.algorithms.Agent")
