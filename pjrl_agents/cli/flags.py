"""Flags generated from dataclass fields: one flag per field, its help the field's docstring, its default shown.

`add_fields(group, Cls)` declares the flags and `read_fields(args, Cls)` reads back
the ones given (a flag left out reads as absent, so a default lives only in the
dataclass). How a field's flag is read follows from its default (and, for a
default of None, its annotation):

    bool         --name / --no-name
    int          a whole number, also written 5e6 or 1_000_000
    float, str   as written
    tuple        64,64 (ints), 0.8,1.25 (floats) or lr,ent_coef (names)
    dict         --name NAME=VALUE, repeatable: read back as [(name, text), ...]
    list         --name TEXT, repeatable (positional: one or more)

A field's `metadata` may say more: `flag` (the flag's own name, e.g. "set" for
`settings`), `metavar`, `choices`, `positional`, `flag: False` (no flag), and
`options: Cls` for a `dict | None` field turned on by `--name` whose keys are
`Cls`'s fields, each its own `--name-key` flag (W&B's `--wandb-project`).
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import itertools
import sys
import textwrap
import typing

from pjrl_agents.config import ConfigError, kind


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `pjrl: error: ...`, exit code 2."""

    def error(self, message: str) -> typing.NoReturn:
        print(f"pjrl: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """`{field: docstring}` from the string literal under each field of a dataclass (as tyro and Sphinx read them)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for stmt, after in itertools.pairwise(body):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
                docs[stmt.target.id] = " ".join(after.value.value.split())
    return docs


# ---------------------------------------------------------------- reading values from text


class BadValue(argparse.ArgumentTypeError, ValueError):
    """A flag's value that cannot be read; argparse shows its message."""


def integer(text: str) -> int:
    """An integer, also written as 5e6 or 1_000_000."""
    try:
        return int(text.replace("_", ""))
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            raise BadValue(f"{text!r} is not a whole number") from None
        if not value.is_integer():
            raise BadValue(f"{text!r} is not a whole number") from None
        return int(value)


def integers(text: str) -> tuple:
    """`64,64` (or `64 64`) as a tuple of integers."""
    return tuple(integer(v) for v in text.replace(",", " ").split())


def numbers(text: str) -> tuple:
    """`0.8,1.25` (or `0.8 1.25`) as a tuple of floats."""
    try:
        return tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise BadValue(f"{text!r}: give numbers, e.g. 0.8,1.25") from None


def names(text: str) -> tuple:
    """`lr,ent-coef` as the names `("lr", "ent_coef")`."""
    return tuple(v.strip().replace("-", "_") for v in text.split(",") if v.strip())


def boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
        raise BadValue(f"{text!r} is not true or false")
    return lowered in ("true", "1", "yes")


def scalar(text: str):
    """An env option's value: an integer, a number, true/false or else the text itself."""
    for convert in (integer, float, boolean):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


_BY_NAME: dict[str, typing.Callable[[str], typing.Any]] = {"bool": boolean, "int": integer, "float": float, "str": str}


def converter(default, annotation=None) -> typing.Callable[[str], typing.Any]:
    """How to read a field's value from text: from the kind of its default, or where that is None from its
    annotation (`str | None`), else as a whole number."""
    if isinstance(default, bool):
        return boolean
    if isinstance(default, tuple):
        if default and all(isinstance(v, str) for v in default):
            return names
        return numbers if any(isinstance(v, float) for v in default) else integers
    if isinstance(default, int):
        return integer
    if isinstance(default, float):
        return float
    if default is None:
        text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
        kinds = {part.strip() for part in text.split("|")} - {"None"}
        return _BY_NAME.get(kinds.pop(), integer) if len(kinds) == 1 else integer
    return str


def convert(name: str, text: str, default, flag: str):
    """`text` read as the flag of a setting with this default would; ConfigError naming `flag` if it cannot be."""
    try:
        return converter(default)(text)
    except ValueError:
        raise ConfigError(f"{flag} {name}={text!r}: expected {kind(default)}") from None


def pairs(items: list[str], flag: str) -> list[tuple[str, str]]:
    """`["lr=1e-3", ...]` as `[("lr", "1e-3"), ...]` (dashes in names read as underscores)."""
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"{flag} {item!r}: write NAME=VALUE")
        out.append((name.strip().replace("-", "_"), value))
    return out


# ---------------------------------------------------------------- flags from fields


def flag(name: str) -> str:
    """`num_seeds` -> `--num-seeds`."""
    return "--" + name.replace("_", "-")


def dest(field: dataclasses.Field, rename: dict | None = None) -> str:
    """The name a field's flag goes by (`--` + it, dashed): `rename`'s, the field's `flag`, else its own name."""
    return (rename or {}).get(field.name) or field.metadata.get("flag") or field.name


def flag_for(cls: type, name: str, rename: dict | None = None) -> str:
    """The flag of the field `name` of `cls`: `--env-option` for RunSpec's `env_options`."""
    return flag(dest({f.name: f for f in dataclasses.fields(cls)}[name], rename))


def flagged(cls: type, where: typing.Callable[[dataclasses.Field], bool] | None = None) -> list[dataclasses.Field]:
    """The fields of `cls` that have flags (and that `where` keeps)."""
    return [f for f in dataclasses.fields(cls)
            if f.metadata.get("flag", True) is not False and (where is None or where(f))]


def shown(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def add_fields(group, cls: type, values=None, rename: dict | None = None, where=None) -> None:
    """A flag for every field of the dataclass `cls` that has one; help from the field's docstring, the
    default shown from `values` (default: `cls()`); every flag reads None where it is not given."""
    values = cls() if values is None else values
    docs = field_docs(cls)
    for f in flagged(cls, where):
        _add(group, f, getattr(values, f.name), docs.get(f.name, ""), dest(f, rename))


def _add(group, f: dataclasses.Field, default, doc: str, name: str) -> None:
    meta, option = f.metadata, flag(name)
    if meta.get("positional"):
        group.add_argument(name, nargs="+" if isinstance(default, list) else None, help=doc,
                           metavar=meta.get("metavar"))
    elif "options" in meta:
        group.add_argument(option, dest=name, action=argparse.BooleanOptionalAction, default=None, help=doc)
        add_fields(group, meta["options"], rename=_prefixed(meta["options"], name))
    elif isinstance(default, (dict, list)):
        group.add_argument(option, dest=name, action="append", default=None, metavar=meta.get("metavar", "TEXT"),
                           help=f"{doc}; repeatable" if doc else "repeatable")
    else:
        help_text = doc if default is None else f"{doc} (default: {shown(default)})".strip()  # None: the doc says
        if isinstance(default, bool):
            group.add_argument(option, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            return
        read = converter(default, f.type)
        group.add_argument(option, dest=name, type=read, default=None, choices=meta.get("choices"),
                           metavar=meta.get("metavar", None if "choices" in meta else _metavar(read, default)),
                           help=help_text)


def _prefixed(cls: type, prefix: str) -> dict[str, str]:
    """The flags of an `options` field's keys: `wandb` + `project` -> `--wandb-project`."""
    return {g.name: f"{prefix}_{g.name}" for g in dataclasses.fields(cls)}


def _metavar(read, default) -> str:
    if isinstance(default, tuple):
        return {names: "A,B", numbers: "X,Y"}.get(read, "N,N")
    if default is None and read is integer:
        return "N"
    return {integer: "INT", float: "FLOAT"}.get(read, "STR")


def read_fields(args: argparse.Namespace, cls: type, rename: dict | None = None, where=None) -> dict:
    """`{field: value}` for each flag of `cls` given in `args` (dict fields as `[(name, text), ...]`; an
    `options` field as the dict of its keys, or None for `--no-name`)."""
    out = {}
    for f in flagged(cls, where):
        name = dest(f, rename)
        value = getattr(args, name, None)
        if value is None:
            continue
        if "options" in f.metadata:
            keys = read_fields(args, f.metadata["options"], rename=_prefixed(f.metadata["options"], name))
            value = dataclasses.asdict(f.metadata["options"](**keys)) if value else None
        elif _default_of(f) is dict:
            value = pairs(value, flag(name))
        out[f.name] = value
    return out


def _default_of(f: dataclasses.Field) -> type:
    """The type of a field's default value (`dict` for `field(default_factory=dict)`)."""
    return type(f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)


def settings_listing(algorithm, env_name: str) -> str:
    """Every setting of an algorithm with its default for `env_name`, as text (for --help of the others)."""
    config = algorithm.default_config(env_name)
    docs = field_docs(algorithm.config_class)
    lines = [f"{algorithm.name} settings (with --algo {algorithm.name}; defaults for {env_name}):"]
    for f in dataclasses.fields(config):
        lines.append(f"  {flag(f.name):26s} {docs.get(f.name, '')} (default: {shown(getattr(config, f.name))})")
    return "\n".join(lines)
