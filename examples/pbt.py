"""Population-based training from Python: a population of PPO agents tuned while they train, in one compile.

    python examples/pbt.py                                   # 8 members on CartPole, 100k steps each
    python examples/pbt.py --total-timesteps 20480 --population 4

The same as `pjrl tune --method pbt`: the members start from a grid of learning
rates; every 10 updates the worst quarter copy the best quarter's agents and
perturb lr and ent_coef. Prints each member's learning rate over the exploit
steps (its lineage) and where the best member ended.
"""
import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from pjrl_agents.run.runner import train
from pjrl_agents.run.sinks import read_metrics
from pjrl_agents.run.spec import RunSpec


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--total-timesteps", type=int, default=100_000, help="env steps per member")
    p.add_argument("--population", type=int, default=8, help="members: learning rates spread 1e-4 to 3e-3")
    p.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    args = p.parse_args(argv)

    lrs = np.geomspace(1e-4, 3e-3, args.population)
    spec = RunSpec(settings={"total_timesteps": args.total_timesteps},
                   sweep=["lr=" + ",".join(f"{lr:.3g}" for lr in lrs)], tensorboard=False,
                   pbt={"every": 10, "fraction": 0.25, "perturb": ["lr", "ent_coef"], "factors": [0.8, 1.25]})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or Path(tmp) / "pbt")
        summary = train(spec, out=str(out), progress=None)
        rows = read_metrics(out, name="pbt.jsonl")
        for member in range(args.population):
            mine = [r for r in rows if r["member"] == member]
            lineage = " -> ".join(f"{r['lr']:.2g}" for r in mine[::max(1, len(mine) // 6)])
            print(f"member {member}: lr {lineage}")
        best = summary["pbt"]
        greedy = [m["final_greedy_return_mean"] for m in summary["members"]]
        print(f"best member {best['best_member']}: " + json.dumps({k: round(v, 6) for k, v in
                                                                  best["best_settings"].items()})
              + f"; greedy return of the population: median {np.median(greedy):.1f}, best {max(greedy):.1f}")


if __name__ == "__main__":
    main()
