"""One exchange as Markdown: the prompt, every lane's whole answer, its numbers and flags.

What the chat copies to the clipboard (F9) and exports to a file (Ctrl+S), so a
person can paste a side-by-side comparison into an issue or a chat. Answers are written
whole (not cut as in the session report) and through :func:`quantlab.textsafe.safe_text`:
a file that is ``cat``-ed, or a clipboard pasted into a terminal, must not carry a
server's escape sequences.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from quantlab.records import Endpoint, Exchange, LaneResult
from quantlab.reports.fmt import fence
from quantlab.textsafe import safe_line, safe_text

#: No line cap on a fenced answer: the export is the whole text.
WHOLE = 10**9


def _ms(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:.0f} ms" if v < 10_000 else f"{v / 1000:.1f} s"


def lane_line(r: LaneResult) -> str:
    """``finish stop · 64 tokens · TTFT 120 ms · 48.5 tok/s · e2e 1.4 s``."""
    t = r.timing
    state = "stopped before the end" if r.stopped else f"finish {r.finish_reason or '–'}"
    parts = [state]
    if t.output_tokens is not None:
        parts.append(f"{t.output_tokens} tokens" + (" (counted)" if t.tokens_counted else ""))
    parts.append(f"TTFT {_ms(t.ttft_ms)}")
    if t.tokens_per_s is not None:
        parts.append(f"{t.tokens_per_s:.1f} tok/s")
    parts.append(f"e2e {_ms(t.e2e_ms)}")
    return " · ".join(parts)


def answer_block(r: LaneResult) -> list[str]:
    """A lane's answer, fenced, whole."""
    return fence(safe_text(r.text), "text", WHOLE) if r.text else ["*(no text)*"]


def exchange_markdown(exchange: Exchange, endpoints: Sequence[Endpoint] = ()) -> str:
    """The exchange as a Markdown document (lanes in the exchange's order)."""
    by_name = {e.name: e for e in endpoints}
    p = exchange.params
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(exchange.started_at))
    out = [f"# Exchange {exchange.id}", ""]
    facts = [f"- sent: {when} · source: {safe_line(exchange.source)}"]
    facts.append(
        f"- params: temperature {p.temperature:g} · top_p {p.top_p:g} · "
        f"max_tokens {p.max_tokens} · seed {p.seed if p.seed is not None else '–'}"
    )
    if p.system_prompt:
        facts.append(f"- system prompt: {safe_line(p.system_prompt)}")
    turns = max(
        (sum(m.get("role") == "user" for m in msgs) for msgs in exchange.messages.values()),
        default=1,
    )
    if turns > 1:
        facts.append(f"- turn {turns} of a conversation (earlier turns are in the session)")
    if exchange.meta.get("stopped"):
        facts.append("- stopped before every lane had finished")
    if exchange.meta.get("retry_of"):
        again = safe_line(str(exchange.meta["retry_of"]))
        replaces = (
            " (replaces it in the conversation)" if exchange.meta.get("regenerated_from") else ""
        )
        facts.append(f"- the prompt of exchange {again} sent again{replaces}")
    out += [*facts, "", "## Prompt", "", *fence(safe_text(exchange.prompt), "text", WHOLE)]
    for name, r in exchange.results.items():
        ep = by_name.get(name)
        role = f" ({ep.role})" if ep is not None else ""
        model = r.model or (ep.model if ep is not None else None)
        head = f"## {safe_line(name)}{role}" + (f" · {safe_line(model)}" if model else "")
        out += ["", head, "", lane_line(r), "", *answer_block(r)]
        if r.error is not None and not r.stopped:
            out += ["", f"**error:** {safe_line(str(r.error))}"]
        flagged = [f for f in r.findings if f.severity != "info" and f.status != "dismissed"]
        if flagged:
            out += ["", "Flags:"]
            out += [f"- {f.detector} ({f.severity}): {safe_line(f.evidence)}" for f in flagged]
    return "\n".join(out) + "\n"
