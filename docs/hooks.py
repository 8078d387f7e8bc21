"""mkdocs hooks: the CLI reference generated from the real argument parser, and the repository's
pictures (videos/*.png, experiments/results/*.png) copied into the site's img/ folder."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from rl_compress.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- cli-reference -->"


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


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Put the generated CLI reference where a page asks for it."""
    return markdown.replace(MARKER, cli_reference()) if MARKER in markdown else markdown


def on_post_build(config: Any, **kwargs: Any) -> None:
    """Copy the pictures the pages show (``<img src=".../img/NAME.png">``) into the site."""
    img = Path(config["site_dir"]) / "img"
    img.mkdir(parents=True, exist_ok=True)
    for pattern in ("videos/*.png", "experiments/results/*.png"):
        for path in ROOT.glob(pattern):
            shutil.copy2(path, img / path.name)
