"""The finished run many tests read: a small PPO CartPole run, trained once per test session.

`tests/conftest.py` serves it as the `finished_run` fixture (and `finished_run_copy`, a copy a test
may change); tests/test_runs.py repeats `ARGV` to kill and resume the same run.
"""
from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path

TRAIN = [sys.executable, "-m", "pjrl_agents.cli", "train", "--quiet"]

MAX_EPISODE_STEPS = 50

# The run's `pjrl train` options (TensorBoard and the final evaluation left at their defaults): CartPole,
# 80 updates of 512 steps for each of two seeds, episodes cut at 50 steps by an env option the run keeps,
# a checkpoint every 2 updates (the last two, 78 and 80, are kept) and an evaluation every 20.
ARGV = ["--total-timesteps", "40960", "--num-seeds", "2", "--env-option", f"max_steps_in_episode={MAX_EPISODE_STEPS}",
        "--checkpoint-every", "2", "--eval-every", "20"]


def train_once(root: Path) -> Path:
    """`root/finished_run`, trained by the first caller; the others wait for it (a file lock), so the
    workers of one `pytest -n` session share one run. Raises if training failed, in every caller."""
    out, failed = root / "finished_run", root / "finished_run.failed"
    with open(root / "finished_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "summary.json").exists() and not failed.exists():
            res = subprocess.run(TRAIN + ARGV + ["--out", str(out)], capture_output=True, text=True, timeout=600)
            if res.returncode != 0:
                failed.write_text(res.stderr[-3000:])
    if failed.exists():
        raise RuntimeError(f"training the shared run failed:\n{failed.read_text()}")
    return out
