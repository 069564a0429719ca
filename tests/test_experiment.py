"""The experiment layer: flags generated from the configs, env options, config files that repeat a run,
algorithms found by entry point, load_policy, and a package named `adapters` beside pjrl."""
import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

import pjrl_envs
from pjrl_agents import cli, load_policy
from pjrl_agents.algorithms import dqn, ppo
from pjrl_agents.run import evaluate, experiment
from pjrl_envs import wrappers

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.xdist_group("experiment")


def _subprocess_env(**extra) -> dict:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in [extra.get("PYTHONPATH", ""), str(ROOT)] if p)
    return env


@pytest.fixture
def limited_run(finished_run):
    """The shared finished run (tests/shared_run.py): CartPole with its episodes cut at 50 steps, two seeds."""
    return finished_run


def test_help_lists_every_setting_of_every_algorithm_with_its_default(capsys):
    assert cli.main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for config in (ppo.PPOConfig(), dqn.default_config("gymnax:CartPole-v1")):
        for f in dataclasses.fields(config):
            flag = "--" + f.name.replace("_", "-")
            assert flag in text, flag
    assert "--lr FLOAT Adam learning rate (initial, when annealed) (default: 0.00025)" in text
    assert "--buffer-size" in text and "replay capacity in transitions, over all envs (default: 10000)" in text
    assert "--env-option NAME=VALUE" in text and "split(PRNGKey(seed), num_seeds)" in text


def test_help_shows_the_envs_own_defaults(capsys):
    assert cli.main(["train", "--env", "gymnax:Pendulum-v1", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(defaults for gymnax:Pendulum-v1)" in text and "(default: 0.001)" in text  # Pendulum's lr


def test_algos_lists_ppo_and_dqn(capsys):
    assert cli.main(["algos"]) == 0
    names = capsys.readouterr().out.split()
    assert {"ppo", "dqn"} <= set(names)


@pytest.mark.parametrize("argv, words", [
    (["--lr", "abc"], ["--lr", "invalid"]),
    (["--lrr", "3"], ["unrecognized arguments: --lrr"]),
    (["--set", "lrr=3"], ["--set lrr", "no such setting"]),
    (["--set", "hidden_sizes=a,b"], ["hidden_sizes", "whole numbers"]),
    (["--env-option", "max_steps=5"], ["no option max_steps", "max_steps_in_episode"]),
    (["--algo", "ppoo"], ["unknown algorithm 'ppoo'", "did you mean ppo"]),
    (["--config", "/nonexistent.yaml"], ["--config /nonexistent.yaml"]),
    (["--sweep", "num_envs=4,8"], ["--sweep num_envs", "cannot be swept"]),
])
def test_bad_flags_are_one_line_before_compiling(argv, words, capsys, tmp_path):
    code = cli.main(["train", "--out", str(tmp_path / "run"), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("pjrl: error:"), err
    assert all(w in err for w in words), err
    assert not (tmp_path / "run").exists()


def test_integers_may_be_written_in_scientific_notation():
    spec, _ = cli.parse_train(["--total-timesteps", "5e6", "--set", "num_envs=1e1", "--hidden-sizes", "32,16"])
    assert spec.settings["total_timesteps"] == 5_000_000 and spec.settings["num_envs"] == 10
    assert spec.settings["hidden_sizes"] == (32, 16)
    with pytest.raises(SystemExit):
        cli.parse_train(["--total-timesteps", "5.5"])


def test_env_option_reaches_the_adapter(limited_run):
    ex, state = experiment.load(limited_run)
    assert ex.env.max_episode_steps == 50 and ex.spec.env_options == {"max_steps_in_episode": 50}
    row = ex.row(state, seed=1)
    out = evaluate.episodes(ex.agent.env, lambda obs, mask, key: ex.agent.act(row.params, obs, mask),
                            jax.random.PRNGKey(0), 16)
    assert out["lengths"].max() <= 50 and out["returns"].max() <= 50
    rows = [json.loads(line) for line in (limited_run / "metrics.jsonl").read_text().splitlines()]
    assert max(r["episode_length"] for r in rows) <= 50


@pytest.mark.slow
def test_env_option_for_pgx_opponent(tmp_path):
    out = tmp_path / "ttt"
    assert cli.main(["train", "--env", "pgx:tic_tac_toe", "--env-option", "opponent=random", "--total-timesteps",
                     "1024", "--num-envs", "8", "--set", "num_steps=16", "--quiet", "--out", str(out)]) == 0
    assert json.loads((out / "run.json").read_text())["env_options"] == {"opponent": "random"}


@pytest.mark.slow
def test_run_json_as_config_repeats_the_run_exactly(limited_run, tmp_path):
    again = tmp_path / "again"
    assert cli.main(["train", "--config", str(limited_run / "run.json"), "--out", str(again), "--quiet"]) == 0
    first = json.loads((limited_run / "summary.json").read_text())
    second = json.loads((again / "summary.json").read_text())
    assert second["final_return_per_seed"] == first["final_return_per_seed"]
    assert json.loads((again / "run.json").read_text()) == json.loads((limited_run / "run.json").read_text())


def test_yaml_config_with_flat_settings_and_flags_over_it(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("env: gymnax:CartPole-v1\nnum_seeds: 3\nlr: 0.001\nhidden_sizes: [32, 32]\n"
                   "env_options:\n  max_steps_in_episode: 20\n")
    spec, _ = cli.parse_train(["--config", str(cfg), "--lr", "0.003", "--env-option", "gravity=10.0"])
    assert spec.num_seeds == 3 and spec.settings["lr"] == 0.003 and spec.settings["hidden_sizes"] == [32, 32]
    assert spec.env_options == {"max_steps_in_episode": 20, "gravity": 10.0}
    cfg.write_text("lrr: 1\n")
    with pytest.raises(experiment.ConfigError, match="no setting lrr"):
        cli.parse_train(["--config", str(cfg)])


def test_load_policy_acts_on_one_observation_and_on_a_batch(limited_run):
    policy = load_policy(limited_run, seed=1)
    env = pjrl_envs.make("gymnax:CartPole-v1", num_envs=5, max_steps_in_episode=50)
    _, ts = env.reset(jax.random.PRNGKey(3))
    batch = np.asarray(policy(ts.obs))
    assert batch.shape == (5,) and set(batch.tolist()) <= {0, 1}
    one = policy(ts.obs[2])
    assert np.shape(one) == () and int(one) == batch[2]
    sampled = policy(ts.obs, key=jax.random.PRNGKey(0))
    assert np.shape(sampled) == (5,)


def test_load_policy_greedy_returns_equal_evals(limited_run):
    """The same episodes through pjrl eval's rollout: the agent's greedy actions and load_policy's agree."""
    ex, state = experiment.load(limited_run)
    row = ex.row(state, seed=0)
    policy = load_policy(limited_run, seed=0)
    key = evaluate.eval_keys(11, 1)
    by_eval = evaluate.evaluate_runs(ex.agent, jax.tree.map(lambda x: x[None], row.params),
                                     jax.tree.map(lambda x: x[None], row.env_state), key, 12, ("greedy",))
    raw = wrappers.EpisodeStatistics(pjrl_envs.make("gymnax:CartPole-v1", num_envs=ex.env.num_envs,
                                                   max_steps_in_episode=50))
    by_policy = evaluate.episodes(raw, lambda obs, mask, k: policy(obs, mask=mask), key[0], 100)
    assert by_policy["returns"].size == 100
    # evaluate_runs keeps each env's first episodes, episodes() all of them in the order they ended
    np.testing.assert_allclose(np.sort(by_eval["greedy"]["returns"][0]), np.sort(by_policy["returns"][:12]))


def test_evaluation_keys_are_apart_from_training_keys():
    """No evaluation env starts from a key training uses: not the seeds' keys, nor what the agent splits
    from them (PPO: 3 ways, DQN: 3 or 4), for roots 0..49 and 8 seeds."""
    def split_keys(k):
        return [k] + [s for n in (2, 3, 4) for s in jax.random.split(k, n)]

    train, evals = set(), set()
    for root in range(50):
        for k in jax.random.split(jax.random.PRNGKey(root), 8):
            train.update(tuple(np.asarray(s).tolist()) for s in split_keys(k))
        for k in evaluate.eval_keys(root, 8):
            evals.update(tuple(np.asarray(s).tolist()) for s in split_keys(k))
    # split(k, n)[i] does not depend on n: each key and its first 4 splits, 5 distinct keys
    assert len(evals) == len(train) == 50 * 8 * 5 and not train & evals
    # and the first observations differ: seed 0's training envs vs its evaluation envs
    env = pjrl_envs.make("gymnax:CartPole-v1", num_envs=4)
    config = ppo.default_config("gymnax:CartPole-v1", num_envs=4)
    trained = ppo.PPO(config, env).init(jax.random.split(jax.random.PRNGKey(0), 1)[0])
    _, ts = env.reset(jax.random.split(evaluate.eval_keys(0, 1)[0])[1])
    assert not np.isclose(np.asarray(trained.obs), np.asarray(ts.obs)).any()


@pytest.mark.slow
def test_load_policy_applies_the_runs_normaliser(tmp_path):
    out = tmp_path / "norm"
    assert cli.main(["train", "--total-timesteps", "2048", "--set", "num_steps=64", "--normalize-obs", "--quiet",
                     "--out", str(out)]) == 0
    ex, state = experiment.load(out)
    row = ex.row(state)
    moments = row.env_state.moments  # NormalizeObservation sits outermost in PPO's stack
    obs = np.array([0.1, -0.5, 0.02, 0.3], np.float32)
    by_hand = np.clip((obs - moments.mean) / np.sqrt(moments.var + 1e-8), -10, 10)
    expected = ex.agent.act(row.params, by_hand[None], np.ones((1, 2), bool))[0]
    assert not np.allclose(by_hand, obs)
    assert int(load_policy(out)(obs)) == int(expected)


ALGO_PACKAGE = '''
import dataclasses
from pjrl_agents.algorithms import ppo
ALGORITHM = dataclasses.replace(ppo.ALGORITHM, name="renamed_ppo")
'''


@pytest.mark.slow
def test_an_algorithm_from_another_package_trains_by_name(tmp_path):
    site = tmp_path / "site"
    (site / "renamed_algo").mkdir(parents=True)
    (site / "renamed_algo" / "__init__.py").write_text(textwrap.dedent(ALGO_PACKAGE))
    info = site / "renamed_algo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: renamed-algo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[pjrl.algorithms]\nrenamed_ppo = renamed_algo:ALGORITHM\n")
    env = _subprocess_env(PYTHONPATH=str(site), PJRL_CACHE_DIR="off")
    cmd = [sys.executable, "-m", "pjrl_agents.cli"]
    listed = subprocess.run(cmd + ["algos"], env=env, capture_output=True, text=True, timeout=120)
    assert "renamed_ppo" in listed.stdout.split(), listed.stderr
    out = tmp_path / "run"
    res = subprocess.run(cmd + ["train", "--algo", "renamed_ppo", "--total-timesteps", "2048", "--quiet",
                                "--out", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["algo"] == "renamed_ppo" and summary["total_timesteps"] == 2048


STANDIN = '''
import adapters
assert adapters.NAME == "the other adapters", adapters.__file__
import pjrl_envs
env = pjrl_envs.make("gymnax:CartPole-v1", num_envs=2)
import pjrl_adapters.gymnax
print("both", env.num_envs, type(env.env).__module__)
'''


def test_a_package_named_adapters_installs_beside_pjrl(tmp_path):
    (tmp_path / "adapters").mkdir()
    (tmp_path / "adapters" / "__init__.py").write_text('NAME = "the other adapters"\n')
    res = subprocess.run([sys.executable, "-c", STANDIN], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["both", "2", "pjrl_adapters.gymnax"]
