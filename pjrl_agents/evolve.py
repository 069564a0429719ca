"""`pjrl evolve`: discover a policy objective by evolving it over whole training runs (LPO).

Each generation, an evolution strategy from evosax (OpenAI-ES) proposes a
population of drift parameters (`pjrl_agents.lpo`); every candidate trains PPO
with its drift for `total_timesteps` on `num_seeds` seeds, all candidates and
seeds vmapped in one compiled call (compiled once, reused by every generation);
a candidate's fitness is its final training return (the mean over the last 10%
of updates, averaged over seeds). The strategy is told the fitness and moves.

    pjrl evolve --env gymnax:CartPole-v1 --population 8 --generations 20 --out runs/lpo
    pjrl evolve --resume runs/lpo                    # after a kill: the same generations as uninterrupted
    pjrl train --algo lpo --objective runs/lpo --env gymnax:Acrobot-v1

DIR holds `evolve.json` (the settings), `generations.jsonl` (generation,
fitness_mean, fitness_max, fitness_best_so_far, seconds), `state.npz` (the
strategy's state after the last finished generation, written atomically) and
`best_objective.npy` (the best candidate so far) and `mean_objective.npy` (the
strategy's mean). Every draw comes from `fold_in(PRNGKey(seed), generation)`, so
a resumed search repeats the generations an uninterrupted one would run.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

import pjrl_envs
from pjrl_agents import lpo
from pjrl_agents.common import ConfigError, make_train


@dataclasses.dataclass
class EvolveSpec:
    """How a search is asked for (DIR/evolve.json)."""

    env: str = "gymnax:CartPole-v1"
    population: int = 8
    generations: int = 20
    total_timesteps: int = 50_000
    num_seeds: int = 1
    sigma: float = 0.05
    lr: float = 0.05
    seed: int = 0
    settings: dict = dataclasses.field(default_factory=dict)
    """PPO settings over the env's defaults for every inner run"""

    def check(self) -> None:
        for name, low in (("population", 2), ("generations", 1), ("total_timesteps", 1), ("num_seeds", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"--{name.replace('_', '-')} {value!r}: give a whole number >= {low}")
        if self.population % 2:
            raise ConfigError(f"--population {self.population}: give an even number (the strategy samples "
                              "antithetic pairs)")
        for name in ("sigma", "lr"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ConfigError(f"--{name} {value!r}: give a positive number")
        if not 0 <= self.seed <= 2**32 - 1:
            raise ConfigError(f"--seed {self.seed}: give a whole number from 0 to {2**32 - 1:,}")


class Search:
    """The compiled population of training runs and the strategy that moves over it."""

    def __init__(self, spec: EvolveSpec):
        import optax
        from evosax.algorithms import Open_ES
        spec.check()
        self.spec = spec
        self.config = lpo.default_config(spec.env, total_timesteps=spec.total_timesteps, **spec.settings)
        lpo.validate(self.config)
        self.env = pjrl_envs.make(spec.env, num_envs=self.config.num_envs)
        self.strategy = Open_ES(population_size=spec.population, solution=jnp.zeros(lpo.NUM_PARAMS),
                                optimizer=optax.adam(spec.lr), std_schedule=optax.constant_schedule(spec.sigma))
        self.params = self.strategy.default_params
        config, env = self.config, self.env

        def fitness(key, theta):
            _, metrics = make_train(lpo.LPO(config, env, theta=theta))(key)
            tail = metrics["episode_return"][-max(1, metrics["episode_return"].shape[0] // 10):]
            seen = jnp.isfinite(tail)
            return jnp.where(seen.any(), jnp.where(seen, tail, 0.0).sum() / jnp.maximum(seen.sum(), 1), jnp.nan)

        # every candidate on the same seeds' keys (common random numbers), one call for all of them
        self.evaluate = jax.jit(jax.vmap(lambda keys, theta: jax.vmap(fitness, (0, None))(keys, theta).mean(),
                                         in_axes=(None, 0)))
        self.ask = jax.jit(self.strategy.ask)
        self.tell = jax.jit(self.strategy.tell)

    def initial_state(self):
        return self.strategy.init(jax.random.PRNGKey(self.spec.seed), jnp.asarray(lpo.initial_theta()), self.params)

    def generation(self, state, g: int):
        """One generation `g`: `(state, candidates (P, D), fitness (P,))`."""
        key = jax.random.fold_in(jax.random.PRNGKey(self.spec.seed), g)
        ask_key, train_key, tell_key = jax.random.split(key, 3)
        candidates, state = self.ask(ask_key, state, self.params)
        fitness = self.evaluate(jax.random.split(train_key, self.spec.num_seeds), candidates)
        finite = jnp.where(jnp.isnan(fitness), -1e9, fitness)  # a candidate whose runs ended no episode
        state, _ = self.tell(tell_key, candidates, -finite, state, self.params)  # evosax minimises
        return state, np.asarray(candidates), np.asarray(fitness)


def _save_state(out: Path, state, generation: int, best_fitness: float, best: np.ndarray) -> None:
    leaves = jax.tree.leaves(state)
    tmp = out / "state.tmp.npz"
    np.savez(tmp, generation=generation, best_fitness=best_fitness, best=best,
             **{f"leaf{i}": np.asarray(x) for i, x in enumerate(leaves)})
    os.replace(tmp, out / "state.npz")


def _load_state(out: Path, template):
    data = np.load(out / "state.npz")
    leaves, treedef = jax.tree.flatten(template)
    restored = [jnp.asarray(data[f"leaf{i}"], dtype=x.dtype) for i, x in enumerate(leaves)]
    return (jax.tree.unflatten(treedef, restored), int(data["generation"]), float(data["best_fitness"]),
            np.asarray(data["best"]))


def evolve(spec: EvolveSpec | None, out: str | Path, resume: bool = False,
           progress: Callable[[str], None] | None = print) -> dict:
    """Runs (or resumes) a search into `out`; returns its last generation's row and where things are."""
    out = Path(out)
    say = progress or (lambda line: None)
    if resume:
        try:
            spec = EvolveSpec(**json.loads((out / "evolve.json").read_text()))
        except (OSError, ValueError, TypeError) as e:
            raise ConfigError(f"--resume {out}: no search to resume there ({e})") from None
    else:
        spec.check()
        if (out / "generations.jsonl").exists():
            raise ConfigError(f"{out} already holds a search; continue it with pjrl evolve --resume {out}")
        out.mkdir(parents=True, exist_ok=True)
        (out / "evolve.json").write_text(json.dumps(dataclasses.asdict(spec), indent=2))
    search = Search(spec)
    t0 = time.perf_counter()
    state = search.initial_state()
    first, best_fitness, best = 0, -np.inf, lpo.initial_theta()
    if resume and (out / "state.npz").exists():
        state, first, best_fitness, best = _load_state(out, state)
        rows = []
        for line in (out / "generations.jsonl").read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:  # a row cut off by the kill
                continue
        (out / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows
                                                       if isinstance(r, dict) and r.get("generation", first) < first))
        say(f"resuming {out} at generation {first} of {spec.generations}")
    elif resume:
        (out / "generations.jsonl").unlink(missing_ok=True)
    compiled = search.evaluate.lower(jax.random.split(jax.random.PRNGKey(0), spec.num_seeds),
                                     jnp.zeros((spec.population, lpo.NUM_PARAMS))).compile()
    search.evaluate = compiled
    compile_s = time.perf_counter() - t0
    say(f"compiled {spec.population} candidates x {spec.num_seeds} seed(s) of {spec.total_timesteps:,} steps "
        f"on {spec.env} in {compile_s:.1f} s")
    row = {}
    for g in range(first, spec.generations):
        t = time.perf_counter()
        state, candidates, fitness = search.generation(state, g)
        finite = np.where(np.isnan(fitness), -np.inf, fitness)
        if finite.max() > best_fitness:
            best_fitness, best = float(finite.max()), candidates[int(finite.argmax())]
        row = {"generation": g, "fitness_mean": float(np.nanmean(fitness)) if np.isfinite(fitness).any() else None,
               "fitness_max": float(finite.max()) if np.isfinite(finite.max()) else None,
               "fitness_best_so_far": best_fitness if np.isfinite(best_fitness) else None,
               "seconds": round(time.perf_counter() - t, 3)}
        with open(out / "generations.jsonl", "a") as f:  # the row first: a kill before the state repeats it
            f.write(json.dumps(row) + "\n")
        np.save(out / "best_objective.npy", best)
        np.save(out / "mean_objective.npy", np.asarray(state.mean))
        _save_state(out, state, g + 1, best_fitness, best)
        say(f"generation {g + 1}/{spec.generations}: fitness mean {row['fitness_mean']}, max {row['fitness_max']}, "
            f"best so far {row['fitness_best_so_far']} ({row['seconds']:.1f} s)")
    summary = {**row, "compile_s": round(compile_s, 3), "out": str(out),
               "objective": str(out / "best_objective.npy")}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
