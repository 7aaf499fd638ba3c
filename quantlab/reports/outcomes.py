"""Pass or fail, per exchange and per lane: the one definition every report uses.

A lane **fails** an exchange when at least one of these holds:

1. it **errored**: the server or the connection failed (any ``LaneError`` except
   ``cancelled``, which only means the run was stopped);
2. a detector reported a finding of severity **fail** that a person has not **dismissed**;
3. a person **confirmed** a detector's finding of severity **warn** (a confirmed
   ``info`` finding is a remark, not a failure);
4. a person's **annotation** on that lane (or on all lanes, ``"*"``) has severity **≥ 2**
   (1 = minor, noted but not failing).

Otherwise it **passes**. A lane is **not judged** on an exchange when it has no result
there (it was not sent, e.g. a context length beyond its window) or its request was
cancelled: not-judged answers count in no rate and in no pair.

Reports judge **cases**, not answers: the exchanges of one case (same suite, same case id,
same concurrency level) are its repetitions, and a lane fails the case when it fails any
repetition. A chat or ``ask`` exchange is a case of its own. This keeps repeated prompts
from counting as independent evidence.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from quantlab.records import Annotation, Exchange, LaneResult

Outcome = Literal["pass", "fail", "not_judged"]

#: Annotation severity from which a person's annotation makes the lane fail.
ANNOTATION_FAIL_SEVERITY = 2
#: Error kinds that say nothing about the model or its server.
NOT_JUDGED_ERRORS = frozenset({"cancelled"})

DEFINITION = (
    "A lane fails a case when, in any repetition of it, the request errored (a cancelled "
    "request is not judged), a detector reported a `fail` finding that a person did not "
    "dismiss, a person confirmed a `warn` finding, or a person's annotation on that lane "
    f"has severity ≥ {ANNOTATION_FAIL_SEVERITY}. Otherwise it passes. Lanes with no answer "
    "to a case (not sent, cancelled) are left out of that case's rates and pairs."
)


@dataclass(slots=True)
class LaneOutcome:
    """One lane's verdict on one exchange, with the reasons (each a short phrase)."""

    outcome: Outcome
    reasons: list[str] = field(default_factory=list)
    # Detectors that warned (not dismissed): a pass with warnings is a shaky pass, and the
    # report says so next to the cases a lane won.
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.outcome == "fail"


def judge(result: LaneResult | None, annotations: Iterable[Annotation] = ()) -> LaneOutcome:
    """Apply the definition above to one lane's result and the annotations that concern it
    (the caller passes only this exchange's annotations for this lane or for ``"*"``)."""
    if result is None:
        return LaneOutcome("not_judged", ["no answer"])
    if result.error is not None and result.error.kind in NOT_JUDGED_ERRORS:
        return LaneOutcome("not_judged", [f"error: {result.error.kind}"])
    reasons: list[str] = []
    warnings: list[str] = []
    if result.error is not None:
        reasons.append(f"error: {result.error.kind}")
    for f in result.findings:
        if f.status == "dismissed":
            continue
        if f.severity == "warn" and f.status != "confirmed" and f.detector not in warnings:
            warnings.append(f.detector)
        if f.severity == "fail" or (f.severity == "warn" and f.status == "confirmed"):
            label = f.detector if f.status != "confirmed" else f"{f.detector} (confirmed)"
            if label not in reasons:
                reasons.append(label)
    for a in annotations:
        if a.severity >= ANNOTATION_FAIL_SEVERITY:
            tags = ", ".join(a.tags) or "untagged"
            reasons.append(f"annotation: {tags} (severity {a.severity})")
    return LaneOutcome("fail" if reasons else "pass", reasons, warnings)


def annotations_by_lane(
    annotations: Iterable[Annotation],
) -> dict[tuple[str, str], list[Annotation]]:
    """(exchange id, lane) -> annotations; ``"*"`` annotations are kept under ``"*"`` and
    merged in by :func:`lane_annotations`."""
    out: dict[tuple[str, str], list[Annotation]] = {}
    for a in annotations:
        out.setdefault((a.exchange_id, a.lane), []).append(a)
    return out


def lane_annotations(
    index: dict[tuple[str, str], list[Annotation]], exchange_id: str, lane: str
) -> list[Annotation]:
    return index.get((exchange_id, lane), []) + index.get((exchange_id, "*"), [])


def case_key(ex: Exchange) -> tuple[str, str, Any]:
    """What makes two exchanges repetitions of one case: suite, case id and concurrency
    level. Exchanges without a case id (chat, ask) are each their own case."""
    if ex.case_id is None:
        return (ex.source, ex.id, None)
    return (ex.suite or ex.source, ex.case_id, ex.meta.get("concurrency"))


@dataclass(slots=True)
class CaseOutcome:
    """A lane's verdict on a case over its repetitions (fails when any repetition fails)."""

    key: tuple[str, str, Any]
    exchange_ids: list[str]
    outcomes: dict[str, LaneOutcome]  # lane -> verdict (not_judged when no repetition judged)


def judge_cases(
    exchanges: Iterable[Exchange], annotations: Iterable[Annotation], lanes: Iterable[str]
) -> list[CaseOutcome]:
    """Every case among ``exchanges`` with each lane's verdict, in first-seen order."""
    index = annotations_by_lane(annotations)
    lane_list = list(lanes)
    cases: dict[tuple[str, str, Any], CaseOutcome] = {}
    for ex in exchanges:
        key = case_key(ex)
        co = cases.get(key)
        if co is None:
            co = CaseOutcome(key, [], {lane: LaneOutcome("not_judged", []) for lane in lane_list})
            cases[key] = co
        co.exchange_ids.append(ex.id)
        for lane in lane_list:
            verdict = judge(ex.results.get(lane), lane_annotations(index, ex.id, lane))
            prev = co.outcomes[lane]
            if verdict.outcome == "not_judged":
                continue
            if prev.outcome == "not_judged":
                co.outcomes[lane] = LaneOutcome(
                    verdict.outcome, list(verdict.reasons), list(verdict.warnings)
                )
                continue
            prev.warnings += [w for w in verdict.warnings if w not in prev.warnings]
            if verdict.failed:
                prev.reasons += [r for r in verdict.reasons if r not in prev.reasons]
                prev.outcome = "fail"
    return list(cases.values())
