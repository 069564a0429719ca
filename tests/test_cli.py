"""`pjrl train` end to end: summary.json, sweeps from the command line, early errors."""
import json
import subprocess
import sys

from pjrl_agents import cli


def test_train_writes_summary_with_sweep(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["train", "--env", "gymnax:CartPole-v1", "--total-timesteps", "20480", "--num-seeds", "2",
                     "--out", str(out), "--sweep", "lr=1e-3,2.5e-4", "--set", "num_steps=64"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    for key in ("env", "algo", "total_timesteps", "num_seeds", "final_return_mean", "final_return_per_seed",
                "compile_s", "run_s", "steps_per_s", "config"):
        assert key in summary, key
    assert summary["num_seeds"] == 2 and len(summary["final_return_per_seed"]) == 2
    assert summary["config"]["num_steps"] == 64
    assert [m["settings"] for m in summary["members"]] == [{"lr": 1e-3}, {"lr": 2.5e-4}]
    assert summary["total_timesteps"] == 20480
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 2 * (20480 // (4 * 64))
    assert "step" in capsys.readouterr().out


def test_bad_config_fails_before_compiling():
    res = subprocess.run([sys.executable, "-m", "pjrl_agents.cli", "train", "--set", "num_minibatches=3"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "num_minibatches" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_sweeping_a_shape_is_refused(tmp_path):
    res = subprocess.run([sys.executable, "-m", "pjrl_agents.cli", "train", "--sweep", "num_envs=4,8",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "cannot be swept" in res.stderr
