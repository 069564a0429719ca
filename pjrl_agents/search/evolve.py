"""`pjrl evolve`: discover a policy objective by evolving it over whole training runs (LPO).

Each generation, an evolution strategy from evosax (OpenAI-ES) proposes a
population of drift parameters (`pjrl_agents.algorithms.lpo`); every candidate trains PPO
with its drift for `total_timesteps` on `num_seeds` seeds, all candidates and
seeds vmapped in one compiled call (compiled once, reused by every generation);
a candidate's fitness is its final training return (`numeric.final_returns` over
the last 10% of updates, `FITNESS_WINDOW`, averaged over seeds). The strategy is told the fitness and moves.

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

The inner runs are built as `pjrl train` builds a run (`EvolveSpec.run_spec`, then
`pjrl_agents.run.experiment.build`): the same checks, env options and agent. A run option a
search cannot apply is refused (`EvolveSpec.from_run`), never dropped.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from pjrl_agents.algorithms import lpo
from pjrl_agents.algorithms.shared import make_train
from pjrl_agents.config import ConfigError
from pjrl_agents.numeric import final_returns, nanmean, strict_json
from pjrl_agents.run.spec import RunSpec, check_seed

FITNESS_WINDOW = 10
"""a candidate's fitness is its mean return over the last 1/FITNESS_WINDOW of updates (10 %: a steadier signal
than the 5 % a run's reported final return takes, `numeric.FINAL_WINDOW`)"""

SEARCH_DEFAULTS = {"objective": {"generations": 20, "sigma": 0.05, "lr": 0.05},
                   "settings": {"generations": 10, "sigma": 0.3, "lr": 0.1}}
"""the strategy's defaults for each kind of search, filled in where EvolveSpec leaves them None: the LPO
drift's parameters move on a finer scale than settings' offsets in log or logit space"""

STRATEGY = {"strategy": True}
"""metadata of the strategy's own fields (`pjrl tune --method es` takes them as flags too)"""
NO_FLAG = {"flag": False}
"""metadata of the fields `pjrl evolve` has no flag for (`pjrl tune --method es` sets them)"""


@dataclasses.dataclass
class EvolveSpec:
    """How a search is asked for (DIR/evolve.json); each field is a flag of `pjrl evolve`, except those
    marked NO_FLAG."""

    env: str = "gymnax:CartPole-v1"
    """LIB:NAME of the env the inner runs train on"""
    population: int = dataclasses.field(default=8, metadata=STRATEGY)
    """candidates per generation, even (the strategy samples antithetic pairs)"""
    generations: int | None = dataclasses.field(default=None, metadata=STRATEGY)
    """generations (none given: SEARCH_DEFAULTS, 20 for an objective, 10 for settings)"""
    total_timesteps: int = 50_000
    """env steps of each inner run"""
    num_seeds: int = 1
    """seeds each candidate's fitness averages over (every candidate on the same seeds' keys)"""
    sigma: float | None = dataclasses.field(default=None, metadata=STRATEGY)
    """the strategy's sampling std (none given: SEARCH_DEFAULTS, 0.05 for an objective, 0.3 for settings)"""
    lr: float | None = dataclasses.field(default=None, metadata=STRATEGY)
    """the strategy's Adam learning rate (none given: SEARCH_DEFAULTS, 0.05 for an objective, 0.1 for settings)"""
    seed: int = 0
    """root of every draw: generation g draws from fold_in(PRNGKey(seed), g)"""
    env_options: dict = dataclasses.field(default_factory=dict, metadata={"flag": "env_option",
                                                                          "metavar": "NAME=VALUE"})
    """options for the env's adapter, as a run's (RunSpec.env_options)"""
    devices: int | None = None
    """devices the candidates train on: a search trains them all in one call on one device (1)"""
    settings: dict = dataclasses.field(default_factory=dict, metadata=NO_FLAG)
    """algorithm settings over the env's defaults for every inner run"""
    algo: str = dataclasses.field(default="lpo", metadata=NO_FLAG)
    """the inner runs' algorithm; with `search` = "objective" it is LPO"""
    search: str = dataclasses.field(default="objective", metadata=NO_FLAG)
    """"objective": the LPO drift's parameters; "settings": the traced settings named in `names`"""
    names: list = dataclasses.field(default_factory=list, metadata=NO_FLAG)
    """the settings a "settings" search moves (positive ones in log space, [0, 1] ones in logit space)"""

    def __post_init__(self) -> None:
        for name, value in SEARCH_DEFAULTS.get(self.search, {}).items():
            if getattr(self, name) is None:
                setattr(self, name, value)

    @classmethod
    def from_run(cls, run: RunSpec, names, given=(), **strategy) -> EvolveSpec:
        """A "settings" search over `names` whose inner runs are the runs `run` asks for (`strategy`: the
        strategy's fields). A field of `run` that EvolveSpec has applies; any other set away from its default,
        or named in `given` (the fields a flag set), is a ConfigError: a search does not apply it."""
        own, blank = {f.name for f in dataclasses.fields(cls)}, RunSpec()
        for f in dataclasses.fields(RunSpec):
            value = getattr(run, f.name)
            if f.name not in own and (f.name in given or value != getattr(blank, f.name)):
                named = f"--{f.name.replace('_', '-')}" if f.name in given else f"{f.name} {value!r}"
                raise ConfigError(f"{named}: a search does not apply this run option (each candidate trains as one "
                                  "whole run in one compiled call, scored by its final return); drop it, or train "
                                  "with pjrl train")
        from pjrl_agents import algorithms
        settings = dict(run.settings)
        total = settings.pop("total_timesteps", None) or \
            algorithms.get(run.algo).default_config(run.env).total_timesteps
        spec = cls(env=run.env, algo=run.algo, settings=settings, total_timesteps=total, num_seeds=run.num_seeds,
                   seed=run.seed, env_options=dict(run.env_options), devices=run.devices, search="settings",
                   names=list(names), **strategy)
        spec.check()
        return spec

    def run_spec(self) -> RunSpec:
        """The inner runs of a generation as one run spec for `build`: every candidate's seeds, on one device."""
        return RunSpec(env=self.env, algo="lpo" if self.search == "objective" else self.algo,
                       settings={**self.settings, "total_timesteps": self.total_timesteps},
                       env_options=dict(self.env_options), num_seeds=self.population * self.num_seeds,
                       seed=self.seed, devices=1)

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
        check_seed(self.seed, "--seed")
        if self.devices not in (None, 1):
            raise ConfigError(f"--devices {self.devices}: a search trains every candidate in one compiled call on "
                              "one device; leave --devices out (or give 1)")
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

        from pjrl_agents.config import stack_configs
        from pjrl_agents.run.experiment import build
        spec.check()
        self.spec = spec
        objective = spec.search == "objective"
        ex = build(spec.run_spec())  # the checks, env and agent a run gets; compiles nothing
        self.config, self.env, self.ranges = ex.config, ex.env, ex.algorithm.ranges
        self.dimension = lpo.NUM_PARAMS if objective else len(spec.names)
        self.strategy = Open_ES(population_size=spec.population, solution=jnp.zeros(self.dimension),
                                optimizer=optax.adam(spec.lr), std_schedule=optax.constant_schedule(spec.sigma))
        self.params = self.strategy.default_params
        config, env = self.config, self.env

        def final_return(metrics):
            return final_returns(metrics["episode_return"][None], FITNESS_WINDOW, jnp)[0]

        if objective:
            def fitness(key, theta):
                return final_return(make_train(lpo.LPO(config, env, theta=theta))(key)[1])
        else:
            agent = ex.agent
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
    spec = search.spec
    settings = {**spec.settings, "total_timesteps": spec.total_timesteps,
                **{k: float(v) for k, v in search.settings_of(best).items()}}
    found = RunSpec(env=spec.env, algo=spec.algo, settings=settings, env_options=dict(spec.env_options), seed=spec.seed)
    (out / "best.json").write_text(json.dumps(found.to_dict(), indent=2))


def _save_state(out: Path, state, generation: int, best_fitness: float, best: np.ndarray) -> None:
    leaves = jax.tree.leaves(state)
    tmp = out / "state.tmp.npz"
    arrays = {f"leaf{i}": np.asarray(x) for i, x in enumerate(leaves)}
    # numpy's stub types **kwds as if they could be allow_pickle
    np.savez(tmp, generation=generation, best_fitness=best_fitness, best=best, **arrays)  # type: ignore[arg-type]
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
        spec = _read_search(out)
    elif spec is None:
        raise ValueError("evolve: give a spec, or resume=True")
    elif (out / "generations.jsonl").exists():
        raise ConfigError(f"{out} already holds a search; continue it with pjrl evolve --resume {out}")
    assert spec.generations is not None  # EvolveSpec.__post_init__ fills it in
    t0 = time.perf_counter()
    search = Search(spec)  # checks the spec and builds its runs before anything is written
    if not resume:
        out.mkdir(parents=True, exist_ok=True)
        (out / "evolve.json").write_text(json.dumps(dataclasses.asdict(spec), indent=2))
    state = search.initial_state()
    first, best_fitness, best = 0, -np.inf, search.initial_mean()
    if resume and (out / "state.npz").exists():
        state, first, best_fitness, best = _load_state(out, state)
        _keep_rows_before(out / "generations.jsonl", first)
        say(f"resuming {out} at generation {first} of {spec.generations}")
    elif resume:
        (out / "generations.jsonl").unlink(missing_ok=True)
    search.evaluate = search.evaluate.lower(  # type: ignore[assignment]  # the compiled program, called alike
        jax.random.split(jax.random.PRNGKey(0), spec.num_seeds), jnp.zeros((spec.population, search.dimension))
    ).compile()
    compile_s = time.perf_counter() - t0
    say(f"compiled {spec.population} candidates x {spec.num_seeds} seed(s) of {spec.total_timesteps:,} steps "
        f"on {spec.env} in {compile_s:.1f} s")
    row: dict = {}
    for g in range(first, spec.generations):
        t = time.perf_counter()
        state, candidates, fitness = search.generation(state, g)
        finite = np.where(np.isnan(fitness), -np.inf, fitness)
        if finite.max() > best_fitness:
            best_fitness, best = float(finite.max()), candidates[int(finite.argmax())]
        row = strict_json({"generation": g, "fitness_mean": nanmean(fitness), "fitness_max": float(finite.max()),
                           "fitness_best_so_far": best_fitness, "seconds": round(time.perf_counter() - t, 3)})
        with open(out / "generations.jsonl", "a") as f:  # the row first: a kill before the state repeats it
            f.write(json.dumps(row) + "\n")
        _write_best(out, search, state, best)
        _save_state(out, state, g + 1, best_fitness, best)
        say(f"generation {g + 1}/{spec.generations}: fitness mean {row['fitness_mean']}, max {row['fitness_max']}, "
            f"best so far {row['fitness_best_so_far']} ({row['seconds']:.1f} s)")
    where = {"objective": str(out / "best_objective.npy")} if spec.search == "objective" else {
        "best_settings": {k: float(v) for k, v in search.settings_of(best).items()}, "config": str(out / "best.json")}
    summary = strict_json({**row, "compile_s": round(compile_s, 3), "out": str(out), **where})
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _read_search(out: Path) -> EvolveSpec:
    """The spec of the search in `out` (DIR/evolve.json); ConfigError where there is none."""
    try:
        return EvolveSpec(**json.loads((out / "evolve.json").read_text()))
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError(f"--resume {out}: no search to resume there ({e})") from None


def _keep_rows_before(path: Path, first: int) -> None:
    """Drops the rows of generations.jsonl from generation `first` on (a killed search writes its row before
    its state), and any row cut off by the kill."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # a row cut off by the kill
            continue
    path.write_text("".join(json.dumps(r) + "\n" for r in rows
                            if isinstance(r, dict) and r.get("generation", first) < first))


def _write_best(out: Path, search: Search, state, best: np.ndarray) -> None:
    """What the search found so far: the drift's parameters (objective) or best.json (settings)."""
    if search.spec.search == "objective":
        np.save(out / "best_objective.npy", best)
        np.save(out / "mean_objective.npy", np.asarray(state.mean))
    else:
        _write_best_settings(out, search, best)
