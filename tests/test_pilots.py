"""The research probes in experiments/pilots that the docs cite: each still imports against the
package and parses its command line; the cheapest one runs for real on shipped agents."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PILOTS = sorted((ROOT / "experiments" / "pilots").glob("*.py"))


def test_every_pilot_is_cited_by_the_docs() -> None:
    docs = "".join(p.read_text() for p in (ROOT / "docs").rglob("*.md"))
    assert len(PILOTS) == 12
    for path in PILOTS:
        assert f"experiments/pilots/{path.name}" in docs, path.name


@pytest.mark.parametrize("path", PILOTS, ids=[p.stem for p in PILOTS])
def test_pilot_help(path: Path) -> None:
    res = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: ") and "Traceback" not in res.stderr


def test_action_probe_runs_on_shipped_agents() -> None:
    res = subprocess.run([sys.executable, "experiments/pilots/action_probe.py", "agents/breakout/gmp32-w5",
                          "--steps", "40"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    m = re.match(r"320 states; the student takes the teacher's action on (\d\.\d{3})", lines[0])
    assert m and 0.0 <= float(m.group(1)) <= 1.0, lines[0]
    assert lines[1].endswith("NOOP / FIRE / RIGHT / LEFT")  # Breakout's minimal action set
    shares = [float(x.split()[-1]) for x in lines[-1].split(": ", 1)[1].split(", ")]
    assert len(shares) == 4 and abs(sum(shares) - 1.0) < 0.01
