"""Every script under examples/ runs end to end with a tiny budget, as a user would start it (slow: each
is a process that imports JAX and compiles a training run)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "brax": (["brax_ppo.py", "--env", "brax:inverted_double_pendulum", "--total-timesteps", "256",
              "--num-envs", "4"], r"brax:inverted_double_pendulum: 256 steps .* policy return [\d.]+ over 4 episodes"),
    "playground": (["playground_ppo.py", "--env", "playground:CartpoleBalance", "--total-timesteps", "4096"],
                   r"playground:CartpoleBalance: 4096 steps x 1 seed\(s\) .* greedy return [\d.]+"),
    "craftax": (["craftax_ppo.py", "--total-timesteps", "4096", "--episodes", "2"],
                r"craftax:Craftax-Classic-Symbolic-v1: 4096 steps .* greedy achievements per episode [\d.]+"),
    "minatar-gymnax": (["minatar_ppo.py", "--source", "gymnax", "--total-timesteps", "1024", "--num-envs", "8"],
                       r"gymnax:Breakout-MinAtar: 1024 steps x 1 seed"),
    "minatar-pgx": (["minatar_ppo.py", "--source", "pgx", "--total-timesteps", "1024", "--num-envs", "8"],
                    r"pgx:minatar-breakout: 1024 steps x 1 seed"),
    "tictactoe": (["pgx_tictactoe.py", "--total-timesteps", "512", "--num-envs", "8", "--games", "40"],
                  r"greedy  policy, 40 games vs random: win [\d.]+%  draw [\d.]+%  loss [\d.]+% .*illegal moves 0\)"),
    "evolve": (["evolve_objective.py", "--generations", "2", "--population", "2", "--total-timesteps", "2048"],
               (r"meta-training on gymnax:CartPole-v1: 2 generations.*\n.*initial drift: greedy return .*\n"
                r".*discovered drift: greedy return")),
    "pbt": (["pbt.py", "--total-timesteps", "20480", "--population", "4"],
            r"best member \d: \{\"lr\": [\d.e-]+, \"ent_coef\": [\d.e-]+\}; greedy return of the population"),
    "jumanji": (["jumanji_ppo.py", "--total-timesteps", "512", "--num-envs", "8", "--episodes", "2"],
                r"jumanji:Game2048-v1 after 512 steps: PPO score \d+ .* random \d+"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_example_runs(case, tmp_path):
    argv, expected = CASES[case]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, str(ROOT / "examples" / argv[0]), *argv[1:]], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert re.search(expected, res.stdout), res.stdout
