"""The CSV export: one row per exchange per lane, every metric, for a spreadsheet.

``outcome`` is the lane's verdict on that one exchange (the definition in
:mod:`quantlab.reports.outcomes`; the md report judges cases, which may group several
repetitions). ``findings`` lists ``detector:severity[:status]`` separated by "; ".
``prompt`` is the final user turn cut at 200 characters; ``output`` is the full answer.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
from typing import Any

from quantlab.quantiles import percentile
from quantlab.reports.analysis import pick_reference, suite_kind, suite_name
from quantlab.reports.outcomes import annotations_by_lane, judge, lane_annotations
from quantlab.session import Session
from quantlab.textsafe import safe_text

COLUMNS: tuple[str, ...] = (
    "exchange_id",
    "started_at",
    "source",
    "suite",
    "suite_kind",
    "case_id",
    "group",
    "concurrency",
    "repetition",
    "context_tokens",
    "lane",
    "role",
    "model",
    "outcome",
    "fail_reasons",
    "warnings",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "cached_prompt_tokens",
    "output_tokens",
    "tokens_counted",
    "ttft_ms",
    "e2e_ms",
    "tokens_per_s",
    "itl_p50_ms",
    "itl_p95_ms",
    "itl_max_ms",
    "error_kind",
    "error",
    "findings",
    "failing_detectors",
    "annotation_tags",
    "annotation_max_severity",
    "annotation_notes",
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "prompt_chars",
    "output_chars",
    "prompt",
    "output",
)


def _r(x: float | None, nd: int = 3) -> float | str:
    return "" if x is None else round(x, nd)


def rows(session: Session) -> list[dict[str, Any]]:
    """One dict per exchange per lane with the keys of :data:`COLUMNS`."""
    reference = pick_reference(session)
    index = annotations_by_lane(session.annotations)
    out = []
    for ex in session.exchanges:
        kind = suite_kind(session, ex)
        for lane, r in ex.results.items():
            notes = lane_annotations(index, ex.id, lane)
            verdict = judge(r, notes)
            usage = r.usage or {}
            details = usage.get("prompt_tokens_details") or {}
            t = r.timing
            out.append(
                {
                    "exchange_id": ex.id,
                    "started_at": _dt.datetime.fromtimestamp(ex.started_at).isoformat(
                        timespec="seconds"
                    )
                    if ex.started_at
                    else "",
                    "source": ex.source,
                    "suite": suite_name(ex),
                    "suite_kind": kind,
                    "case_id": ex.case_id or "",
                    "group": ex.meta.get("group") or ex.meta.get("length_label") or "",
                    "concurrency": ex.meta.get("concurrency", ""),
                    "repetition": ex.meta.get("repetition", ""),
                    "context_tokens": ex.meta.get("context_tokens", ""),
                    "lane": lane,
                    "role": "reference" if lane == reference else "candidate",
                    "model": r.model or "",
                    "outcome": verdict.outcome,
                    "fail_reasons": "; ".join(verdict.reasons),
                    "warnings": "; ".join(verdict.warnings),
                    "finish_reason": r.finish_reason or "",
                    "prompt_tokens": usage.get("prompt_tokens", ""),
                    "completion_tokens": usage.get("completion_tokens", ""),
                    "cached_prompt_tokens": details.get("cached_tokens", "")
                    if isinstance(details, dict)
                    else "",
                    "output_tokens": "" if t.output_tokens is None else t.output_tokens,
                    "tokens_counted": t.tokens_counted,
                    "ttft_ms": _r(t.ttft_ms, 2),
                    "e2e_ms": _r(t.e2e_ms, 2),
                    "tokens_per_s": _r(t.tokens_per_s, 2),
                    "itl_p50_ms": _r(percentile(t.itl_ms, 50), 3),
                    "itl_p95_ms": _r(percentile(t.itl_ms, 95), 3),
                    "itl_max_ms": _r(max(t.itl_ms) if t.itl_ms else None, 3),
                    "error_kind": r.error.kind if r.error else "",
                    "error": str(r.error) if r.error else "",
                    "findings": "; ".join(
                        f"{f.detector}:{f.severity}"
                        + (f":{f.status}" if f.status != "open" else "")
                        for f in r.findings
                    ),
                    "failing_detectors": "; ".join(
                        sorted(
                            {
                                f.detector
                                for f in r.findings
                                if f.status != "dismissed"
                                and (
                                    f.severity == "fail"
                                    or (f.severity == "warn" and f.status == "confirmed")
                                )
                            }
                        )
                    ),
                    "annotation_tags": "; ".join(sorted({tag for a in notes for tag in a.tags})),
                    "annotation_max_severity": max((a.severity for a in notes), default=""),
                    "annotation_notes": " | ".join(a.note for a in notes if a.note),
                    "temperature": ex.params.temperature,
                    "top_p": ex.params.top_p,
                    "max_tokens": ex.params.max_tokens,
                    "seed": "" if ex.params.seed is None else ex.params.seed,
                    "prompt_chars": len(ex.prompt),
                    "output_chars": len(r.text),
                    "prompt": ex.prompt[:200],
                    "output": r.text,
                }
            )
    return out


def render(session: Session) -> str:
    """The CSV text (RFC 4180 quoting by the csv module, a header row first)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows(session))
    # Answers are untrusted: no control character reaches a terminal or a spreadsheet;
    # JSON keeps the exact text (quantlab/textsafe.py).
    return safe_text(buf.getvalue())
