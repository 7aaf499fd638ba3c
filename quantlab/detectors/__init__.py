"""Automatic failure detectors: one lane's answer in, a list of Findings out.

Each detector is a module with a ``NAME`` and a ``check(ctx) -> Finding | None``; its
definition and thresholds are in its docstring and named constants (docs/detectors.md
collects them). Detectors never raise on odd text: an answer is data, whatever it holds.

    >>> from quantlab.detectors import detect
    >>> [f.detector for f in detect("Paris Paris Paris Paris Paris Paris")]
    ['repetition', 'collapse']
"""

from __future__ import annotations

from collections.abc import Callable

from quantlab.detectors import (
    answer_format,
    collapse,
    divergence,
    expected_answer,
    fact_recall,
    language_switch,
    repetition,
    runaway,
    truncation,
)
from quantlab.detectors.context import Context
from quantlab.records import Case, Exchange, Finding

#: Detector name -> check function, in the order findings are reported.
DETECTORS: dict[str, Callable[[Context], Finding | None]] = {
    repetition.NAME: repetition.check,
    collapse.NAME: collapse.check,
    truncation.NAME: truncation.check,
    fact_recall.NAME: fact_recall.check,
    expected_answer.NAME: expected_answer.check,
    answer_format.NAME: answer_format.check,
    divergence.NAME: divergence.check,
    language_switch.NAME: language_switch.check,
    runaway.NAME: runaway.check,
}

__all__ = ["DETECTORS", "Context", "Finding", "detect", "detect_exchange"]


def detect(
    text: str,
    *,
    case: Case | None = None,
    reference: str | None = None,
    finish_reason: str | None = None,
    lane: str = "",
    prompt: str | None = None,
    max_tokens: int | None = None,
    only: tuple[str, ...] | None = None,
    cut_off: str | None = None,
) -> list[Finding]:
    """Run every detector (or those named in ``only``) on one lane's answer.

    ``case`` supplies the checks (expect, expect_regex, facts, format) and, unless given
    explicitly, the prompt and max_tokens. ``reference`` is the reference lane's text:
    pass it for candidate lanes only (divergence compares against it). ``finish_reason``
    is the server's ("length" means capped at max_tokens); ``cut_off`` the lane's own
    (quantlab stopped a runaway answer).
    """
    ctx = Context(
        text=text or "",
        case=case,
        reference=reference,
        finish_reason=finish_reason,
        lane=lane,
        prompt=prompt,
        max_tokens=max_tokens,
        cut_off=cut_off,
    )
    names = DETECTORS if only is None else [n for n in DETECTORS if n in only]
    findings = []
    for name in names:
        found = DETECTORS[name](ctx)
        if found is not None:
            findings.append(found)
    return findings


def detect_exchange(
    exchange: Exchange, *, case: Case | None = None, reference_lane: str | None = None
) -> dict[str, list[Finding]]:
    """Run the detectors on every lane of an exchange and store them in each LaneResult.

    The reference is ``reference_lane`` or else the first lane of ``exchange.results``
    (fan-out keeps endpoint order, reference first). Lanes that failed (``error`` set) are
    not judged — an HTTP 500 is not a "collapse" — and a failed reference means no
    divergence. Prompt and max_tokens come from the case when it has them, else from the
    exchange. A finding a person already confirmed or dismissed is kept as it is, and
    replaces the fresh finding of the same detector.
    """
    names = list(exchange.results)
    if reference_lane not in exchange.results:
        reference_lane = names[0] if names else None
    ref = exchange.results.get(reference_lane) if reference_lane else None
    ref_text = ref.text if ref is not None and ref.ok else None
    prompt = (case.prompt if case else "") or exchange.prompt
    max_tokens = case.params.max_tokens if case and case.params else exchange.params.max_tokens
    out: dict[str, list[Finding]] = {}
    for name, result in exchange.results.items():
        if not result.ok:
            out[name] = []
            continue
        found = detect(
            result.text,
            case=case,
            reference=None if name == reference_lane else ref_text,
            finish_reason=result.finish_reason,
            lane=name,
            prompt=prompt,
            max_tokens=max_tokens,
            cut_off=result.cut_off,
        )
        judged = [f for f in result.findings if f.status != "open"]
        seen = {f.detector for f in judged}
        result.findings = judged + [f for f in found if f.detector not in seen]
        out[name] = result.findings
    return out
