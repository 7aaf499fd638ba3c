"""Text helpers shared by the Markdown report, the risk brief and the verdict: how a rate,
a difference in points or a table cell is written, so every report writes them alike."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

VERDICT_WORDS = {
    "candidate_worse": "worse",
    "candidate_better": "better",
    "no_difference": "no difference detected",
    "too_few": "not enough cases to tell",
    "no_pairs": "no pairs",
}


def cell(value: Any) -> str:
    """A table cell: pipes escaped, newlines folded, None as an en dash."""
    if value is None or value == "":
        return "–"
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "") -> list[str]:
    """A GitHub-flavoured Markdown table; ``align`` is one letter per column (l/r)."""
    rows = list(rows)
    marks = []
    for i, _ in enumerate(headers):
        a = align[i] if i < len(align) else "l"
        marks.append("---:" if a == "r" else "---")
    out = ["| " + " | ".join(cell(h) for h in headers) + " |", "| " + " | ".join(marks) + " |"]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return out


def fence(text: str, lang: str = "text", max_lines: int = 8) -> list[str]:
    """A fenced block that cannot be broken by backticks in ``text`` (the fence is longer
    than any run inside), cut to ``max_lines`` lines."""
    lines = (text or "").splitlines() or [""]
    if len(lines) > max_lines:
        lines = [*lines[:max_lines], f"… ({len(lines) - max_lines} more lines)"]
    longest = max((len(m) for m in re.findall(r"`+", text or "")), default=0)
    ticks = "`" * max(3, longest + 1)
    return [f"{ticks}{lang}", *lines, ticks]


def pct(x: float | None, nd: int = 0) -> str:
    return "–" if x is None else f"{x * 100:.{nd}f} %"


def rate_cell(p: dict[str, Any] | None) -> str:
    """'7/8 · 88 % (53–98)'."""
    if not p or not p.get("n"):
        return "–"
    return (
        f"{p['k']}/{p['n']} · {p['rate'] * 100:.0f} % ({p['low'] * 100:.0f}–{p['high'] * 100:.0f})"
    )


def num(x: float | None, nd: int = 0, unit: str = "") -> str:
    if x is None:
        return "–"
    return f"{x:,.{nd}f}{unit}"


def diff_points(d: float | None) -> str:
    if d is None:
        return "–"
    v = round(d * 100)
    return f"{'+' if v > 0 else '−' if v < 0 else '±'}{abs(v)} pts"
