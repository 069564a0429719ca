"""How a run is asked for: `RunSpec`, read from flags, a config file or a run directory's run.json.

A `RunSpec` is how a run is asked for; `run.json` in a run directory is one,
written with every algorithm setting resolved, so `pjrl train --config
RUN/run.json` repeats the run exactly.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

from pjrl_agents import algorithms
from pjrl_agents.config import ConfigError, numeric_fields
from pjrl_agents.run.checkpoint import CheckpointError

MAX_SEED = 2**32 - 1
"""the largest root seed: keys are made from 32 bits of it"""


def check_seed(seed: Any, name: str = "seed") -> None:
    """ConfigError unless `seed` is a whole number from 0 to MAX_SEED (the one check of every root seed:
    a run's, a search's, an evaluation's); `name` is what the message calls it (a flag, a field)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{name} {seed!r}: give a whole number from 0 to {MAX_SEED:,} (keys are made from 32 bits "
                          "of it)")


@dataclasses.dataclass
class WandbOptions:
    """Weights & Biases tracking: the keys of RunSpec.wandb (the `--wandb-*` flags and `WandbSink` read them)."""

    project: str = "pjrl"
    """W&B project"""
    entity: str | None = None
    """W&B entity (none given: yours)"""
    group: str | None = None
    """W&B group"""


@dataclasses.dataclass
class RunSpec:
    """How a run is asked for (saved as run.json; `--config` and `--resume` read it back).

    Every field is a flag of `pjrl train` (pjrl_agents.cli.flags), read as its default's kind; a field's
    `metadata` names a flag of its own syntax (`flag`, `metavar`), a dict of options with flags of their
    own (`options`), no flag (`flag: False`), or a flag read before the others (`read_first`: the settings
    that exist depend on it).
    """

    env: str = dataclasses.field(default="gymnax:CartPole-v1", metadata={"read_first": True})
    """LIB:NAME of the env (`pjrl envs` lists them)"""
    algo: str = dataclasses.field(default="ppo", metadata={"read_first": True})
    """algorithm (`pjrl algos` lists them)"""
    settings: dict = dataclasses.field(default_factory=dict, metadata={"flag": "set", "metavar": "NAME=VALUE"})
    """algorithm settings over its defaults for this env (run.json holds all of them, resolved); each has a
    flag of its own, and --set NAME=VALUE reads VALUE as that flag would: --set hidden_sizes=128,128"""
    env_options: dict = dataclasses.field(default_factory=dict, metadata={"flag": "env_option",
                                                                          "metavar": "NAME=VALUE"})
    """options for the env's adapter, e.g. max_steps_in_episode (gymnax) or opponent (pgx)"""
    sweep: list = dataclasses.field(default_factory=list, metadata={"metavar": "NAME=V1,V2"})
    """NAME=V1,V2,... over numeric settings: every member of the grid trains in the same compile; several
    make a grid"""
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
    pbt: dict | None = dataclasses.field(default=None, metadata={"flag": False})
    """population-based training over the run's members and seeds: {"every", "fraction", "perturb",
    "factors"} (pjrl_agents.search.pbt.PBT; its flags are pjrl tune's); None: off"""
    tensorboard: bool = True
    """write TensorBoard event files under RUN/tb"""
    wandb: dict | None = dataclasses.field(default=None, metadata={"options": WandbOptions})
    """track with Weights & Biases (WANDB_MODE=offline works): the keys of WandbOptions; None: off"""
    devices: int | None = None
    """devices to split the seeds (or one seed's envs) over; None: all visible. run.json records the count used"""

    @classmethod
    def from_dict(cls, data: dict, source: str = "the run spec") -> RunSpec:
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
                raise ConfigError(f"{source}: no setting {', '.join(unknown)}; run settings: "
                                  f"{', '.join(sorted(fields))}; "
                                  f"{spec.algo} settings: {', '.join(sorted(config_fields))}")
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
    axes: list[list[tuple[str, float]]] = []
    for spec in specs:
        name, sep, text = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not text:
            raise ConfigError(f"--sweep {spec!r}: write NAME=V1,V2,...")
        if name not in numeric:
            static = {f.name for f in dataclasses.fields(config)} - set(numeric)
            why = "fixes array shapes and cannot be swept in one compile" if name in static else "is not a setting"
            raise ConfigError(f"--sweep {name}: {name} {why}; sweepable: {', '.join(numeric)}")
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            raise ConfigError(f"--sweep {spec!r}: values must be numbers") from None
        axes.append([(name, v) for v in values])
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]


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


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.ndarray, jax.Array)):
        return np.asarray(x).tolist()
    return x
