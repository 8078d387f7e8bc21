"""The README a newcomer reads: short, every link and picture it points to exists, and the commands of
its tour name subcommands and flags the CLI has."""

from __future__ import annotations

import re
from pathlib import Path

from rl_compress.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_is_short() -> None:
    assert len(README.encode()) < 12 * 1024


def test_readme_links_exist() -> None:
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    assert len(links) >= 10
    for link in links:
        assert (ROOT / link).exists(), link


def test_readme_commands_parse() -> None:
    """Each `.venv/bin/rl-compress ...` command of the README parses with the real parser."""
    text = README.replace("\\\n", " ")
    commands = re.findall(r"\.venv/bin/rl-compress ([^#\n]+)", text)
    assert len(commands) >= 6
    parser = build_parser()
    for cmd in commands:
        args = parser.parse_args(cmd.split())
        assert callable(args.func), cmd
