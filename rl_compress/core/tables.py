"""Result tables as text: CSV and markdown from rows of dicts (study results, the agents table,
localization scores). Standard library only, so that any module can use it cheaply."""

from __future__ import annotations

import csv
import io
from typing import Any


def rows_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """CSV text of ``rows`` with a header of ``columns`` (other keys are left out)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def rows_markdown(rows: list[dict[str, Any]], columns: list[str], code: tuple[str, ...] = ()) -> str:
    """A markdown table of ``rows`` over ``columns``: floats to 4 significant digits (whole numbers
    from 1,000 up, never in exponent form), None empty,
    strings as they are; values of the ``code`` columns in code quotes."""
    md = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [f"`{r[c]}`" if c in code and r.get(c) else _fmt(r.get(c)) for c in columns]
        md.append("| " + " | ".join(cells) + " |")
    return "\n".join(md) + "\n"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    return "" if v is None else str(v)
