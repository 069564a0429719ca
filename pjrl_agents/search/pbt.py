"""Population-based training inside one compiled run (Jaderberg et al., 2017).

Every run of a run spec (each seed of each sweep member) is a member of the
population, and each carries its hyperparameters as traced numbers in its state.
Every `every` updates, between two chunks, the runner ranks the members by their
mean training return over those updates; the worst `fraction` copy the learned
state (the fields the agent declares in `Agent.learned`: parameters, optimiser
states) of members drawn from the best `fraction` (exploit), take their
hyperparameters, and multiply each perturbed one by a factor drawn from
`factors` (explore). The step is one jitted function of the whole population's
state, so nothing recompiles and the members keep training in the same call.

    pjrl tune --method pbt --num-seeds 8 --pbt-every 20 --perturb lr,ent_coef

Each member keeps its own envs (and their normaliser statistics) and RNG: a copy
continues the parent's agent on the child's own stream of experience. Rows of
`RUN/pbt.jsonl` give, at every step, each member's score, parent and settings:
the lineage, which `pjrl tune` draws to `RUN/lineage.png`.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pjrl_agents.algorithms.contract import Agent
from pjrl_agents.config import ConfigError, Interval, numeric_fields
from pjrl_agents.numeric import member_seed, run_index
from pjrl_agents.run.hooks import Boundary
from pjrl_agents.run.sinks import read_metrics, row_of


@dataclasses.dataclass(frozen=True)
class PBT:
    """How the population is exploited and explored (RunSpec.pbt, from run.json)."""

    every: int = 20
    """updates between exploit/explore steps"""
    fraction: float = 0.25
    """share of the population replaced at each step, and share its parents are drawn from"""
    perturb: tuple = ("lr", "ent_coef")
    """the traced settings each child perturbs"""
    factors: tuple = (0.8, 1.25)
    """what a perturbed setting is multiplied by, one drawn per setting and child"""

    @classmethod
    def from_dict(cls, data: dict) -> PBT:
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"pbt: no option {', '.join(unknown)}; options: every, fraction, perturb, factors")
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**data)

    def check(self, config: Any, population: int, ranges: dict[str, Interval]) -> None:
        """ConfigError naming what to change, before anything compiles."""
        if not isinstance(self.every, int) or isinstance(self.every, bool) or self.every < 1:
            raise ConfigError(f"--pbt-every {self.every!r}: give a whole number of updates >= 1")
        if not 0 < self.fraction <= 0.5:
            raise ConfigError(f"--fraction {self.fraction}: give a share above 0 and at most 0.5")
        numeric = numeric_fields(config)
        bad = [name for name in self.perturb if name not in numeric]
        if bad or not self.perturb:
            raise ConfigError(f"--perturb {','.join(bad) or '(none)'}: perturb traced settings, some of "
                              f"{', '.join(numeric)}")
        if not self.factors or any(not np.isfinite(f) or f <= 0 for f in self.factors):
            raise ConfigError(f"--factors {self.factors}: give positive numbers, e.g. 0.8,1.25")
        if population < 2 or int(population * self.fraction) < 1:
            raise ConfigError(f"a population of {population} replaces none of its members at --fraction "
                              f"{self.fraction}: train more of them (--num-seeds, --sweep) or raise --fraction")


def upper_bounds(perturb: tuple, ranges: dict[str, Interval]) -> dict[str, float]:
    """The finite upper ends of the perturbed settings' intervals (`[0, 1]` -> 1.0), which children are
    clipped to; lower ends need no clip, since factors are positive."""
    return {name: ranges[name].high for name in perturb if name in ranges and math.isfinite(ranges[name].high)}


def exploit_explore(state: Any, scores: jax.Array, key: jax.Array, fraction: float, perturb: tuple,
                    factors: tuple, bounds: dict[str, float] | None = None,
                    learned: tuple[str, ...] = Agent.learned) -> tuple[Any, jax.Array, jax.Array]:
    """One PBT step of a population's state (leaves `(N, ...)`): `(state, parents (N,), multipliers (N, P))`.

    The `floor(N * fraction)` lowest `scores` (NaN counts as lowest) each copy the `learned` fields (the
    agent's `Agent.learned`: everything it learned, not its envs, keys or counters) and the config of a
    parent drawn uniformly from the same number of highest, then multiply each setting of `perturb` by a
    factor drawn from `factors` (clipped to `bounds`). Everyone else is their own parent, with multipliers 1.
    Jittable; `fraction`, `perturb`, `factors` and `bounds` are static.
    """
    n = scores.shape[0]
    k = int(n * fraction)
    scores = jnp.where(jnp.isnan(scores), -jnp.inf, scores)
    order = jnp.argsort(scores, stable=True)  # lowest first
    bottom, top = order[:k], order[n - k:]
    pick_key, factor_key = jax.random.split(key)
    parents = jnp.arange(n).at[bottom].set(top[jax.random.randint(pick_key, (k,), 0, k)])
    replaced = jnp.zeros(n, bool).at[bottom].set(True)
    drawn = jax.random.choice(factor_key, jnp.asarray(factors, jnp.float32), (n, len(perturb)))
    multipliers = jnp.where(replaced[:, None], drawn, 1.0)

    take = lambda tree: jax.tree.map(lambda x: x[parents], tree)
    new = {name: take(getattr(state, name)) for name in learned}
    config = take(state.config)
    changed = {}
    for i, name in enumerate(perturb):
        value = getattr(config, name) * multipliers[:, i].astype(getattr(config, name).dtype)
        if bounds and name in bounds:
            value = jnp.minimum(value, bounds[name])
        changed[name] = value
    new["config"] = config.replace(**changed)
    return state._replace(**new), parents, multipliers


PBT_STREAM = 0x706274  # 'pbt': folded into the run's root key for the exploit/explore draws


class Exploit(Boundary):
    """The runner's hook for population-based training: every `every` updates before the last, one
    exploit/explore step of the whole population (`exploit_explore`), its lineage rows to the sinks
    (stream "pbt": RUN/pbt.jsonl); when training ends, the best member (`best`)."""

    at_end = False

    def __init__(self, population: PBT, spec: Any, experiment: Any, history: list[dict], sinks: list, out: Path,
                 writer: bool):
        """`spec`: the run's RunSpec as run.json holds it (every setting resolved)."""
        self.population, self.spec, self.experiment, self.history = population, spec, experiment, history
        self.sinks, self.every, self.out, self.writer = sinks, population.every, out, writer
        self._step: Callable[..., Any] | None = None  # the jitted exploit/explore step, made at first use

    def __call__(self, state: Any, update: int) -> Any:
        population, ex, spec = self.population, self.experiment, self.spec
        scores = scores_of(self.history, ex.num_runs, spec.num_seeds, update - population.every, update)
        if self._step is None:
            bounds = upper_bounds(population.perturb, ex.algorithm.ranges)
            self._step = jax.jit(lambda s, sc, k: exploit_explore(
                s, sc, k, population.fraction, population.perturb, population.factors, bounds,
                learned=ex.agent.learned))
        key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(spec.seed), PBT_STREAM), update)
        before = state
        state, parents, _ = self._step(state, jnp.asarray(scores, jnp.float32), key)
        # back onto the layout the compiled chunk takes (the members sharded over the devices)
        state = jax.tree.map(lambda new, old: jax.device_put(new, old.sharding), state, before)
        parents = np.asarray(parents)
        values = {name: np.asarray(getattr(state.config, name), np.float64) for name in population.perturb}
        rows = [{**row_of(r, update, spec.num_seeds, ex.steps_per_update), "score": float(scores[r]),
                 "parent": int(parents[r]), **{k: float(v[r]) for k, v in values.items()}}
                for r in range(ex.num_runs)]
        for sink in self.sinks:
            sink.log(rows, "pbt")
        return state

    def best(self, state: Any, done: int) -> dict:
        """The member with the best training return over the last `every` updates, and RUN/best.json: the run
        spec `pjrl train --config` trains it with (its final settings, no sweep, no PBT)."""
        population, ex, spec = self.population, self.experiment, self.spec
        scores = scores_of(self.history, ex.num_runs, spec.num_seeds, max(0, done - population.every), done)
        best = int(np.nanargmax(np.where(np.isnan(scores), -np.inf, scores)))
        settings = {name: float(np.asarray(getattr(state.config, name))[best]) for name in population.perturb}
        if self.writer:
            out = self.out
            spec_best = dataclasses.replace(spec, settings={**spec.settings, **settings}, sweep=[], pbt=None,
                                            devices=None)
            (out / "best.json").write_text(json.dumps(spec_best.to_dict(), indent=2))
            rows = read_metrics(out, name="pbt.jsonl")
            if rows:
                try:
                    draw_lineage(rows, population.perturb, str(out / "lineage.png"))
                except Exception:  # noqa: BLE001 - a figure must not lose the run's results
                    pass
        member, seed = member_seed(best, spec.num_seeds)
        return {"best_member": member, "best_seed": seed, "best_score": float(scores[best]),
                "best_settings": settings,
                "final_settings": {name: np.asarray(getattr(state.config, name), np.float64).tolist()
                                   for name in population.perturb}}


def scores_of(history: list[dict], runs: int, num_seeds: int, first: int, last: int) -> np.ndarray:
    """Each run's mean training return over updates `first+1 .. last` (NaN where no episode ended)."""
    sums, counts = np.zeros(runs), np.zeros(runs)
    for row in history:
        if first < row["update"] <= last and np.isfinite(row["episode_return"]):
            r = run_index(row["member"], row["seed"], num_seeds)
            sums[r] += row["episode_return"]
            counts[r] += 1
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def draw_lineage(rows: list[dict], perturb: tuple, out: str) -> str:
    """Each member's perturbed settings over updates, one panel per setting, to `out`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    from pjrl_agents.analysis.plot import save_figure, step_formatter
    fig, axes = plt.subplots(1, len(perturb), figsize=(6 * len(perturb), 4), dpi=100, squeeze=False)
    members = sorted({(r["member"], r["seed"]) for r in rows})
    for ax, name in zip(axes.flat, perturb):
        for m in members:
            mine = sorted((r for r in rows if (r["member"], r["seed"]) == m), key=lambda r: r["update"])
            ax.plot([r["step"] for r in mine], [r[name] for r in mine], drawstyle="steps-post", alpha=0.8,
                    linewidth=1)
        ax.set_yscale("log")
        ax.set_title(f"{name} of each of the {len(members)} members")
        ax.set_xlabel("env steps per member")
        ax.xaxis.set_major_formatter(FuncFormatter(step_formatter))
        ax.grid(alpha=0.3)
    try:
        save_figure(fig, out)
    finally:
        plt.close(fig)
    return out
