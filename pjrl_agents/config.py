"""Algorithm settings: config fields and defaults, the checks every setting passes, and sweeps of them.

The bottom layer of pjrl_agents: algorithms, the run layer and the CLI all read it; it reads nothing of theirs.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


class ConfigError(ValueError):
    """A config that cannot work; the message names the field and what would work."""


def static(default):
    """A config field that fixes shapes or the program: static under jit, not sweepable."""
    return struct.field(pytree_node=False, default=default)


def make_config(config_class: type, env_defaults: dict, env_name: str | None, settings: dict) -> Any:
    """`config_class` with the env's defaults (if it has any) and then `settings` applied."""
    names = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(settings) - names)
    if unknown:
        label = config_class.__name__.removesuffix("Config")
        raise ConfigError(f"{label} has no setting {', '.join(unknown)}; settings: {', '.join(sorted(names))}")
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}  # JSON gives lists
    return config_class(**{**env_defaults.get(env_name or "", {}), **settings})


MAX_SIZE = 2**31 - 1
"""the largest size or count a setting may hold: step and update counters are int32 on the device"""


def kind(default) -> str:
    """How a setting with this default is written, in words."""
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "a whole number"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, tuple):
        return "whole numbers, as 64,64"
    return "text"


@dataclasses.dataclass(frozen=True)
class Interval:
    """Where a traced setting must lie: `Interval.parse("(0, inf)")`, `Interval.parse("[0, 1]")`.

    Checks (`contains`), population-based training (children clipped to `high`) and evolution strategies
    (the search space: log space above a 0 bound, logit space inside [0, 1]) all read it.
    """

    low: float
    high: float
    low_closed: bool = True
    high_closed: bool = True

    @classmethod
    def parse(cls, text: str) -> Interval:
        text = text.strip()
        if len(text) < 5 or text[0] not in "([" or text[-1] not in ")]" or text.count(",") != 1:
            raise ValueError(f"interval {text!r}: write it as (0, inf), [0, 1] and so on")
        low, high = (float(x) for x in text[1:-1].split(","))
        return cls(low, high, text[0] == "[", text[-1] == "]")

    def contains(self, value: float) -> bool:
        low_ok = value >= self.low if self.low_closed else value > self.low
        high_ok = value <= self.high if self.high_closed else value < self.high
        return low_ok and high_ok

    @property
    def unit(self) -> bool:
        """Whether this is [0, 1] (a share or a discount)."""
        return self == Interval(0.0, 1.0)

    @property
    def positive(self) -> bool:
        """Whether its values are above 0 with no upper end, (0, inf) or [0, inf)."""
        return self.low == 0 and math.isinf(self.high)

    def __str__(self) -> str:
        number = lambda x: "inf" if math.isinf(x) else f"{x:g}"
        return (f"{'[' if self.low_closed else '('}{number(self.low)}, {number(self.high)}"
                f"{']' if self.high_closed else ')'}")


def intervals(ranges: dict[str, str]) -> dict[str, Interval]:
    """`{setting: Interval}` from `{setting: "(0, inf)"}`, as an algorithm module writes its ranges."""
    return {name: Interval.parse(text) for name, text in ranges.items()}


def check_settings(config: Any, ranges: dict[str, Interval] | None = None) -> None:
    """Every setting of `config` is of its field's kind, finite, and (for whole numbers) at most MAX_SIZE;
    the numbers named in `ranges` lie in their `Interval`.

    Raises ConfigError naming the setting and what would work. Values that are
    arrays (traced or stacked sweeps) are checked where they are concrete.
    """
    for f in dataclasses.fields(config):
        value, default = getattr(config, f.name), f.default
        if hasattr(value, "shape") and hasattr(value, "dtype"):  # an array: check its values as numbers
            try:
                values = [float(v) for v in np.asarray(value).ravel()]
            except Exception:  # noqa: BLE001 - traced: nothing to check here
                continue
        else:
            values = [value]
        for v in values:
            _check_value(f.name, v, default)
            if ranges and f.name in ranges and not ranges[f.name].contains(v):
                raise ConfigError(f"{f.name}={v:g} is out of range: it must lie in {ranges[f.name]}")


def _check_value(name: str, value, default) -> None:
    wrong = ConfigError(f"{name}={value!r}: expected {kind(default)}")
    if isinstance(default, bool):
        if not isinstance(value, (bool, int)) or (isinstance(value, int) and value not in (0, 1)):
            raise wrong
    elif isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong
        if not math.isfinite(value):
            raise ConfigError(f"{name}={value}: must be a finite number")
        if isinstance(default, int):
            if value != int(value):
                raise ConfigError(f"{name}={value}: must be a whole number")
            if abs(value) > MAX_SIZE:
                raise ConfigError(f"{name}={value:.4g} is too large: at most {MAX_SIZE:,} (step and "
                                  "update counters are 32-bit integers on the device)")
    elif isinstance(default, tuple):
        if not isinstance(value, tuple) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise wrong
        if any(not 1 <= v <= MAX_SIZE for v in value):
            raise ConfigError(f"{name}={','.join(map(str, value))}: every width must be a whole number >= 1")
    elif isinstance(default, str) and not isinstance(value, str):
        raise wrong


def require_positive(config: Any, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"{name} must be a positive number, got {value!r}")


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def numeric_fields(config: Any) -> list[str]:
    """Fields of a config dataclass that are traced (sweepable) numbers."""
    return [f.name for f in dataclasses.fields(config) if f.metadata.get("pytree_node", True)]


def stack_configs(configs: list) -> Any:
    """One config whose numeric leaves are `(M,)` arrays: vmap over it trains M members."""
    first = configs[0]
    static = [f.name for f in dataclasses.fields(first) if not f.metadata.get("pytree_node", True)]
    for c in configs[1:]:
        for name in static:
            if getattr(c, name) != getattr(first, name):
                raise ConfigError(f"{name} fixes array shapes and cannot differ inside one sweep; "
                                  "run separate sweeps for each value")
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x, jnp.float32) for x in xs]), *configs)
