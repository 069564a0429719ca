"""`pjrl evolve`: discover a policy objective by evolving it over whole training runs (LPO).

Each generation, an evolution strategy from evosax (OpenAI-ES) proposes a
population of drift parameters (`pjrl_agents.algorithms.lpo`); every candidate trains PPO
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
strategy's mean). `pjrl tune --method es` runs the same search over traced
settings instead (`search="settings"`), writing `best.json`, a run spec that
`pjrl train --config` takes. Every draw comes from `fold_in(PRNGKey(seed), generation)`, so
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
from pjrl_agents.algorithms import lpo
from pjrl_agents.algorithms.shared import make_train
from pjrl_agents.config import ConfigError
from pjrl_agents.numeric import nanmean


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
    """algorithm settings over the env's defaults for every inner run"""
    algo: str = "lpo"
    """the inner runs' algorithm; with `search` = "objective" it is LPO"""
    search: str = "objective"
    """"objective": the LPO drift's parameters; "settings": the traced settings named in `names`"""
    names: list = dataclasses.field(default_factory=list)
    """the settings a "settings" search moves (positive ones in log space, [0, 1] ones in logit space)"""

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
        if self.search not in ("objective", "settings"):
            raise ConfigError(f"search {self.search!r}: objective or settings")
        if self.search == "settings":
            from pjrl_agents import algorithms
            from pjrl_agents.config import numeric_fields
            config = algorithms.get(self.algo).default_config(self.env, **self.settings)
            numeric = numeric_fields(config)
            bad = [n for n in self.names if n not in numeric]
            if bad or not self.names:
                raise ConfigError(f"--perturb {','.join(bad) or '(none)'}: name traced settings of {self.algo}, "
                                  f"some of {', '.join(numeric)}")


class Search:
    """The compiled population of training runs and the strategy that moves over it.

    An "objective" search's candidates are LPO drift parameters; a "settings" search's are offsets of the
    named settings from their defaults (`Search.settings_of` reads them)."""

    def __init__(self, spec: EvolveSpec):
        import optax
        from evosax.algorithms import Open_ES

        from pjrl_agents import algorithms
        from pjrl_agents.config import stack_configs
        spec.check()
        self.spec = spec
        objective = spec.search == "objective"
        algo = algorithms.get("lpo" if objective else spec.algo)
        self.config = algo.default_config(spec.env, total_timesteps=spec.total_timesteps, **spec.settings)
        algo.validate(self.config, None)
        self.env = pjrl_envs.make(spec.env, num_envs=self.config.num_envs)
        self.dimension = lpo.NUM_PARAMS if objective else len(spec.names)
        self.strategy = Open_ES(population_size=spec.population, solution=jnp.zeros(self.dimension),
                                optimizer=optax.adam(spec.lr), std_schedule=optax.constant_schedule(spec.sigma))
        self.params = self.strategy.default_params
        self.ranges = algo.ranges
        config, env = self.config, self.env

        def final_return(metrics):
            tail = metrics["episode_return"][-max(1, metrics["episode_return"].shape[0] // 10):]
            seen = jnp.isfinite(tail)
            return jnp.where(seen.any(), jnp.where(seen, tail, 0.0).sum() / jnp.maximum(seen.sum(), 1), jnp.nan)

        if objective:
            def fitness(key, theta):
                return final_return(make_train(lpo.LPO(config, env, theta=theta))(key)[1])
        else:
            agent = algo.make_agent(config, env)
            base = stack_configs([config])

            def fitness(key, x):
                values = self.settings_of(x, jnp)
                member = jax.tree.map(lambda leaf: leaf[0], base).replace(**values)
                return final_return(make_train(agent)(key, member)[1])

        # every candidate on the same seeds' keys (common random numbers), one call for all of them
        self.evaluate = jax.jit(jax.vmap(lambda keys, c: jax.vmap(fitness, (0, None))(keys, c).mean(),
                                         in_axes=(None, 0)))
        self.ask = jax.jit(self.strategy.ask)
        self.tell = jax.jit(self.strategy.tell)

    def initial_mean(self) -> np.ndarray:
        return lpo.initial_theta() if self.spec.search == "objective" else np.zeros(self.dimension, np.float32)

    def settings_of(self, x, xp=np) -> dict:
        """The settings a "settings" candidate `x` stands for: positive settings are `default * exp(x)`,
        those in [0, 1] `sigmoid(logit(default) + x)`, the rest `default + x`."""
        out = {}
        for i, name in enumerate(self.spec.names):
            default, interval = float(getattr(self.config, name)), self.ranges.get(name)
            if interval is not None and interval.positive and default > 0:
                out[name] = default * xp.exp(x[i])
            elif interval is not None and interval.unit and 0 < default < 1:
                logit = np.log(default / (1 - default))
                out[name] = 1 / (1 + xp.exp(-(logit + x[i])))
            else:
                out[name] = default + x[i]
        return out

    def initial_state(self):
        return self.strategy.init(jax.random.PRNGKey(self.spec.seed), jnp.asarray(self.initial_mean()), self.params)

    def generation(self, state, g: int):
        """One generation `g`: `(state, candidates (P, D), fitness (P,))`."""
        key = jax.random.fold_in(jax.random.PRNGKey(self.spec.seed), g)
        ask_key, train_key, tell_key = jax.random.split(key, 3)
        candidates, state = self.ask(ask_key, state, self.params)
        fitness = self.evaluate(jax.random.split(train_key, self.spec.num_seeds), candidates)
        finite = jnp.where(jnp.isnan(fitness), -1e9, fitness)  # a candidate whose runs ended no episode
        state, _ = self.tell(tell_key, candidates, -finite, state, self.params)  # evosax minimises
        return state, np.asarray(candidates), np.asarray(fitness)


def _write_best_settings(out: Path, search: Search, best: np.ndarray) -> None:
    """DIR/best.json: a run spec with the best candidate's settings, which `pjrl train --config` takes."""
    from pjrl_agents.run.spec import RunSpec
    spec = search.spec
    settings = {**spec.settings, "total_timesteps": spec.total_timesteps,
                **{k: float(v) for k, v in search.settings_of(best).items()}}
    (out / "best.json").write_text(json.dumps(RunSpec(env=spec.env, algo=spec.algo, settings=settings,
                                                      seed=spec.seed).to_dict(), indent=2))


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
    first, best_fitness, best = 0, -np.inf, search.initial_mean()
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
                                     jnp.zeros((spec.population, search.dimension))).compile()
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
        mean = nanmean(fitness)
        row = {"generation": g, "fitness_mean": None if np.isnan(mean) else mean,
               "fitness_max": float(finite.max()) if np.isfinite(finite.max()) else None,
               "fitness_best_so_far": best_fitness if np.isfinite(best_fitness) else None,
               "seconds": round(time.perf_counter() - t, 3)}
        with open(out / "generations.jsonl", "a") as f:  # the row first: a kill before the state repeats it
            f.write(json.dumps(row) + "\n")
        if spec.search == "objective":
            np.save(out / "best_objective.npy", best)
            np.save(out / "mean_objective.npy", np.asarray(state.mean))
        else:
            _write_best_settings(out, search, best)
        _save_state(out, state, g + 1, best_fitness, best)
        say(f"generation {g + 1}/{spec.generations}: fitness mean {row['fitness_mean']}, max {row['fitness_max']}, "
            f"best so far {row['fitness_best_so_far']} ({row['seconds']:.1f} s)")
    where = {"objective": str(out / "best_objective.npy")} if spec.search == "objective" else {
        "best_settings": {k: float(v) for k, v in search.settings_of(best).items()}, "config": str(out / "best.json")}
    summary = {**row, "compile_s": round(compile_s, 3), "out": str(out), **where}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
