#!/usr/bin/env bash
# GPU figures for the README, each beside PureJaxRL's own script where it has one:
#   1. PPO on gymnax CartPole-v1 at 1, 256 and 2048 seeds (benchmarks/ppo_gymnax.py: compile, run, steps/s,
#      the reference's figures and the ratios, `pjrl train` beside the compiled core)
#   2. PPO on Breakout-MinAtar at PureJaxRL's MinAtar config, 8 seeds (benchmarks/minatar_ppo.py)
#   3. `pjrl train --env brax:ant` (PPO, 2048 envs), what users run: compile, run, steps/s, return
#   4. `pjrl train --algo td3` at the FastTD3 settings (td3.FASTTD3) and `--algo sac` at GPU-sized ones on
#      playground:CartpoleBalance, a DM Control task without locomotion: compile, run, steps/s, return
#
#   bash benchmarks/gpu.sh            # on a machine whose JAX sees a GPU (about 6 minutes on one H200 before
#                                     # CartPole ran in three paired rounds, which repeat its runs and compiles)
#   bash benchmarks/gpu.sh --smoke    # every step at toy sizes, on any machine (tests/test_benchmarks.py runs it)
#
# PY (default .venv/bin/python) and REF (default ../shared/reference/bench_purejaxrl.py) can be set.
# A step that fails is reported and the next one still runs; the exit status is 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
REF=${REF:-../shared/reference/bench_purejaxrl.py}
OUT=$(mktemp -d)
# the benchmarks start JAX in several processes at once (the reference and `pjrl train` as subprocesses): none
# may take three quarters of the GPU's memory up front
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
trap 'rm -rf "$OUT"' EXIT

if [[ "${1:-}" == "--smoke" ]]; then
    SEEDS=1,2; STEPS=2048; MULTI=2048; ROUNDS=1
    MINATAR_STEPS=8192; MINATAR_SEEDS=2
    ANT=(--total-timesteps 2048 --set num_envs=8 --set num_steps=16 --set num_minibatches=4 --eval-episodes 0)
    CONTROL_ENV=gymnax:Pendulum-v1
    TD3=(--total-timesteps 512 --set num_envs=4 --set num_steps=4 --set batch_size=32 --set buffer_size=512
         --set learning_starts=64 --set hidden_sizes=16 --set critic_hidden_sizes=16 --eval-episodes 2)
    SAC=(--total-timesteps 512 --set num_envs=4 --set num_steps=4 --set batch_size=32 --set buffer_size=512
         --set learning_starts=64 --set hidden_sizes=16 --eval-episodes 2)
elif [[ -n "${1:-}" ]]; then
    echo "gpu.sh: unknown argument $1; use no argument (a GPU run) or --smoke" >&2
    exit 2
else
    if ! "$PY" -c "import jax, sys; sys.exit(jax.devices()[0].platform != 'gpu')" 2>/dev/null; then
        echo "gpu.sh: JAX sees no GPU here; run it on a GPU machine, or try it with --smoke" >&2
        exit 2
    fi
    SEEDS=1,256,2048; STEPS=100000; MULTI=100000; ROUNDS=3
    MINATAR_STEPS=1e6; MINATAR_SEEDS=8
    ANT=(--total-timesteps 3000000 --eval-episodes 0 --set num_envs=2048 --set num_steps=10 --set num_minibatches=32
         --set update_epochs=4 --set lr=3e-4 --set gamma=0.97 --set ent_coef=0.0 --set normalize_obs=true
         --set normalize_reward=true --set hidden_sizes=256,256)
    CONTROL_ENV=playground:CartpoleBalance
    # td3.FASTTD3: 128 envs, two gradient steps of 32768 transitions per vector step, wide critics
    TD3=(--total-timesteps 1000000 --eval-episodes 16 --set num_envs=128 --set num_steps=1 --set utd_ratio=0.015625
         --set batch_size=32768 --set buffer_size=1048576 --set hidden_sizes=512,256,128
         --set critic_hidden_sizes=1024,512,256 --set normalize_obs=true --set tau=0.1 --set learning_starts=32768)
    SAC=(--total-timesteps 1000000 --eval-episodes 16 --set num_envs=128 --set num_steps=1 --set utd_ratio=0.015625
         --set batch_size=8192 --set buffer_size=1048576 --set hidden_sizes=256,256 --set learning_starts=32768)
fi
refarg=()
[[ -f "$REF" ]] && refarg=(--reference "$REF")

failed=()
step() {  # step NAME COMMAND...: runs it, reports its time, and goes on if it fails
    local name=$1 t0=$SECONDS; shift
    echo "== $name"
    if "$@"; then echo "   ($name: $((SECONDS - t0)) s)"; else echo "   ($name: FAILED after $((SECONDS - t0)) s)"; failed+=("$name"); fi
}
cartpole() {
    "$PY" benchmarks/ppo_gymnax.py --seeds "$SEEDS" --steps "$STEPS" --steps-multi "$MULTI" --rounds "$ROUNDS" \
        "${refarg[@]}" | grep -v '^{'
}
ant() {
    "$PY" -m pjrl_agents.cli train --env brax:ant --quiet --out "$OUT/ant" "${ANT[@]}" >/dev/null || return 1
    "$PY" - "$OUT/ant/summary.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"brax:ant PPO: {s['total_timesteps']:,} steps, compile {s['compile_s']:.1f}s, run {s['run_s']:.1f}s, "
      f"{s['steps_per_s']:,} steps/s, final return {s['final_return_mean']:.1f}")
EOF
}
control() {  # control ALGO FLAGS...: what users run, on CONTROL_ENV
    local algo=$1; shift
    "$PY" -m pjrl_agents.cli train --env "$CONTROL_ENV" --algo "$algo" --quiet --out "$OUT/$algo" "$@" >/dev/null \
        || return 1
    "$PY" - "$OUT/$algo/summary.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"{s['env']} {s['algo'].upper()}: {s['total_timesteps']:,} steps, compile {s['compile_s']:.1f}s, "
      f"run {s['run_s']:.1f}s, {s['steps_per_s']:,} steps/s, final greedy return {s['final_greedy_return_mean']:.1f}")
EOF
}
step "1. PPO, gymnax CartPole-v1, seeds $SEEDS" cartpole
step "2. PPO, Breakout-MinAtar, $MINATAR_SEEDS seeds" \
    "$PY" benchmarks/minatar_ppo.py --steps "$MINATAR_STEPS" --seeds "$MINATAR_SEEDS" "${refarg[@]}"
step "3. pjrl train --env brax:ant" ant
step "4a. pjrl train --algo td3 (FastTD3 settings) --env $CONTROL_ENV" control td3 "${TD3[@]}"
step "4b. pjrl train --algo sac --env $CONTROL_ENV" control sac "${SAC[@]}"
if (( ${#failed[@]} )); then
    echo "gpu.sh: failed: ${failed[*]}" >&2
    exit 1
fi
