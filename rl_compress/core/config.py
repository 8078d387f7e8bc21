"""Config dataclass helpers: fields that carry their help text, turned into CLI flags."""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from rl_compress.core.errors import UserError


def option(help: str, choices: Sequence[str] = (), **kw: Any) -> Any:
    """A dataclass field with its ``--help`` text (``default=`` in ``kw``) and, for a string, the
    values it takes (``choices``: listed in ``--help``, others refused by the command line)."""
    return dataclasses.field(metadata={"help": help, "choices": tuple(choices)}, **kw)


def add_config_flags(parser: argparse.ArgumentParser, cls: type, skip: Sequence[str] = ()) -> None:
    """Add one ``--flag`` per dataclass field (help from the field's metadata, default shown)."""
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        help_ = f"{f.metadata.get('help', '')} (default: {f.default})"
        if f.type in (bool, "bool"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif f.metadata.get("choices"):
            parser.add_argument(flag, choices=f.metadata["choices"], default=None, help=help_)
        else:
            typ = {"int": int, "float": float, "str": str}.get(str(f.type), str)
            parser.add_argument(flag, type=typ, default=None, help=help_, metavar=f.name.upper())


def config_from_args(cls: type, args: argparse.Namespace, **fixed: Any) -> Any:
    """Build a config dataclass from parsed flags (unset flags keep the defaults)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
    values.update(fixed)
    return cls(**values)


def flag_name(name: str) -> str:
    """The CLI flag of a config field (``buffer_size`` -> ``--buffer-size``)."""
    return "--" + name.replace("_", "-")


def check_types(cfg: Any) -> None:
    """Refuse a config field whose value has the wrong type or is not a finite number (as a study
    YAML or a Python caller can give: ``steps: abc``, ``lr: .nan``, ``double: 1``)."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        kind = str(f.type)
        if kind == "bool":
            ok = isinstance(value, bool)
        elif kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        elif kind == "str":
            ok = isinstance(value, str)
        else:
            ok = True
        if not ok:
            what = {"float": "a finite number", "int": "an integer", "bool": "true or false", "str": "a string"}[kind]
            raise UserError(f"{flag_name(f.name)} must be {what}, got {value!r}")


def check_ranges(cfg: Any, positive: Sequence[str] = (), non_negative: Sequence[str] = (),
                 unit: Sequence[str] = ()) -> None:
    """Refuse numbers out of range with one line: ``positive`` > 0, ``non_negative`` >= 0,
    ``unit`` in [0, 1]. Types are checked first (``check_types``)."""
    check_types(cfg)
    for name in positive:
        if getattr(cfg, name) <= 0:
            raise UserError(f"{flag_name(name)} must be positive, got {getattr(cfg, name)}")
    for name in non_negative:
        if getattr(cfg, name) < 0:
            raise UserError(f"{flag_name(name)} must be >= 0, got {getattr(cfg, name)}")
    for name in unit:
        if not 0 <= getattr(cfg, name) <= 1:
            raise UserError(f"{flag_name(name)} must be in [0, 1], got {getattr(cfg, name)}")


def resumed_config(cfg: Any, saved: dict[str, Any], keep: Sequence[str],
                   before: dict[str, Any] | None = None, **fixed: Any) -> Any:
    """The config a resumed run goes on with: a new config holding the run's own settings
    (``saved``, from its checkpoint), except the fields in ``keep`` (``steps`` and bookkeeping),
    which stay this call's; ``before`` gives what a run saved before a field existed ran with (used
    where ``saved`` lacks the field, instead of today's default); ``fixed`` overrides all."""
    names = {f.name for f in dataclasses.fields(cfg)}
    own = {k: v for k, v in {**(before or {}), **saved}.items() if k in names and k not in keep}
    return dataclasses.replace(cfg, **{**own, **fixed})
