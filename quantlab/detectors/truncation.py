"""truncation: the server cut the answer at max_tokens (finish_reason "length").

A capped answer is not wrong by itself (the budget may be too small for the question), but
every other verdict on it is provisional, and a quant that loops hits the cap where its
reference stops on its own. Severity warn, score 1; the evidence quotes how the answer
ends so a reader sees whether it stopped mid-sentence.
"""

from __future__ import annotations

from quantlab.detectors.context import Context
from quantlab.detectors.textnorm import snippet
from quantlab.records import Finding

NAME = "truncation"

#: How many trailing characters the evidence quotes.
TAIL_CHARS = 40


def check(ctx: Context) -> Finding | None:
    if not ctx.capped:
        return None
    budget = f" ({ctx.max_tokens})" if ctx.max_tokens else ""
    text = ctx.text.rstrip()
    tail = snippet(text, max(0, len(text) - TAIL_CHARS), width=TAIL_CHARS)
    ending = f"; ends …{tail}" if text else "; no text"
    return ctx.finding(NAME, "warn", 1.0, f"capped at max_tokens{budget}{ending}")
