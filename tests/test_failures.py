"""Runs that fail loudly and lose nothing: every bad input, fault and misuse below ends in one line on
stderr naming the fix, the right exit code, no traceback, and a run directory with nothing lost or
overwritten.

Cases that fail before compiling call `cli.main` in this process (no start-up cost);
signals, concurrency and disk faults use real processes or injected errors.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pjrl_agents import cli

pytestmark = pytest.mark.xdist_group("failures")

TINY = ["--total-timesteps", "4096", "--eval-episodes", "2", "--no-tensorboard", "--quiet"]  # 8 updates of 512


def pjrl(capsys, *argv) -> tuple[int, str]:
    """Exit code and stderr of `pjrl ARGV` run in this process."""
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def one_line(err: str, *words: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])


def snapshot(run_dir: Path) -> dict[str, str]:
    """Every file under a run directory (its lock aside) with a hash of its bytes."""
    return {str(p.relative_to(run_dir)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.fixture
def run(finished_run) -> Path:
    """The shared finished run (tests/shared_run.py): 1 member x 2 seeds, 80 updates, checkpoints 78 and 80
    kept. Tests only read it."""
    return finished_run


@pytest.fixture
def copy(finished_run_copy) -> Path:
    """A copy of the finished run, to damage."""
    return finished_run_copy


# ---------------------------------------------------------------- bad numbers, before compiling


@pytest.mark.parametrize("argv, words", [
    (["--set", "lr=nan"], ["lr=nan", "finite"]),
    (["--set", "lr=-1"], ["lr=-1", "(0, inf)"]),
    (["--set", "gamma=1.5"], ["gamma=1.5", "[0, 1]"]),
    (["--sweep", "lr=1e-3,nan"], ["lr=nan"]),
    (["--sweep", "gamma=0.9,1.5"], ["gamma=1.5"]),
    (["--total-timesteps", "nan"], ["--total-timesteps", "whole number"]),
    (["--total-timesteps", "inf"], ["--total-timesteps", "whole number"]),
    (["--total-timesteps", "1e99"], ["total_timesteps", "too large"]),
    (["--set", "num_envs=inf"], ["num_envs", "whole number"]),
    (["--seed", "99999999999999999999"], ["seed", "4,294,967,295"]),
    (["--seed", "-1"], ["seed"]),
    (["--set", "hidden_sizes=0"], ["hidden_sizes", ">= 1"]),
    (["--env-option", "max_steps_in_episode=-5"], ["max_steps_in_episode", "at least 1"]),
    (["--eval-episodes", "-1"], ["eval_episodes"]),
    (["--algo", "dqn", "--set", "epsilon_finish=2"], ["epsilon_finish", "[0, 1]"]),
    (["--algo", "dqn", "--set", "learning_starts=nan"], ["learning_starts"]),
])
def test_bad_numbers_are_refused_before_anything_is_written(capsys, tmp_path, argv, words):
    out = tmp_path / "run"
    code, err = pjrl(capsys, "train", *argv, "--out", out)
    assert code == 2
    one_line(err, *words)
    assert not out.exists()


def test_a_config_file_with_bad_numbers_is_refused(capsys, tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"lr": "fast", "num_envs": 4}))
    code, err = pjrl(capsys, "train", "--config", config, "--out", tmp_path / "run")
    assert code == 2
    one_line(err, "lr", "number")


# ---------------------------------------------------------------- divergence


def test_divergence_stops_the_run_and_keeps_the_last_finite_checkpoint(capsys, tmp_path):
    out = tmp_path / "run"
    # finite for 4 updates, then lr jumps: a schedule cannot do that, so the run is resumed with an edit
    code, err = pjrl(capsys, "train", *TINY, "--checkpoint-every", "4", "--set", "lr=1e30",
                     "--set", "max_grad_norm=0", "--out", out)
    assert code == 1
    one_line(err, "diverged at update", "lower lr")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged"]["update"] >= 1
    assert summary["diverged"]["last_finite_checkpoint"] is None  # it diverged before update 4
    code, err = pjrl(capsys, "eval", out)
    assert code == 2
    one_line(err, "diverged at update")


def test_divergence_after_a_checkpoint_keeps_it_and_eval_refuses_nan_parameters(capsys, tmp_path, monkeypatch):
    """Parameters turned NaN at update 6 of 8 (checkpoints every 4): checkpoint 4 stays the latest."""
    import jax.numpy as jnp

    from pjrl_agents.algorithms import ppo
    real_update = ppo.PPO.update

    def poisoned(self, state):
        state, metrics = real_update(self, state)
        params = jax_tree_map(lambda p: jnp.where(state.update >= 6, jnp.nan, p), state.params)
        return state._replace(params=params), metrics

    monkeypatch.setattr(ppo.PPO, "update", poisoned)
    out = tmp_path / "run"
    code, err = pjrl(capsys, "train", *TINY, "--checkpoint-every", "4", "--out", out)
    assert code == 1
    one_line(err, "diverged at update 6", "parameters", "update 4, is kept")
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.isdigit()) == ["4"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["update"] == 6  # the update that diverged is logged, nothing after it
    monkeypatch.undo()
    code, err = pjrl(capsys, "eval", out, "--episodes", "1")
    assert code == 0, err  # checkpoint 4 is finite


def jax_tree_map(f, tree):
    import jax
    return jax.tree.map(f, tree)


# ---------------------------------------------------------------- eval and plot misuse


@pytest.mark.parametrize("argv, words", [
    (["--seed-index", "5", "--render", "ep.gif"], ["seed-index 5", "2 seed"]),
    (["--seed-index", "-3", "--render", "ep.gif"], ["seed-index -3"]),
    (["--member", "1", "--render", "ep.gif"], ["member 1"]),
    (["--member", "0"], ["--render", "every"]),
    (["--episodes", "0"], ["--episodes 0"]),
    (["--episodes", "-1"], ["--episodes -1"]),
])
def test_eval_refuses_what_the_run_does_not_hold(capsys, run, argv, words):
    before = snapshot(run)
    code, err = pjrl(capsys, "eval", run, *argv)
    assert code == 2
    one_line(err, *words)
    assert snapshot(run) == before


def test_eval_of_no_run(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "run.json").write_text(json.dumps({"env": "gymnax:CartPole-v1"}))
    for target, words in ((tmp_path / "missing", ["no run directory"]), (tmp_path / "empty", ["no run.json"]),
                          (tmp_path / "file", ["is a file"]), (tmp_path / "fresh", ["no checkpoint yet", "--resume"])):
        code, err = pjrl(capsys, "eval", target)
        assert code == 2, target
        one_line(err, *words)
    assert not (tmp_path / "missing").exists() and not (tmp_path / "empty" / "checkpoints").exists()


def test_plot_to_a_format_that_cannot_be_drawn(capsys, run, tmp_path):
    code, err = pjrl(capsys, "plot", run, "--out", tmp_path / "c.xyz")
    assert code == 2
    one_line(err, "c.xyz", ".png")


# ---------------------------------------------------------------- damaged files


def test_a_damaged_metrics_line_is_skipped_by_plot_and_dropped_by_resume(capsys, copy, tmp_path):
    metrics = copy / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    assert len(lines) == 2 * 80  # a row per seed and update
    metrics.write_text("\n".join(lines[:3] + ['{"member": 0, "seed": 0, "upd'] + lines[3:]) + "\n")
    code, err = pjrl(capsys, "plot", copy, "--out", tmp_path / "c.png")
    assert code == 0 and (tmp_path / "c.png").exists()
    # a run killed mid-write: its summary says it did not finish, so resume continues it
    (copy / "summary.json").unlink()
    code = cli.main(["train", "--resume", str(copy)])
    out = capsys.readouterr().out
    assert code == 0 and "dropped 1 damaged line" in out
    # every row the run wrote, in its order, and nothing else
    assert [json.loads(line) for line in metrics.read_text().splitlines()] == [json.loads(line) for line in lines]


def test_a_corrupt_latest_checkpoint_falls_back_to_the_one_before(capsys, copy):
    assert sorted(p.name for p in (copy / "checkpoints").iterdir() if p.name.isdigit()) == ["78", "80"]
    for f in (copy / "checkpoints" / "80").rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and "metadata" not in f.name:
            f.write_bytes(b"\0" * f.stat().st_size)
    code, err = pjrl(capsys, "eval", copy, "--episodes", "1")
    assert code == 0
    one_line(err, "checkpoint 80 cannot be read", "using checkpoint 78")
    (copy / "summary.json").unlink()
    code = cli.main(["train", "--resume", str(copy)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "resuming from checkpoint 78" in captured.out and "Traceback" not in captured.err


def test_an_edited_run_json_is_refused_on_resume(capsys, copy):
    spec = json.loads((copy / "run.json").read_text())
    spec["settings"]["num_envs"] = 8
    (copy / "run.json").write_text(json.dumps(spec))
    (copy / "summary.json").unlink()
    before = snapshot(copy)
    code, err = pjrl(capsys, "train", "--resume", copy)
    assert code == 2
    one_line(err, "edited", "settings.num_envs: 4 -> 8", "--config")
    assert snapshot(copy) == before


def test_resuming_a_finished_run_changes_nothing(capsys, copy):
    before = snapshot(copy)
    assert cli.main(["train", "--resume", str(copy)]) == 0
    assert "nothing to resume" in capsys.readouterr().out
    assert snapshot(copy) == before


def test_a_full_disk_stops_the_run_in_one_line_and_resume_finishes_it(capsys, tmp_path, monkeypatch):
    from pjrl_agents.run import sinks
    real_log, calls = sinks.FileSink.log, []

    def full(self, rows):
        calls.append(1)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.csv_path))
        real_log(self, rows)

    monkeypatch.setattr(sinks.FileSink, "log", full)
    out = tmp_path / "run"
    code, err = pjrl(capsys, "train", *TINY, "--checkpoint-every", "2", "--chunks", "8", "--out", out)
    assert code == 1
    one_line(err, "disk is full", "--resume")
    monkeypatch.undo()
    assert cli.main(["train", "--resume", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["num_updates"] == 8


# ---------------------------------------------------------------- run directories in use


def test_a_second_process_on_a_run_in_use_is_refused(capsys, copy):
    from pjrl_agents.run.checkpoint import RunLock
    (copy / "summary.json").unlink()
    lock = RunLock(copy)
    try:
        before = snapshot(copy)
        code, err = pjrl(capsys, "train", "--resume", copy)
        assert code == 2
        one_line(err, "in use by pjrl process", str(os.getpid()))
        assert snapshot(copy) == before
    finally:
        lock.release()


def test_train_into_a_directory_holding_a_run_is_refused(capsys, run):
    before = snapshot(run)
    code, err = pjrl(capsys, "train", *TINY, "--out", run)
    assert code == 2
    one_line(err, "already holds a run", "--resume")
    assert snapshot(run) == before


def test_a_run_that_never_trained_can_be_started_again_or_resumed(capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"env": "gymnax:CartPole-v1", "settings": {"total_timesteps": 4096},
                                              "eval_episodes": 0, "tensorboard": False}))
    assert cli.main(["train", "--resume", str(out), "--quiet"]) == 0  # stopped in compile: trains from 0
    assert json.loads((out / "summary.json").read_text())["num_updates"] == 8


# ---------------------------------------------------------------- signals


TRAIN = [sys.executable, "-m", "pjrl_agents.cli", "train"]


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_while_compiling_leaves_a_run_that_resumes(tmp_path, sig, code):
    out = tmp_path / "run"
    env = {**os.environ, "PJRL_CACHE_DIR": "off"}
    proc = subprocess.Popen(TRAIN + TINY + ["--out", str(out)], stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not (out / "run.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # inside the compile
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == code, err
    one_line(err, "--resume")
    res = subprocess.run(TRAIN + ["--resume", str(out), "--quiet"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "summary.json").read_text())["status"] == "finished"


# ---------------------------------------------------------------- what is reported


def test_checkpoints_land_on_multiples_of_checkpoint_every(tmp_path):
    from pjrl_agents.run import runner
    from pjrl_agents.run.spec import RunSpec
    out = tmp_path / "run"
    seen = []
    from pjrl_agents.run import checkpoint
    real = checkpoint.Checkpointer.save

    def save(self, update, state):
        seen.append(update)
        real(self, update, state)

    checkpoint.Checkpointer.save = save
    try:
        runner.train(RunSpec(settings={"total_timesteps": 512 * 23}, chunks=4, checkpoint_every=5, eval_episodes=0,
                             tensorboard=False), out=out, progress=None)
    finally:
        checkpoint.Checkpointer.save = real
    assert seen == [5, 10, 15, 20, 23]


@pytest.mark.slow
def test_nothing_is_reported_before_it_exists_and_rounding_is_said(tmp_path):
    from pjrl_agents.run import runner
    from pjrl_agents.run.spec import RunSpec
    lines = []
    runner.train(RunSpec(settings={"total_timesteps": 5000, "num_steps": 2}, eval_episodes=0, tensorboard=False),
                 out=tmp_path / "r", progress=lines.append)
    assert not any("updates of" in line for line in lines)  # 625 updates of 8 steps: nothing rounded
    first = json.loads((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["episodes"] == 0 and first["episode_return"] is None  # CartPole lasts more than 2 steps
    shown = []
    from pjrl_agents.run.sinks import Console
    Console(100, shown.append).progress(8, 8, 1.0, float("nan"), done=True)
    assert "return       n/a |" in shown[0]
    runner.train(RunSpec(settings={"total_timesteps": 5000}, eval_episodes=0, tensorboard=False),
                 out=tmp_path / "r2", progress=lines.append)
    assert lines.count("total_timesteps 5,000 is 9 updates of 512 env steps: 4,608 steps per run") == 1

