"""The README's results table, rebuilt from the repository by one command.

    make table                                   # trains what is missing under runs/table, evaluates, writes README.md
    python benchmarks/table.py --no-readme       # print the table only
    python benchmarks/table.py --random          # the random policy's returns (compare.REFERENCE_SCORES)

Trains each env x algorithm pair of `PAIRS` with `pjrl train` (several seeds in
one compile, CPU-sized budgets; GPU-sized ones where JAX sees a GPU), evaluates
every seed with `pjrl eval` (greedy and sampled policy, evaluation keys apart from
the training keys), and writes `pjrl compare --markdown` of the greedy scores
between the README's `results` markers, with the random policy's return beside
it. A pair whose run directory already finished is not trained again
(`--fresh` retrains everything).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAIRS = [
    # env, algo, CPU settings, GPU settings
    ("gymnax:CartPole-v1", "ppo", {"total_timesteps": 500_000}, {"total_timesteps": 1_000_000}),
    ("gymnax:CartPole-v1", "dqn", {"total_timesteps": 500_000}, {"total_timesteps": 500_000}),
    ("gymnax:Acrobot-v1", "ppo", {"total_timesteps": 500_000}, {"total_timesteps": 1_000_000}),
    ("gymnax:Pendulum-v1", "ppo", {"total_timesteps": 500_000}, {"total_timesteps": 1_000_000}),
    ("gymnax:Breakout-MinAtar", "ppo", {"total_timesteps": 1_000_000}, {"total_timesteps": 10_000_000}),
    ("gymnax:CartPole-v1", "pqn", {"total_timesteps": 500_000}, {"total_timesteps": 500_000}),
    ("gymnax:Pendulum-v1", "sac", {"total_timesteps": 20_000}, {"total_timesteps": 20_000}),
    ("gymnax:Pendulum-v1", "td3", {"total_timesteps": 20_000}, {"total_timesteps": 20_000}),
]
SEEDS = {"cpu": 8, "gpu": 32}
EPISODES = 16
MARKERS = ("<!-- results:begin -->", "<!-- results:end -->")


def random_returns(env_name: str, episodes: int = 1000, seed: int = 0) -> float:
    """Mean return of the uniform random policy over `episodes` episodes (64 envs, each its first ones)."""
    import jax
    import numpy as np

    import pjrl_envs
    from pjrl_agents.run import evaluate
    from pjrl_envs import wrappers
    env = wrappers.EpisodeStatistics(pjrl_envs.make(env_name, num_envs=64))
    per_env = -(-episodes // env.num_envs)
    out = evaluate.episodes(env, pjrl_envs.random_policy(env), jax.random.PRNGKey(seed), per_env * env.num_envs * 4)
    return float(np.mean(out["returns"][:episodes]))


def train_and_evaluate(out: Path, env: str, algo: str, settings: dict, seeds: int, fresh: bool) -> None:
    from pjrl_agents import cli
    from pjrl_agents.run.runner import train
    from pjrl_agents.run.spec import RunSpec
    summary = out / "summary.json"
    if fresh or not summary.exists() or json.loads(summary.read_text()).get("status") != "finished":
        if out.exists():
            import shutil
            shutil.rmtree(out)
        t0 = time.perf_counter()
        spec = RunSpec(env=env, algo=algo, settings=settings, num_seeds=seeds, tensorboard=False)
        result = train(spec, out=str(out), progress=None)
        print(f"{env} {algo}: trained {seeds} seeds x {result['total_timesteps']:,} steps in "
              f"{time.perf_counter() - t0:.0f} s (compile {result['compile_s']:.0f} s)", file=sys.stderr)
    if not (out / "eval.json").exists() or fresh:
        with contextlib.redirect_stdout(io.StringIO()):
            assert cli.main(["eval", str(out), "--episodes", str(EPISODES)]) == 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", default=str(ROOT / "runs" / "table"), help="where the runs live (default: runs/table)")
    p.add_argument("--fresh", action="store_true", help="retrain every pair")
    p.add_argument("--no-readme", action="store_true", help="print the table; leave README.md as it is")
    p.add_argument("--random", action="store_true", help="print each env's random-policy return and stop")
    args = p.parse_args(argv)

    import jax
    envs = list(dict.fromkeys(env for env, *_ in PAIRS))
    if args.random:
        for env in envs:
            print(f"{env}: {random_returns(env):.2f}")
        return 0
    budget = "gpu" if jax.default_backend() == "gpu" else "cpu"
    root = Path(args.dir)
    runs = []
    for env, algo, cpu, gpu in PAIRS:
        out = root / budget / f"{algo}-{env.split(':', 1)[1]}"
        train_and_evaluate(out, env, algo, cpu if budget == "cpu" else gpu, SEEDS[budget], args.fresh)
        runs.append(out)

    from pjrl_agents import cli
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        assert cli.main(["compare", *map(str, runs), "--by", "run", "--markdown"]) == 0
    table, _, footer = text.getvalue().strip().partition("\n\n")
    budgets = ", ".join(f"{env.split(':')[1]} {algo.upper()} "
                        f"{json.loads((r / 'summary.json').read_text())['total_timesteps']:,}"
                        for (env, algo, *_), r in zip(PAIRS, runs))
    random_line = "; ".join(f"{env.split(':')[1]} {random_returns(env):.1f}" for env in envs)
    block = "\n".join([
        MARKERS[0],
        (f"{SEEDS[budget]} seeds per row, greedy policy over {EPISODES} evaluation episodes per seed "
         f"({budget.upper()}-sized budgets, env steps per seed: {budgets}). Random policy: {random_line}."),
        "",
        table,
        "",
        (f"Rebuild: `make table` (`benchmarks/table.py`: trains under `runs/table/{budget}`, runs `pjrl eval`, then "
         "`pjrl compare --by run --markdown`); ") + footer.removeprefix("scores: ").rstrip(".") + ".",
        MARKERS[1],
    ])
    print(block)
    if not args.no_readme:
        readme = ROOT / "README.md"
        current = readme.read_text()
        pattern = re.compile(re.escape(MARKERS[0]) + ".*?" + re.escape(MARKERS[1]), re.S)
        if not pattern.search(current):
            print("README.md has no results markers; add them where the table goes", file=sys.stderr)
            return 1
        readme.write_text(pattern.sub(lambda _: block, current))
        print(f"wrote the table into {readme}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
