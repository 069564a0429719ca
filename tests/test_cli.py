"""`pjrl train` end to end: summary.json, sweeps from the command line; `python -m pjrl_agents.cli`'s errors.

The errors themselves are checked in-process (tests/test_experiment.py, tests/test_failures.py); the one
subprocess here checks what a shell sees: one line on stderr and exit status 2.
"""
import json
import subprocess
import sys

import pytest

from pjrl_agents import cli


@pytest.mark.slow
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


def test_a_bad_config_is_one_line_and_exit_status_2_from_the_module():
    res = subprocess.run([sys.executable, "-m", "pjrl_agents.cli", "train", "--set", "num_minibatches=3"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "num_minibatches" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1

