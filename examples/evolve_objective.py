"""Discover a policy objective on one env, then train with it on another (LPO, as in PureJaxRL's pitch).

    python examples/evolve_objective.py                              # CartPole -> Acrobot, CPU-sized
    python examples/evolve_objective.py --generations 2 --population 4 --total-timesteps 4096

Meta-training: each generation, OpenAI-ES proposes drift parameters; every
candidate trains PPO with its drift on CartPole, all candidates in one compiled
call; fitness is the final return. Then the best objective found trains on
Acrobot beside the drift evolution started from, 4 seeds each.
"""
import argparse
import tempfile
from pathlib import Path

import numpy as np

from pjrl_agents.run.runner import train
from pjrl_agents.run.spec import RunSpec
from pjrl_agents.search import evolve


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--meta-env", default="gymnax:CartPole-v1")
    p.add_argument("--env", default="gymnax:Acrobot-v1", help="where the discovered objective then trains")
    p.add_argument("--generations", type=int, default=10)
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--total-timesteps", type=int, default=50_000, help="env steps of every run")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        search = Path(tmp) / "search"
        spec = evolve.EvolveSpec(env=args.meta_env, population=args.population, generations=args.generations,
                                 total_timesteps=args.total_timesteps)
        summary = evolve.evolve(spec, search, progress=None)
        rows = (search / "generations.jsonl").read_text().splitlines()
        print(f"meta-training on {args.meta_env}: {len(rows)} generations, best fitness so far "
              f"{summary['fitness_best_so_far']:.1f}, compiled once in {summary['compile_s']:.1f} s")
        for name, objective in (("initial drift", ""), ("discovered drift", str(search))):
            result = train(RunSpec(env=args.env, algo="lpo", num_seeds=4, tensorboard=False,
                                   settings={"total_timesteps": args.total_timesteps, "objective": objective}),
                           out=str(Path(tmp) / name.replace(" ", "-")), progress=None)
            greedy = np.asarray(result["final_greedy_return_per_seed"])
            print(f"{args.env} with the {name}: greedy return {np.nanmean(greedy):.1f} over 4 seeds "
                  f"({', '.join(f'{g:.0f}' for g in greedy)})")


if __name__ == "__main__":
    main()
