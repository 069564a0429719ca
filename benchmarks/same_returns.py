"""A fingerprint of what training computes, for checking that a change of structure changed no number.

Trains CartPole PPO, DQN, recurrent PPO and a PBT population through `pjrl` (the command users run,
so the script runs on any commit whatever the package layout) and prints, per run, a hash of every
logged metric of every update and seed, and the per-seed final and greedy returns. Two commits
that print the same lines trained the same numbers, bit for bit.

    python benchmarks/same_returns.py            # all runs
    python benchmarks/same_returns.py --only ppo dqn
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PJRL = str(Path(sys.executable).with_name("pjrl"))
RUNS = {
    "ppo": ["train", "--algo", "ppo", "--num-seeds", "2", "--set", "total_timesteps=40000"],
    "dqn": ["train", "--algo", "dqn", "--num-seeds", "2", "--set", "total_timesteps=20000",
            "--set", "learning_starts=2000"],
    "ppo-gru": ["train", "--algo", "ppo", "--num-seeds", "2", "--set", "total_timesteps=20000",
                "--set", "torso=gru"],
    "pbt": ["tune", "--method", "pbt", "--num-seeds", "4", "--pbt-every", "5", "--set", "total_timesteps=40000",
            "--eval-every", "20"],
}
TIMING = {"compile_s", "run_s", "steps_per_s", "eval_s", "out", "compilation_cache"}


def fingerprint(out: Path) -> dict:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rows.sort(key=lambda r: (r["member"], r["seed"], r["update"]))  # chunks end where the pace says
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]
    summary = json.loads((out / "summary.json").read_text())
    result = {"updates": len(rows), "metrics_sha": digest,
              "final": summary.get("final_return_per_seed"), "greedy": summary.get("final_greedy_return_per_seed")}
    for extra in ("pbt.jsonl", "eval.jsonl"):
        if (out / extra).exists():
            lines = sorted((out / extra).read_text().splitlines())
            result[extra] = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(RUNS), default=sorted(RUNS))
    parser.add_argument("--keep", metavar="DIR", help="keep the runs under DIR (to compare their metrics row by row)")
    args = parser.parse_args()
    env = {**os.environ, "PJRL_CACHE_DIR": "off"}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            out = Path(args.keep or tmp) / name
            subprocess.run([PJRL, *RUNS[name], "--out", str(out), "--quiet"], check=True, env=env,
                           stdout=subprocess.DEVNULL)
            print(name, json.dumps(fingerprint(out)), flush=True)


if __name__ == "__main__":
    main()
