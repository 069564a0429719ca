"""One builder from a run spec to everything a run needs: `train`, `--resume`, `eval` and `load_policy` use it.

    spec = RunSpec(env="gymnax:CartPole-v1", settings={"lr": 1e-3}, num_seeds=4)
    ex = build(spec)                       # checks everything, compiles nothing
    keys, configs = ex.inputs()            # (runs, ...) on the device plan
    init = ex.plan.jit(ex.agent.init, in_axes=(0, 0), one_run_at_a_time=True)

The spec itself (`RunSpec`, run.json) is `pjrl_agents.run.spec`.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

import pjrl_envs
from pjrl_agents import algorithms
from pjrl_agents.algorithms.contract import Hints, check_agent, check_state
from pjrl_agents.config import MAX_SIZE, ConfigError, stack_configs
from pjrl_agents.numeric import all_finite, run_index
from pjrl_agents.run import devices, xla_cpu
from pjrl_agents.run.checkpoint import Checkpointer, CheckpointError, has_checkpoint
from pjrl_agents.run.rundir import read_summary
from pjrl_agents.run.spec import RunSpec, check_seed, parse_sweep, read_run


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

    @functools.cached_property
    def init_fn(self) -> Callable:
        """`init(keys, configs)` of every run, jitted over the plan (each device loops over its runs)."""
        return self.plan.jit(self.agent.init, in_axes=(0, 0), one_run_at_a_time=True)

    def abstract_state(self) -> Any:
        """The state of every run as shapes (sharded as the plan lays it out), computed without running anything;
        ContractError where the agent's state lacks a field the run machinery reads."""
        state = jax.eval_shape(self.init_fn, *self.inputs())
        check_state(state, self.agent, self.algorithm.name)
        return state

    def restore(self, run_dir: str | Path, update: int | None = None,
                warn: Callable[[str], None] | None = None) -> tuple[int, Any]:
        """`(update, state)` of a checkpoint of `run_dir` (default: the newest readable one; `warn` is told
        of any newer one passed over)."""
        if not has_checkpoint(run_dir):
            diverged = read_summary(run_dir).get("diverged")
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
        index = run_index(member, seed, self.spec.num_seeds) * self.plan.env_share
        row = jax.tree.map(lambda x: x[index], state)
        if not bool(all_finite(row.params)):
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
                            ("eval_every", 0, MAX_SIZE)):
        value = getattr(spec, name)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ConfigError(f"{name} must be a whole number from {low} to {high:,}, got {value!r}")
    check_seed(spec.seed)
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
                                gathers=spec.pbt is not None,
                                concurrent_runs=algorithm.concurrent_runs or xla_cpu.CONCURRENT_RUNS,
                                host_env=pjrl_envs.steps_on_host(spec.env))
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
    hints = Hints(kernels_side_by_side=xla_cpu.cpu_kernels_side_by_side())
    agent = algorithm.make_agent(local, env, axis_name=plan.axis_name, hints=hints)
    check_agent(agent, algorithm.name)
    return Experiment(spec, algorithm, config, members, plan, env, agent)


def load(run_dir: str | os.PathLike, warn: Callable[[str], None] | None = None) -> tuple[Experiment, Any]:
    """A run rebuilt from its run.json and its newest readable checkpoint restored, whole, in this process."""
    run_dir = Path(run_dir)
    spec = read_run(run_dir)
    experiment = build(spec, for_restore=True)
    _, state = experiment.restore(run_dir, warn=warn)
    return experiment, state
