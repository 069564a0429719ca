"""Continuous-control PPO on MuJoCo Playground's DM Control suite, trained and kept as a run.

    python examples/playground_ppo.py                                   # CheetahRun, sized for a GPU
    python examples/playground_ppo.py --env playground:CartpoleBalance  # CPU-sized (ppo.ENV_DEFAULTS)

The second line learns on a 2-core CPU in under a minute, compile included (return ~960
of 1000 after 500k steps; a random policy ~350). Episodes end by Playground's time limit,
which pjrl reports as truncation and bootstraps from the real last observation: the one
Playground's own auto-reset wrapper replaces by the next episode's first.

The run directory holds the checkpoint, metrics and summary: `pjrl eval RUN`,
`pjrl plot RUN` and `--resume` work on it as on any `pjrl train` run.
"""
import argparse
import tempfile
from pathlib import Path

from pjrl_agents.algorithms import ppo
from pjrl_agents.run.runner import train
from pjrl_agents.run.spec import RunSpec

# Playground's DM Control PPO settings, for thousands of envs on one accelerator; envs listed in
# ppo.ENV_DEFAULTS (CartpoleBalance) use those instead.
GPU_DEFAULTS = dict(total_timesteps=60_000_000, num_envs=2048, num_steps=30, num_minibatches=32, update_epochs=16,
                    lr=1e-3, gamma=0.995, ent_coef=0.01, hidden_sizes=(32, 32, 32, 32), activation="silu",
                    normalize_obs=True, normalize_reward=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="playground:CheetahRun")
    p.add_argument("--total-timesteps", type=int, default=None)
    p.add_argument("--num-envs", type=int, default=None)
    p.add_argument("--num-seeds", type=int, default=1)
    p.add_argument("--impl", choices=("jax", "warp"), default=None,
                   help="MJX pipeline (default: warp on a CUDA GPU, else jax)")
    p.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    args = p.parse_args(argv)

    settings = {} if args.env in ppo.ENV_DEFAULTS else dict(GPU_DEFAULTS)
    for name in ("total_timesteps", "num_envs"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    spec = RunSpec(env=args.env, settings=settings, num_seeds=args.num_seeds, tensorboard=False, eval_episodes=4,
                   env_options={} if args.impl is None else {"impl": args.impl})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or Path(tmp) / "playground")
        s = train(spec, out=str(out), progress=None)
        print(f"{args.env}: {s['total_timesteps']} steps x {s['num_seeds']} seed(s) in {s['run_s']:.0f} s "
              f"(+{s['compile_s']:.0f} s compile); training return {s['final_return_mean']:.1f}, "
              f"greedy return {s['final_greedy_return_mean']:.1f}" + (f"; run kept in {out}" if args.out else ""))


if __name__ == "__main__":
    main()
