"""SAC, TD3 and PQN through the run machinery: trained by name with a sweep, evaluated, loaded as a policy,
resumed to the same numbers and tuned by population-based training with every learned field copied."""
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pjrl_agents import cli, load_policy
from pjrl_agents.run import experiment, runner
from pjrl_agents.run.spec import RunSpec
from pjrl_agents.search import pbt

RUNS = {  # env, a small budget, a traced setting to sweep and perturb, the action's shape
    "sac": ("gymnax:Pendulum-v1", dict(total_timesteps=512, num_envs=2, num_steps=8, learning_starts=64,
                                       buffer_size=512, batch_size=32, hidden_sizes=(16,)), "critic_lr", (1,)),
    "td3": ("gymnax:Pendulum-v1", dict(total_timesteps=512, num_envs=2, num_steps=8, learning_starts=64,
                                       buffer_size=512, batch_size=32, hidden_sizes=(16,), critic_hidden_sizes=(16,)),
            "critic_lr", (1,)),
    "pqn": ("gymnax:CartPole-v1", dict(total_timesteps=1024, num_envs=4, num_steps=16, num_minibatches=2,
                                       hidden_sizes=(16,)), "lr", ()),
}


def _flags(settings: dict) -> list[str]:
    return [a for k, v in settings.items()
            for a in ("--set", f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}")]


@pytest.mark.parametrize("algo", ["sac", pytest.param("td3", marks=pytest.mark.slow),
                                  pytest.param("pqn", marks=pytest.mark.slow)])
def test_trains_by_name_sweeps_evaluates_and_loads(algo, tmp_path):
    env, settings, swept, shape = RUNS[algo]
    out = tmp_path / "run"
    assert cli.main(["train", "--algo", algo, "--env", env, "--num-seeds", "2", "--sweep", f"{swept}=1e-3,3e-3",
                     *_flags(settings), "--eval-episodes", "2", "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["algo"] == algo and summary["status"] == "finished"
    assert [m["settings"] for m in summary["members"]] == [{swept: 1e-3}, {swept: 3e-3}]
    assert cli.main(["eval", str(out), "--episodes", "2"]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert all(np.isfinite(m["greedy"]["return_mean"]) for m in report["members"])
    policy = load_policy(out, seed=1, member=1)
    obs = {"gymnax:Pendulum-v1": jnp.zeros(3), "gymnax:CartPole-v1": jnp.zeros(4)}[env]
    action = policy(obs)
    assert action.shape == shape
    if algo in ("sac", "td3"):
        assert -2.0 <= float(action.reshape(-1)[0]) <= 2.0  # within Pendulum's torque bounds


@pytest.mark.slow
@pytest.mark.parametrize("algo", sorted(RUNS))
def test_resumes_to_the_same_numbers(algo, tmp_path):
    env, settings, _, _ = RUNS[algo]
    spec = RunSpec(env=env, algo=algo, num_seeds=2, checkpoint_every=8, settings=settings, tensorboard=False,
                   eval_episodes=0)
    whole = tmp_path / "whole"
    result = runner.train(spec, whole, progress=None)
    updates = result["num_updates"]
    cut = tmp_path / "cut"
    shutil.copytree(whole, cut, ignore=shutil.ignore_patterns(".lock"))
    shutil.rmtree(cut / "checkpoints" / str(updates))  # as if killed after the checkpoint before the last
    (cut / "summary.json").unlink()
    assert runner.resume(cut, progress=None)["resumed_from_update"] == updates - 8

    def rows(run):
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return sorted((json.loads(line) for line in lines), key=lambda r: (r["member"], r["seed"], r["update"]))

    assert rows(cut) == rows(whole)
    (ex, a), (_, b) = experiment.load(whole), experiment.load(cut)
    for name in ex.agent.learned:
        jax.tree.map(np.testing.assert_array_equal, getattr(a, name), getattr(b, name))


@pytest.mark.parametrize("algo", sorted(RUNS))
def test_population_based_training_copies_every_learned_field(algo):
    env, settings, perturbed, _ = RUNS[algo]
    ex = experiment.build(RunSpec(env=env, algo=algo, num_seeds=4, settings=settings))
    state = ex.init_fn(*ex.inputs())
    new, parents, _ = pbt.exploit_explore(state, jnp.array([1.0, 2.0, 3.0, 4.0]), jax.random.PRNGKey(0), 0.5,
                                          (perturbed,), (2.0,), learned=ex.agent.learned)
    parents = np.asarray(parents)
    assert list(parents[:2]) != [0, 1] and list(parents[2:]) == [2, 3]
    for name in ex.agent.learned:
        for child, parent in enumerate(parents):
            jax.tree.map(lambda x, y, c=child, p=parent: np.testing.assert_array_equal(x[c], y[p]),
                         getattr(new, name), getattr(state, name))
    np.testing.assert_array_equal(new.key, state.key)  # its own randomness, envs and counters
