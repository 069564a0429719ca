"""Peak host memory (RSS) of a whole CartPole PPO run as total steps grow: pjrl vs PureJaxRL.

    python benchmarks/metrics_memory.py --reference ../shared/reference/bench_purejaxrl.py

pjrl keeps a few scalars per update and streams them off the device chunk by
chunk; PureJaxRL's ppo.py returns every step's info for every env. Each figure is
a fresh process's peak RSS (ru_maxrss), so it includes JAX itself; the growth
between the two step counts is what the metrics cost.

Under gymnax 1.x, `bench_purejaxrl.py`'s step wrapper also puts each step's
`final_observation` into that info, which ppo.py's own gymnax never did; the row
"purejaxrl, own info" (`purejaxrl_seeds.py`, which drops it) is ppo.py's cost alone.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD_PJRL = """
import resource, sys, json
from pjrl_agents.run import runner
from pjrl_agents.run.spec import RunSpec
runner.train(RunSpec(settings={"total_timesteps": int(float(sys.argv[1]))}, tensorboard=False), out=sys.argv[2],
             progress=None)
print(json.dumps({"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

CHILD_SCRIPT = """
import resource, runpy, sys, json
sys.argv = sys.argv[1:]  # the script to run, then its arguments
runpy.run_path(sys.argv[0], run_name="__main__")
print(json.dumps({"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def peak_rss(code: str, *args: str) -> float:
    env = {**os.environ, "PJRL_CACHE_DIR": "off", "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])["maxrss_mb"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", default="1e6,1e7")
    p.add_argument("--reference", default=None, help="path to bench_purejaxrl.py")
    a = p.parse_args()
    steps = a.steps.split(",")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for s in steps:
            rows.setdefault("pjrl", []).append(peak_rss(CHILD_PJRL, s, os.path.join(tmp, f"run{s}")))
            if a.reference:
                rows.setdefault("purejaxrl", []).append(
                    peak_rss(CHILD_SCRIPT, a.reference, "--algo", "ppo", "--steps", s, "--repeats", "1"))
                rows.setdefault("purejaxrl, own info", []).append(
                    peak_rss(CHILD_SCRIPT, str(Path(__file__).with_name("purejaxrl_seeds.py")),
                             "--reference", a.reference, "--env", "CartPole-v1", "--steps", s, "--seeds", "1"))
    for name, values in rows.items():
        growth = values[-1] / values[0] - 1
        print(f"{name:20s} peak RSS " + "  ".join(f"{s} steps: {v:7.0f} MB" for s, v in zip(steps, values))
              + f"  growth {growth:+.1%}")
    print(json.dumps({"steps": steps, **rows}))


if __name__ == "__main__":
    main()
