"""Config dataclass helpers: fields that carry their help text, turned into CLI flags."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Sequence


def option(help: str, **kw: Any) -> Any:
    """A dataclass field with its ``--help`` text (``default=`` in ``kw``)."""
    return dataclasses.field(metadata={"help": help}, **kw)


def add_config_flags(parser: argparse.ArgumentParser, cls: type, skip: Sequence[str] = ()) -> None:
    """Add one ``--flag`` per dataclass field (help from the field's metadata, default shown)."""
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        help_ = f"{f.metadata.get('help', '')} (default: {f.default})"
        if f.type in (bool, "bool"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            typ = {"int": int, "float": float, "str": str}.get(str(f.type), str)
            parser.add_argument(flag, type=typ, default=None, help=help_, metavar=f.name.upper())


def config_from_args(cls: type, args: argparse.Namespace, **fixed: Any) -> Any:
    """Build a config dataclass from parsed flags (unset flags keep the defaults)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
    values.update(fixed)
    return cls(**values)
