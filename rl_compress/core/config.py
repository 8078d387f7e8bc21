"""Config dataclass helpers: fields that carry their help text, turned into CLI flags."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from rl_compress.core.errors import UserError, arg_name, first_line

MAX_SEED = 2**30  # seeds of consecutive envs and episodes (seed + i) stay in ALE's 32-bit range
MAX_STEPS = 10**10  # 40 billion frames: past any published Atari budget
MAX_FRAMES = 10**7  # agent steps one command plays and keeps (record, localize, push)
MAX_ENVS = 1024  # emulators stepped together; PQN and EnvPool runs use at most a few hundred
UPPER = {"seed": MAX_SEED, "eval_seed": MAX_SEED, "steps": MAX_STEPS, "envs": MAX_ENVS}  # fields bounded by name


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type`` that takes an integer in [low, high] and refuses others in one line."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in [{low}, {high}], got {value}")
        return value

    return parse


def number_in(low: float, high: float = math.inf, low_open: bool = False) -> Callable[[str], float]:
    """An argparse ``type`` that takes a finite number in [low, high] ((low, high] with
    ``low_open``) and refuses others, NaN and infinities included, in one line."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not math.isfinite(value) or not (low < value if low_open else low <= value) or value > high:
            where = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
            raise argparse.ArgumentTypeError(f"must be a finite number in {where}, got {text}")
        return value

    return parse


def check_int(name: str, value: Any, low: int, high: int) -> int:
    """A Python argument that must be an integer in [low, high]; UserError naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserError(f"{name} must be an integer from {low} to {high}, got {value!r}")
    return value


def check_number(name: str, value: Any, low: float, high: float) -> float:
    """A Python argument that must be a finite number in [low, high]; UserError naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise UserError(f"{name} must be a number from {low} to {high}, got {value!r}")
    return float(value)


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


def apply_config_file(args: argparse.Namespace, classes: Sequence[type], extra: Sequence[str] = ()) -> None:
    """Fill the flags that the command line does not give from ``args.config``, a YAML mapping of
    settings (names as in the card's config, ``lr`` or ``buffer_size``; dashes allowed), as RL Zoo's
    hyperparameter files are used: flags given on the command line win. Keys that no config class of
    ``classes`` has (nor one of ``extra``, other flags of the command) are refused in one line."""
    path = getattr(args, "config", None)
    if path is None:
        return
    doc = read_yaml_mapping(Path(path), "a config file")
    fields = {f.name: f for cls in classes for f in dataclasses.fields(cls)}
    known = set(fields) | set(extra)
    settings = {str(k).replace("-", "_"): v for k, v in doc.items()}
    unknown = sorted(k for k in settings if k not in known)
    if unknown:
        raise UserError(f"{path}: unknown settings {', '.join(unknown)} (see --help for the names)")
    for name, value in settings.items():
        kind = str(fields[name].type) if name in fields else "str"
        if isinstance(value, str) and kind in ("int", "float"):  # YAML reads 1e-4 (no dot) as a string
            with contextlib.suppress(ValueError):  # else refused with its flag's name by the config's checks
                value = {"int": int, "float": float}[kind](value)
        if getattr(args, name, None) is None:
            setattr(args, name, value)


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML file's top-level mapping (``safe_load``: no tags run), or one line saying what is wrong."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({first_line(e)})") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: {what} is a YAML mapping of names to values")
    return doc


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
            ok = isinstance(value, str) or f.name == "device"  # a torch.device too: resolved where it is used
        else:
            ok = True
        if not ok:
            what = {"float": "a finite number", "int": "an integer", "bool": "true or false", "str": "a string"}[kind]
            raise UserError(f"{arg_name(f.name)} must be {what}, got {value!r}")


def check_ranges(cfg: Any, positive: Sequence[str] = (), non_negative: Sequence[str] = (),
                 unit: Sequence[str] = ()) -> None:
    """Refuse numbers out of range with one line: ``positive`` > 0, ``non_negative`` >= 0,
    ``unit`` in [0, 1], and the fields named in ``UPPER`` (seeds, steps, envs) at most their bound.
    Types are checked first (``check_types``)."""
    check_types(cfg)
    for name, high in UPPER.items():
        if getattr(cfg, name, 0) > high:
            raise UserError(f"{arg_name(name)} must be at most {high}, got {getattr(cfg, name)}")
    for name in positive:
        if getattr(cfg, name) <= 0:
            raise UserError(f"{arg_name(name)} must be positive, got {getattr(cfg, name)}")
    for name in non_negative:
        if getattr(cfg, name) < 0:
            raise UserError(f"{arg_name(name)} must be >= 0, got {getattr(cfg, name)}")
    for name in unit:
        if not 0 <= getattr(cfg, name) <= 1:
            raise UserError(f"{arg_name(name)} must be in [0, 1], got {getattr(cfg, name)}")


def resumed_config(cfg: Any, saved: dict[str, Any], keep: Sequence[str],
                   before: dict[str, Any] | None = None, **fixed: Any) -> Any:
    """The config a resumed run goes on with: a new config holding the run's own settings
    (``saved``, from its checkpoint), except the fields in ``keep`` (``steps`` and bookkeeping),
    which stay this call's; ``before`` gives what a run saved before a field existed ran with (used
    where ``saved`` lacks the field, instead of today's default); ``fixed`` overrides all."""
    names = {f.name for f in dataclasses.fields(cfg)}
    own = {k: v for k, v in {**(before or {}), **saved}.items() if k in names and k not in keep}
    return dataclasses.replace(cfg, **{**own, **fixed})
