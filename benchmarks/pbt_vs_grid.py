"""Population-based training against a grid of the same size and compute, on CartPole.

    python benchmarks/pbt_vs_grid.py [--steps 100000] [--roots 0,1,2]

Both train the same 8 members in one compile each: the grid lr in {1e-4, 3e-4,
1e-3, 3e-3} x ent_coef in {0, 0.01} as given; PBT starts from that grid and,
every 10 updates, lets the worst quarter copy the best quarter and perturb lr and
ent_coef. Prints, per root seed, the greedy return (16 evaluation episodes per
member) of the grid's median member and best member, and PBT's median and best.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GRID = ["lr=1e-4,3e-4,1e-3,3e-3", "ent_coef=0,0.01"]


def run(root: int, steps: int, population: bool, out: Path) -> np.ndarray:
    from pjrl_agents.run.runner import train
    from pjrl_agents.run.spec import RunSpec
    spec = RunSpec(settings={"total_timesteps": steps}, sweep=GRID, seed=root, eval_episodes=16, tensorboard=False,
                   pbt={"every": 10, "fraction": 0.25, "perturb": ["lr", "ent_coef"]} if population else None)
    summary = train(spec, out=str(out), progress=None)
    return np.asarray([m["final_greedy_return_mean"] for m in summary["members"]])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--roots", default="0,1,2")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for root in map(int, args.roots.split(",")):
            grid = run(root, args.steps, False, Path(tmp) / f"grid{root}")
            pop = run(root, args.steps, True, Path(tmp) / f"pbt{root}")
            rows.append({"root": root, "grid_median": float(np.median(grid)), "grid_best": float(grid.max()),
                         "pbt_median": float(np.median(pop)), "pbt_best": float(pop.max())})
            print(json.dumps(rows[-1]))
    keys = ("grid_median", "grid_best", "pbt_median", "pbt_best")
    print("mean over roots: " + ", ".join(f"{k} {np.mean([r[k] for r in rows]):.1f}" for k in keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
