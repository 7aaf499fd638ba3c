"""runaway: quantlab itself stopped reading the answer (the lane's ``cut_off``).

The server went on far past what was asked (content chunks or usage beyond 2 x max_tokens
+ 64, or more bytes than ``max_answer_bytes``), which a server that honours ``max_tokens``
never does. The text up to the cut is kept and judged by the other detectors; this one
says the answer is not the server's whole answer and why. Severity fail, score 1.
"""

from __future__ import annotations

from quantlab.detectors.context import Context
from quantlab.records import Finding

NAME = "runaway"


def check(ctx: Context) -> Finding | None:
    if not ctx.cut_off:
        return None
    return ctx.finding(NAME, "fail", 1.0, f"{ctx.cut_off}; {len(ctx.text)} characters kept")
