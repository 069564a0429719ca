"""`pjrl train`'s compile and run times on this checkout beside another checkout of pjrl, in paired rounds.

For a change that should cost nothing (a new layout, say): each round trains every config once on each
checkout, alternating which goes first, and a config's figure is the median over rounds of the ratio
within a round (other checkout's time / this one's: above 1 means this checkout is faster). Both run
in this Python, each from its own tree (`--before DIR`, e.g. a `git worktree add DIR COMMIT`).

    git worktree add /tmp/before HEAD~5
    python benchmarks/paired_commits.py --before /tmp/before --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIGS = {
    "ppo 1 seed 500k": ["--algo", "ppo", "--num-seeds", "1"],
    "ppo 16 seeds 100k": ["--algo", "ppo", "--num-seeds", "16", "--total-timesteps", "100000"],
    "dqn 1 seed 500k": ["--algo", "dqn", "--num-seeds", "1"],
    "dqn 16 seeds 100k": ["--algo", "dqn", "--num-seeds", "16", "--total-timesteps", "100000"],
}

# Runs `pjrl` from the tree first on sys.path. A tree from before the algorithms package registers its
# algorithms by hand, since the installed entry points name this checkout's modules.
LAUNCH = """
import os, sys
tree = sys.argv.pop(1)
sys.path.insert(0, tree)
if not os.path.isdir(os.path.join(tree, "pjrl_agents", "algorithms")):
    from pjrl_agents import algorithm, dqn, ppo
    algorithm.register(ppo.ALGORITHM)
    algorithm.register(dqn.ALGORITHM)
from pjrl_agents.cli import main
sys.exit(main(sys.argv[1:]))
"""


def train(tree: Path, args: list[str], out: Path) -> dict:
    env = {**os.environ, "PJRL_CACHE_DIR": "off"}
    subprocess.run([sys.executable, "-c", LAUNCH, str(tree), "train", *args, "--out", str(out), "--quiet",
                    "--no-tensorboard"], check=True, env=env, stdout=subprocess.DEVNULL, cwd=tree)
    return json.loads((out / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, type=Path, help="the other checkout of pjrl")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=sorted(CONFIGS), default=list(CONFIGS))
    args = parser.parse_args()
    trees = {"this": Path(__file__).resolve().parents[1], "before": args.before.resolve()}
    times: dict = {name: {t: {"compile_s": [], "run_s": []} for t in trees} for name in args.only}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for name in args.only:
                order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
                for tree in order:
                    summary = train(trees[tree], CONFIGS[name], Path(tmp) / f"{round_}-{name}-{tree}".replace(" ", "_"))
                    for key in ("compile_s", "run_s"):
                        times[name][tree][key].append(summary[key])
            print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    print(f"{'config':<20} {'compile this/before (s)':>24} {'ratio':>6} {'run this/before (s)':>21} {'ratio':>6}")
    for name in args.only:
        cells = []
        for key in ("compile_s", "run_s"):
            this, before = times[name]["this"][key], times[name]["before"][key]
            ratio = statistics.median(b / t for t, b in zip(this, before))
            cells.append(f"{statistics.median(this):>10.2f} / {statistics.median(before):<10.2f} {ratio:>6.3f}")
        print(f"{name:<20} {cells[0]:>31} {cells[1]:>28}")


if __name__ == "__main__":
    main()
