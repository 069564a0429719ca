"""Aggregate scores over runs and tasks, with stratified-bootstrap confidence intervals.

The statistics of Agarwal et al. (2021), "Deep reinforcement learning at the
edge of the statistical precipice", under the conventions of their `rliable`
library, so the numbers agree with it:

* a score matrix is a finite float array of shape `(runs, tasks)` (runs are
  seeds, tasks are envs), usually normalised first (`normalise`);
* `iqm` is the interquartile mean of all entries flattened,
  `scipy.stats.trim_mean(scores, 0.25, axis=None)`, which cuts `int(0.25 * n)`
  entries from each end; `mean` and `median` aggregate the per-task means over
  runs; `optimality_gap` is `threshold - mean(min(scores, threshold))`;
* a bootstrap resample draws, for each task independently, `runs` of that
  task's runs with replacement (stratified by task; tasks are never mixed);
  intervals are the percentile intervals of the resampled aggregate
  (`np.percentile`, linear interpolation);
* a performance profile at `tau` is the fraction of runs scoring strictly above
  `tau`, averaged over tasks (rliable's run-score distribution).

Resampling uses `np.random.default_rng(seed)`, so the same seed gives the same
intervals (rliable draws from numpy's global generator, so its intervals match
these only up to Monte-Carlo error).

    >>> raw = np.array([[120., 40.], [150., 55.], [90., 35.], [160., 60.], [130., 50.]])  # 5 seeds x 2 envs
    >>> scores = normalise(raw, low=[20., 10.], high=[170., 60.])  # random policy -> 0, expert -> 1
    >>> point, low, high = stratified_bootstrap(scores, "iqm", reps=2000, seed=0)
    >>> round(point, 3), round(low, 3), round(high, 3)
    (0.761, 0.606, 0.878)
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import overload

import numpy as np
from scipy import stats as _scipy_stats

Aggregate = Callable[[np.ndarray], float]

_CHUNK_ENTRIES = 1 << 22
"""resampled entries (resamples x runs x tasks) held in memory at once"""


def _matrix(scores: np.ndarray) -> np.ndarray:
    """`scores` as a validated `(runs, tasks)` float64 array."""
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"scores must be a (runs, tasks) matrix; got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"scores is empty (shape {x.shape}); need at least one run and one task")
    if not np.all(np.isfinite(x)):
        raise ValueError("scores contain NaN or inf; aggregate only finite scores")
    return x


def _batch_mean(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=-2).mean(axis=-1)


def _batch_median(x: np.ndarray) -> np.ndarray:
    return np.median(x.mean(axis=-2), axis=-1)


def _batch_iqm(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(*x.shape[:-2], -1)
    return np.asarray(_scipy_stats.trim_mean(flat, 0.25, axis=-1))


def _batch_optimality_gap(x: np.ndarray, threshold: float = 1.0) -> np.ndarray:
    flat = x.reshape(*x.shape[:-2], -1)
    return threshold - np.minimum(flat, threshold).mean(axis=-1)


def _batch_profile(x: np.ndarray, taus: np.ndarray) -> np.ndarray:
    n = x.shape[-2] * x.shape[-1]
    flat = x.reshape(*x.shape[:-2], n)
    return np.stack([np.count_nonzero(flat > tau, axis=-1) / n for tau in taus], axis=-1)


def mean(scores: np.ndarray) -> float:
    """Mean over tasks of each task's mean over runs."""
    return float(_batch_mean(_matrix(scores)))


def median(scores: np.ndarray) -> float:
    """Median over tasks of each task's mean over runs."""
    return float(_batch_median(_matrix(scores)))


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of all entries: `trim_mean(scores, 0.25, axis=None)`."""
    return float(_batch_iqm(_matrix(scores)))


def optimality_gap(scores: np.ndarray, threshold: float = 1.0) -> float:
    """How far scores fall short of `threshold` on average: `threshold - mean(min(scores, threshold))`."""
    return float(_batch_optimality_gap(_matrix(scores), float(threshold)))


AGGREGATES: dict[str, Aggregate] = {"mean": mean, "median": median, "iqm": iqm, "optimality_gap": optimality_gap}
"""the aggregates `interval_estimates` reports, by name, in order"""

_BATCHED: dict[Callable, Callable[[np.ndarray], np.ndarray]] = {
    mean: _batch_mean, median: _batch_median, iqm: _batch_iqm, optimality_gap: _batch_optimality_gap}


def _resolve(aggregate: str | Aggregate) -> Aggregate:
    if isinstance(aggregate, str):
        if aggregate not in AGGREGATES:
            raise ValueError(f"unknown aggregate {aggregate!r}; choose from {', '.join(AGGREGATES)}")
        return AGGREGATES[aggregate]
    if not callable(aggregate):
        raise ValueError(f"aggregate must be a name or a callable; got {aggregate!r}")
    return aggregate


def _check_bootstrap(reps: int, confidence: float | None = None) -> None:
    if int(reps) != reps or reps < 1:
        raise ValueError(f"reps must be a positive integer; got {reps!r}")
    if confidence is not None and not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1; got {confidence!r}")


def _samples(x: np.ndarray, batched: Callable[[np.ndarray], np.ndarray] | None,
             aggregate: Callable[[np.ndarray], object], reps: int, seed: int) -> np.ndarray:
    """Per-resample values of the aggregate on `reps` stratified resamples of the validated matrix `x`."""
    runs, tasks = x.shape
    rng = np.random.default_rng(seed)
    columns = np.arange(tasks)
    chunk = max(1, _CHUNK_ENTRIES // x.size)
    out = []
    for start in range(0, reps, chunk):
        rows = rng.integers(0, runs, size=(min(chunk, reps - start), runs, tasks))
        resamples = x[rows, columns]
        if batched is not None:
            out.append(np.asarray(batched(resamples), dtype=np.float64))
        else:
            out.append(np.asarray([np.asarray(aggregate(r), dtype=np.float64) for r in resamples]))
    return np.concatenate(out, axis=0)


def bootstrap_samples(scores: np.ndarray, aggregate: str | Aggregate, reps: int = 2000, seed: int = 0) -> np.ndarray:
    """The aggregate on each of `reps` stratified resamples, shape `(reps,)` (or `(reps, k)` for a vector aggregate).

    Each resample keeps the task columns and draws, for every task
    independently, `runs` of that task's runs with replacement. The built-in
    aggregates run batched over resamples; any other callable is applied to
    each `(runs, tasks)` resample in turn.
    """
    x = _matrix(scores)
    _check_bootstrap(reps)
    fn = _resolve(aggregate)
    return _samples(x, _BATCHED.get(fn), fn, int(reps), seed)


def _percentiles(values: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = (1.0 - confidence) / 2
    low, high = np.percentile(values, [100 * alpha, 100 * (1.0 - alpha)], axis=0)
    return low, high


def _scalar(v: np.ndarray) -> float | np.ndarray:
    return float(v) if np.ndim(v) == 0 else v


@overload
def stratified_bootstrap(scores: np.ndarray, aggregate: str, reps: int = 2000, confidence: float = 0.95,
                         seed: int = 0) -> tuple[float, float, float]: ...


@overload
def stratified_bootstrap(scores: np.ndarray, aggregate: Aggregate, reps: int = 2000, confidence: float = 0.95,
                         seed: int = 0) -> tuple[float | np.ndarray, float | np.ndarray, float | np.ndarray]: ...


def stratified_bootstrap(scores: np.ndarray, aggregate: str | Aggregate, reps: int = 2000, confidence: float = 0.95,
                         seed: int = 0) -> tuple[float | np.ndarray, float | np.ndarray, float | np.ndarray]:
    """`(point, low, high)`: the aggregate on the data and its percentile interval over stratified resamples.

    `aggregate` is a name in `AGGREGATES` or a callable on a `(runs, tasks)`
    matrix; `confidence` is the interval's coverage, e.g. 0.95 for the 2.5th to
    97.5th percentiles. A matrix with one run gives `low == high == point`.
    A vector-valued aggregate gives arrays, with pointwise intervals.
    """
    x = _matrix(scores)
    _check_bootstrap(reps, confidence)
    fn = _resolve(aggregate)
    point = np.asarray(fn(x), dtype=np.float64)
    low, high = _percentiles(_samples(x, _BATCHED.get(fn), fn, int(reps), seed), confidence)
    return _scalar(point), _scalar(low), _scalar(high)


def interval_estimates(scores: np.ndarray, reps: int = 2000, confidence: float = 0.95, seed: int = 0,
                       aggregates: Sequence[str] | None = None) -> dict[str, tuple[float, float, float]]:
    """`{name: (point, low, high)}` for every aggregate in `AGGREGATES`, or for those named in `aggregates`.

    Each aggregate gets its own resamples from the same `seed`, so adding or
    dropping one leaves the others' intervals unchanged.
    """
    names = list(AGGREGATES) if aggregates is None else list(aggregates)
    for name in names:
        _resolve(name)
    return {name: stratified_bootstrap(scores, name, reps=reps, confidence=confidence, seed=seed) for name in names}


def _taus(taus: np.ndarray | Sequence[float] | float) -> np.ndarray:
    t = np.atleast_1d(np.asarray(taus, dtype=np.float64))
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"taus must be a non-empty 1-D sequence of thresholds; got shape {t.shape}")
    if np.any(np.isnan(t)):
        raise ValueError("taus contain NaN")
    return t


def performance_profile(scores: np.ndarray, taus: np.ndarray | Sequence[float] | float) -> np.ndarray:
    """For each `tau`, the fraction of runs scoring strictly above it, averaged over tasks; shape `(len(taus),)`."""
    return _batch_profile(_matrix(scores), _taus(taus))


def performance_profile_ci(scores: np.ndarray, taus: np.ndarray | Sequence[float] | float, reps: int = 2000,
                           confidence: float = 0.95, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(profile, low, high)`: `performance_profile` and its pointwise percentile interval over stratified resamples."""
    x = _matrix(scores)
    t = _taus(taus)
    _check_bootstrap(reps, confidence)
    profile = _batch_profile(x, t)

    def batched(r: np.ndarray) -> np.ndarray:
        return _batch_profile(r, t)

    low, high = _percentiles(_samples(x, batched, batched, int(reps), seed), confidence)
    return profile, low, high


def normalise(scores: np.ndarray, low: float | np.ndarray, high: float | np.ndarray) -> np.ndarray:
    """`(scores - low) / (high - low)`; `low` and `high` broadcast against `scores`, e.g. one per task.

    Typically `low` is a random policy's score and `high` a reference (human,
    expert) score, so 0 means random and 1 means the reference.
    """
    s = np.asarray(scores, dtype=np.float64)
    lo = np.asarray(low, dtype=np.float64)
    hi = np.asarray(high, dtype=np.float64)
    span = hi - lo
    if np.any(span == 0):
        raise ValueError("normalise needs high != low for every task; got equal bounds")
    return (s - lo) / span
