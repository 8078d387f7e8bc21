"""The README a newcomer reads: short, every link and picture it points to exists, and the commands of
its tour name subcommands and flags the CLI has; the docs site as built: no broken picture or link."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

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


class _Refs(HTMLParser):
    """The img src and a href values of one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"img": "src", "a": "href"}.get(tag)
        self.refs += [v for k, v in attrs if k == wanted and v]


def _local_target(page: Path, ref: str, site: Path) -> Path | None:
    """The file a relative link of ``page`` points to in the built site (None for external links)."""
    parts = urlsplit(ref)
    if parts.scheme or parts.netloc or not parts.path:
        return None
    target = (site / parts.path.lstrip("/")) if parts.path.startswith("/") else (page.parent / unquote(parts.path))
    return target / "index.html" if target.is_dir() or parts.path.endswith("/") else target


def test_built_site_has_no_broken_image_or_link(tmp_path: Path) -> None:
    """The docs site as mkdocs builds it: every picture and every internal link of every page resolves
    to a file of the site (mkdocs --strict checks markdown links, not raw <img> tags)."""
    site = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, timeout=600)
    assert res.returncode == 0, res.stderr
    pages = sorted(site.rglob("*.html"))
    broken, images = [], 0
    for page in pages:
        parser = _Refs()
        parser.feed(page.read_text())
        for ref in parser.refs:
            target = _local_target(page, ref, site)
            images += target is not None and target.suffix in (".png", ".gif", ".jpg", ".svg")
            if target is not None and not target.exists():
                broken.append(f"{page.relative_to(site)} -> {ref}")
    assert len(pages) >= 12 and images >= 6
    assert broken == []
