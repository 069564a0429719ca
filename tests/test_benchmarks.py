"""benchmarks/gpu.sh on a machine without a GPU: its refusal, and every step at toy sizes (--smoke)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PY=sys.executable, REF="/nonexistent/bench_purejaxrl.py")


def test_gpu_script_refuses_a_machine_without_a_gpu():
    res = subprocess.run(["bash", "benchmarks/gpu.sh"], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip() == "gpu.sh: JAX sees no GPU here; run it on a GPU machine, or try it with --smoke"


@pytest.mark.slow
def test_gpu_script_runs_every_step_at_toy_sizes():
    res = subprocess.run(["bash", "benchmarks/gpu.sh", "--smoke"], cwd=ROOT, env=ENV, capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout
    for line in ("seeds=  1 steps/seed=2,048: pjrl (one device)", "seeds=  2 steps/seed=2,048: pjrl (one device)",
                 "pjrl train --num-seeds 1: compile cold", "pjrl train --num-seeds 2: compile cold",
                 "== 2. PPO, Breakout-MinAtar, 2 seeds", "brax:ant PPO: 2,048 steps",
                 "gymnax:Pendulum-v1 TD3: 512 steps", "gymnax:Pendulum-v1 SAC: 512 steps"):
        assert line in out, out
