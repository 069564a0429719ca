"""One builder from a run spec to everything a run needs: `train`, `--resume`, `eval` and `load_policy` use it.

    spec = RunSpec(env="gymnax:CartPole-v1", settings={"lr": 1e-3}, num_seeds=4)
    ex = build(spec)                       # checks everything, compiles nothing
    keys, configs = ex.inputs()            # (runs, ...) on the device plan
    init = ex.plan.jit(ex.agent.init, in_axes=(0, 0), one_run_at_a_time=True)

A `RunSpec` is how a run is asked for; `run.json` in a run directory is one,
written with every algorithm setting resolved, so `pjrl train --config
RUN/run.json` repeats the run exactly.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

import pjrl_envs
from pjrl_agents import algorithms
from pjrl_agents.run import devices
from pjrl_agents.run.checkpoint import CheckpointError, Checkpointer, has_checkpoint
from pjrl_agents.config import MAX_SIZE, ConfigError, numeric_fields, stack_configs
from pjrl_agents.numeric import all_finite


@dataclasses.dataclass
class RunSpec:
    """How a run is asked for (saved as run.json; `--config` and `--resume` read it back)."""

    env: str = "gymnax:CartPole-v1"
    """LIB:NAME of the env (`pjrl envs` lists them)"""
    algo: str = "ppo"
    """algorithm (`pjrl algos` lists them)"""
    settings: dict = dataclasses.field(default_factory=dict)
    """algorithm settings over its defaults for this env (run.json holds all of them, resolved)"""
    env_options: dict = dataclasses.field(default_factory=dict)
    """options for the env's adapter, e.g. max_steps_in_episode (gymnax) or opponent (pgx)"""
    sweep: list = dataclasses.field(default_factory=list)
    """NAME=V1,V2,... over numeric settings: every member of the grid trains in the same compile"""
    num_seeds: int = 1
    """seeds trained in parallel by vmap, one compile. Seed i trains with key i of
    jax.random.split(PRNGKey(seed), num_seeds); every sweep member reuses the same keys"""
    seed: int = 0
    """root of the seeds' keys (see num_seeds)"""
    chunks: int = 50
    """most pieces the update scan is cut into: metrics leave the device after each. A piece
    that would last under a second runs up to 25x longer (so a short run uses fewer)"""
    checkpoint_every: int = 0
    """checkpoint every N updates (0: only at the end; a final checkpoint is always written)"""
    eval_episodes: int = 10
    """episodes per seed of the greedy policy played when training ends (summary.json's
    final_greedy_return_*), and of each policy at every --eval-every; 0: none"""
    eval_every: int = 0
    """every N updates, evaluate every seed's greedy and stochastic policy on evaluation envs
    (RUN/eval.jsonl, TensorBoard, W&B); 0: off"""
    pbt: dict | None = None
    """population-based training over the run's members and seeds: {"every", "fraction", "perturb",
    "factors"} (pjrl_agents.search.pbt.PBT); None: off"""
    tensorboard: bool = True
    """write TensorBoard event files under RUN/tb"""
    wandb: dict | None = None
    """Weights & Biases tracking: {"project", "entity", "group"}; None: off"""
    devices: int | None = None
    """devices to split the seeds (or one seed's envs) over; None: all visible. run.json records the count used"""

    @classmethod
    def from_dict(cls, data: dict, source: str = "the run spec") -> "RunSpec":
        """A spec from a run.json or a config file. Keys that are algorithm settings may stand at the top level."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source} must hold a mapping of settings, not {type(data).__name__}")
        data = dict(data)
        if "overrides" in data:  # the name run.json used for settings before
            data.setdefault("settings", data.pop("overrides"))
        fields = {f.name for f in dataclasses.fields(cls)}
        loose = {k: data.pop(k) for k in list(data) if k not in fields}
        spec = cls(**data)
        if loose:
            config_fields = {f.name for f in dataclasses.fields(algorithms.get(spec.algo).config_class)}
            unknown = sorted(set(loose) - config_fields)
            if unknown:
                raise ConfigError(f"{source}: no setting {', '.join(unknown)}; run settings: {', '.join(sorted(fields))}"
                                  f"; {spec.algo} settings: {', '.join(sorted(config_fields))}")
            spec.settings = {**spec.settings, **loose}
        return spec

    def to_dict(self) -> dict:
        return _jsonable(dataclasses.asdict(self))


def read_spec(path: str | Path) -> RunSpec:
    """A RunSpec from a JSON or YAML file (a run's run.json is one)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"--config {path}: {e.strerror or e}") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parse failure is the user's file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"--config {path} cannot be parsed: {first}") from None
    try:
        return RunSpec.from_dict(data or {}, f"--config {path}")
    except TypeError as e:  # a field of the wrong kind, e.g. settings given as a list
        raise ConfigError(f"--config {path}: {e}") from None


def parse_sweep(specs: list[str], config: Any) -> list[dict[str, float]]:
    """`["lr=1e-4,3e-4", "gamma=0.99,0.995"]` -> the grid of members, each a dict of settings."""
    numeric = numeric_fields(config)
    axes = []
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not values:
            raise ConfigError(f"--sweep {spec!r}: write NAME=V1,V2,...")
        if name not in numeric:
            static = {f.name for f in dataclasses.fields(config)} - set(numeric)
            why = "fixes array shapes and cannot be swept in one compile" if name in static else "is not a setting"
            raise ConfigError(f"--sweep {name}: {name} {why}; sweepable: {', '.join(numeric)}")
        try:
            values = [float(v) for v in values.split(",")]
        except ValueError:
            raise ConfigError(f"--sweep {spec!r}: values must be numbers") from None
        axes.append([(name, v) for v in values])
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]


@dataclasses.dataclass
class Experiment:
    """Everything one run needs, built from its spec: the config, sweep members, device plan, env and agent."""

    spec: RunSpec
    algorithm: algorithms.Algorithm
    config: Any
    """the whole-run config (every device's envs)"""
    members: list[dict]
    """sweep members, each a dict of settings ([{}] without a sweep)"""
    plan: devices.Plan
    env: pjrl_envs.VecEnv
    """this device's envs, as the adapter made them (the agent wraps them)"""
    agent: algorithms.Agent

    @property
    def num_runs(self) -> int:
        return len(self.members) * self.spec.num_seeds

    @property
    def steps_per_update(self) -> int:
        """env steps per update of one run, over every device its envs are split over"""
        return self.agent.steps_per_update * self.plan.env_share

    @property
    def num_updates(self) -> int:
        return self.agent.num_updates

    def member_configs(self) -> list:
        return [self.config.replace(**m) for m in self.members]

    def inputs(self) -> tuple[jax.Array, Any]:
        """Per-run `(keys, configs)`, member-major (run r = member r // num_seeds, seed r % num_seeds), placed."""
        n = self.spec.num_seeds
        configs = jax.tree.map(lambda x: jnp.repeat(x, n), stack_configs(self.member_configs()))
        keys = jnp.tile(jax.random.split(jax.random.PRNGKey(self.spec.seed), n), (len(self.members), 1))
        return self.plan.put(keys, configs)

    def abstract_state(self) -> Any:
        """The state of every run as shapes (sharded as the plan lays it out), computed without running anything."""
        keys, configs = self.inputs()
        init = self.plan.jit(self.agent.init, in_axes=(0, 0), one_run_at_a_time=True)
        return jax.eval_shape(init, keys, configs)

    def restore(self, run_dir: str | Path, update: int | None = None,
                warn: Callable[[str], None] | None = None) -> tuple[int, Any]:
        """`(update, state)` of a checkpoint of `run_dir` (default: the newest readable one; `warn` is told
        of any newer one passed over)."""
        if not has_checkpoint(run_dir):
            diverged = _read_summary(run_dir).get("diverged")
            if diverged:
                raise CheckpointError(f"{run_dir} diverged at update {diverged['update']}, before its first "
                                      "checkpoint: train it again with a lower lr or a max_grad_norm")
            raise CheckpointError(f"{run_dir} holds no checkpoint yet (a run writes one when it ends, and every "
                                  f"--checkpoint-every updates); continue it with pjrl train --resume {run_dir}")
        checkpointer = Checkpointer(run_dir)
        try:
            step, state = checkpointer.restore(self.abstract_state(), update)
        finally:
            checkpointer.close()
        for skipped, why in checkpointer.skipped:
            if warn:
                warn(f"checkpoint {skipped} cannot be read ({why}); using checkpoint {step}")
        return step, state

    def row(self, state: Any, member: int = 0, seed: int = 0) -> Any:
        """One run's slice of a state (the first device's row when its envs were split)."""
        if not 0 <= member < len(self.members) or not 0 <= seed < self.spec.num_seeds:
            raise ConfigError(f"member {member}, seed {seed}: the run has {len(self.members)} member(s) "
                              f"x {self.spec.num_seeds} seed(s), numbered from 0")
        index = (member * self.spec.num_seeds + seed) * self.plan.env_share
        row = jax.tree.map(lambda x: x[index], state)
        params = getattr(row, "params", None)
        if params is not None and not bool(all_finite(params)):
            raise CheckpointError(f"member {member}, seed {seed}: the checkpoint's parameters are not finite "
                                  "(the run diverged); train again with a lower lr or a max_grad_norm")
        return row


def build(spec: RunSpec, for_restore: bool = False) -> Experiment:
    """Checks `spec` and builds its run; raises ConfigError (or the registry's errors) before anything compiles.

    `for_restore`: lay the run out as it was trained (`spec.devices`) but on no
    mesh, to read its checkpoint in this process whatever devices it sees.
    """
    for name, low, high in (("num_seeds", 1, MAX_SIZE), ("chunks", 1, MAX_SIZE), ("checkpoint_every", 0, MAX_SIZE),
                            ("eval_episodes", 0, 100_000),
                            ("eval_every", 0, MAX_SIZE), ("seed", 0, 2**32 - 1)):
        value = getattr(spec, name)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ConfigError(f"{name} must be a whole number from {low} to {high:,}, got {value!r}"
                              + (" (keys are made from 32 bits of it)" if name == "seed" else ""))
    if spec.eval_every and not spec.eval_episodes:
        raise ConfigError(f"eval_every {spec.eval_every} evaluates nothing with eval_episodes 0: set --eval-episodes N")
    if spec.devices is not None and (not isinstance(spec.devices, int) or isinstance(spec.devices, bool)
                                     or spec.devices < 1):
        raise ConfigError(f"devices must be a whole number >= 1, got {spec.devices!r}")
    algorithm = algorithms.get(spec.algo)
    config = algorithm.default_config(spec.env, **spec.settings)
    algorithm.validate(config, None)
    members = parse_sweep(spec.sweep, config)
    for m in members:
        algorithm.validate(config.replace(**m), None)
    if for_restore:
        plan = devices.restore_plan(spec.devices or 1, config.num_envs, spec.num_seeds, len(members),
                                        algorithm.splits_envs)
    else:
        plan = devices.plan(spec.devices, config.num_envs, spec.num_seeds, len(members), algorithm.splits_envs,
                                gathers=spec.pbt is not None, concurrent_runs=algorithm.concurrent_runs)
    if spec.pbt is not None:
        from pjrl_agents.search.pbt import PBT
        if not isinstance(spec.pbt, dict):
            raise ConfigError(f"pbt must be a mapping of options (every, fraction, perturb, factors), "
                              f"not {spec.pbt!r}")
        PBT.from_dict(spec.pbt).check(config, len(members) * spec.num_seeds, algorithm.ranges)
        if plan.env_share > 1:
            raise ConfigError("population-based training needs whole runs per device: train at least as many "
                              "seeds as devices (or --devices 1)")
    local = plan.local(config)
    if plan.env_share > 1:
        try:
            algorithm.validate(local, None)
        except ConfigError as e:
            raise ConfigError(f"with num_envs split over {plan.num_devices} devices (num_envs={local.num_envs} "
                              f"each): {e}") from None
    env = pjrl_envs.make(spec.env, num_envs=local.num_envs, **spec.env_options)
    plan.check_env(env)
    agent = algorithm.make_agent(local, env, axis_name=plan.axis_name)
    return Experiment(spec, algorithm, config, members, plan, env, agent)


def load(run_dir: str | Path, warn: Callable[[str], None] | None = None) -> tuple[Experiment, Any]:
    """A run rebuilt from its run.json and its newest readable checkpoint restored, whole, in this process."""
    run_dir = Path(run_dir)
    spec = read_run(run_dir)
    experiment = build(spec, for_restore=True)
    _, state = experiment.restore(run_dir, warn=warn)
    return experiment, state


def read_run(run_dir: Path) -> RunSpec:
    """The RunSpec of a run directory; CheckpointError if it holds none."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise CheckpointError(f"no run directory {run_dir}; give one that pjrl train wrote (runs/... by default)")
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is a file; give the run directory that holds run.json")
    try:
        data = json.loads((Path(run_dir) / "run.json").read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{run_dir} holds no run (no run.json)") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{run_dir}/run.json is unreadable: {e}") from None
    try:
        return RunSpec.from_dict(data, f"{run_dir}/run.json")
    except (TypeError, ConfigError) as e:
        raise CheckpointError(f"{run_dir}/run.json is unreadable: {e}") from None


def _read_summary(run_dir: str | Path) -> dict:
    """A run's summary.json, or {} where there is none (or it cannot be read)."""
    try:
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def final_returns(episode_return: np.ndarray) -> np.ndarray:
    """Mean episodic return over the last 5% of updates, per run; NaN for a run none of whose episodes
    ended there. Input `(runs, updates)`, NaN before the first episode ends."""
    tail = np.asarray(episode_return, np.float64)[:, -max(1, episode_return.shape[1] // 20):]
    seen = np.isfinite(tail)
    return np.where(seen.any(1), np.where(seen, tail, 0.0).sum(1) / np.maximum(seen.sum(1), 1), np.nan)


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.ndarray, jax.Array)):
        return np.asarray(x).tolist()
    return x
