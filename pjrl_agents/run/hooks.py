"""Work the runner does between two chunks: checkpoints, evaluations and (from pjrl_agents.search.pbt)
population-based training, each a `Hook` with its boundary rule written once, in `Boundary`.

At a boundary the runner first waits for the chunk that ends there and hands its rows to the sinks, so the
logs reach a checkpoint before it is written; then it calls every hook due there, in the order given.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import jax
import numpy as np

from pjrl_agents.numeric import nanmean
from pjrl_agents.run import evaluate
from pjrl_agents.run.checkpoint import Checkpointer
from pjrl_agents.run.sinks import Sink, mean_rows, row_of


class Hook(Protocol):
    every: int
    """updates between two of its boundaries; 0: none"""

    def due(self, done: int, num_updates: int) -> bool: ...

    def until(self, done: int) -> int: ...

    def __call__(self, state: Any, update: int) -> Any:
        """Its work at a boundary after `update` updates; returns the state training goes on from."""


class Boundary:
    """Every `every` updates (0: never), the last update included unless `at_end` is False."""

    every: int = 0
    at_end: bool = True

    def due(self, done: int, num_updates: int) -> bool:
        return bool(self.every) and done % self.every == 0 and (self.at_end or done < num_updates)

    def until(self, done: int) -> int:
        """Updates from `done` to the next boundary (a chunk ends there)."""
        return self.every - done % self.every


class Checkpoints(Boundary):
    """A checkpoint every `every` updates, and one when training ends unless it diverged (`final`)."""

    def __init__(self, checkpointer: Checkpointer, every: int, last_saved: int | None):
        self.checkpointer, self.every, self.last_saved = checkpointer, every, last_saved

    def __call__(self, state: Any, update: int) -> Any:
        self.checkpointer.save(update, state)
        self.last_saved = update
        return state

    def final(self, state: Any, update: int) -> None:
        if self.last_saved != update:
            self(state, update)

    def close(self) -> None:
        self.checkpointer.close()


class Evaluations(Boundary):
    """Every run's policies on its evaluation envs (`evaluate.evaluate_runs`'s protocol): every `every`
    updates as rows to the sinks (stream "eval"), and the greedy policy when training ends (`greedy`).

    Runs in a single process only (the state is gathered on the host).
    """

    def __init__(self, experiment: Any, every: int, sinks: list[Sink], active: bool):
        self.experiment, self.every, self.sinks, self.active = experiment, every, sinks, active
        self._evaluator: evaluate.Evaluator | None = None

    def __call__(self, state: Any, update: int) -> Any:
        if not self.active:
            return state
        ex = self.experiment
        out = self.run(state, evaluate.POLICIES)
        summaries = {name: evaluate.summarise(result["returns"], result["lengths"]) for name, result in out.items()}
        rows = []
        for r in range(ex.num_runs):
            row = row_of(r, update, ex.spec.num_seeds, ex.steps_per_update)
            for name, summary in summaries.items():
                row[f"{name}_return"] = summary["return_mean"][r]
                row[f"{name}_length"] = summary["length_mean"][r]
            rows.append(row)
        for sink in self.sinks:
            sink.log(rows + mean_rows(rows), "eval")
        return state

    def run(self, state: Any, policies: tuple[str, ...]) -> dict[str, dict[str, np.ndarray]]:
        """Every run's `policies` over eval_episodes episodes per seed on its evaluation envs
        (`evaluate.eval_keys`: seed i of every sweep member plays the same ones)."""
        ex = self.experiment
        rows = np.arange(ex.num_runs) * ex.plan.env_share  # the first device's row of a run split over devices
        params, env_states = (jax.tree.map(lambda x: np.asarray(x)[rows], part)
                              for part in (state.params, state.env_state))
        keys = evaluate.eval_keys(ex.spec.seed, ex.spec.num_seeds, len(ex.members))
        if self._evaluator is None:
            self._evaluator = evaluate.Evaluator(ex.agent)
        return self._evaluator(params, env_states, keys, ex.spec.eval_episodes, policies)

    def greedy_due(self) -> bool:
        """Whether training's end evaluates the greedy policy (eval_episodes > 0, one process)."""
        return bool(self.experiment.spec.eval_episodes) and jax.process_count() == 1

    def greedy(self, state: Any, say: Callable[[str], None]) -> tuple[dict, list[list[float]]]:
        """Each run's greedy policy over eval_episodes fresh episodes: summary entries, and each sweep
        member's per-seed returns."""
        ex = self.experiment
        t0 = time.perf_counter()
        greedy = self.run(state, ("greedy",))["greedy"]["returns"]
        episodes = greedy.shape[1]
        returns = np.asarray(evaluate.summarise(greedy, greedy)["return_mean"]).reshape(len(ex.members),
                                                                                         ex.spec.num_seeds)
        say(f"greedy policy: return {nanmean(returns[0]):.2f} over {episodes} episodes per seed")
        out = {"final_greedy_return_mean": nanmean(returns[0]),
               "final_greedy_return_per_seed": [float(x) for x in returns[0]],
               "greedy_episodes": episodes, "eval_s": round(time.perf_counter() - t0, 3)}
        return out, [[float(x) for x in r] for r in returns]
