"""mkdocs hooks: the CLI reference generated from the real argument parser, each config's fields
generated from its dataclass (type, default, help), and the repository's pictures (videos/*.png,
experiments/results/*.png) copied into the site's img/ folder."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import re
import shutil
from pathlib import Path
from typing import Any

from rl_compress.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- cli-reference -->"
FIELDS = re.compile(r"<!-- config-fields: ([\w.]+) -->")


def _subparsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:  # argparse keeps its subparsers here; there is no public accessor
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices.items())
    return []


def cli_reference() -> str:
    """Every subcommand's ``--help``, as argparse prints it, one section each."""
    parser = build_parser()
    out = ["```text", parser.format_help().rstrip(), "```"]
    for name, sub in _subparsers(parser):
        nested = _subparsers(sub)
        for full, p in ([(f"{name} {n}", s) for n, s in nested] if nested else [(name, sub)]):
            out += [f"\n## rl-compress {full}\n", "```text", p.format_help().rstrip(), "```"]
    return "\n".join(out)


def config_fields(dotted: str) -> str:
    """A table of the fields of the config dataclass ``dotted`` (module.Class): name, type, default
    and the help text its CLI flag shows, with the values a string field takes."""
    module, name = dotted.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        choices = f.metadata.get("choices") or ()
        meaning = f.metadata.get("help", "") + (f" (one of: {', '.join(choices)})" if choices else "")
        rows.append(f"| `{f.name}` | `{f.type}` | `{f.default!r}` | {meaning.replace('|', '/')} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Put the generated CLI reference and config field tables where a page asks for them."""
    markdown = markdown.replace(MARKER, cli_reference()) if MARKER in markdown else markdown
    return FIELDS.sub(lambda m: config_fields(m.group(1)), markdown)


def on_post_build(config: Any, **kwargs: Any) -> None:
    """Copy the pictures the pages show (``<img src=".../img/NAME.png">``) into the site."""
    img = Path(config["site_dir"]) / "img"
    img.mkdir(parents=True, exist_ok=True)
    for pattern in ("videos/*.png", "experiments/results/*.png"):
        for path in ROOT.glob(pattern):
            shutil.copy2(path, img / path.name)
