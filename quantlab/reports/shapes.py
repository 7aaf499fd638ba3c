"""The shape of a report's analysis, as types a checker can hold the renderers to.

:func:`quantlab.reports.analysis.analyze` returns an :class:`Analysis`; md, brief, verdict
and the JSON export read it. These are ``TypedDict``s, not dataclasses, on purpose: the
JSON export writes the analysis as it is (``schema`` ``quantlab.report/1``, which scripts
read), and a ``TypedDict`` is that same dict at run time while mypy/pyright reject a key
that is misspelt or renamed on either side. The parts below the comparisons (rates, long
context, capacity tables) are still ``dict[str, Any]``.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class Comparison(TypedDict):
    """One candidate against the reference on paired cases (stats.PairedComparison's
    fields, Holm-corrected across the report, plus which cases it lost and won)."""

    reference: str
    candidate: str
    n_pairs: int
    both_pass: int
    ref_only: int
    cand_only: int
    both_fail: int
    ref_rate: float | None
    cand_rate: float | None
    difference: float | None
    mdd: float | None
    verdict: str
    sentence: str
    p_holm: float | None
    family_size: int
    mcnemar: dict[str, Any]
    lost_cases: list[str]
    won_cases: list[str]
    won_with_warnings: dict[str, list[str]]


class RateBlock(TypedDict):
    """Pass rates per lane over a set of cases, and the paired comparisons."""

    cases: int
    lanes: dict[str, dict[str, Any]]
    comparisons: list[Comparison]


class SuiteBlock(RateBlock):
    suite: str
    kind: str
    exchanges: int
    levels: list[int]


class GroupTable(TypedDict):
    """A cases suite's groups (and families, when they differ), and each candidate's raw
    differences per group, largest drop first."""

    suite: str
    groups: dict[str, RateBlock]
    families: dict[str, RateBlock] | None
    breaks_first: dict[str, list[dict[str, Any]]]


class CandidateVerdict(TypedDict):
    verdict: str
    why: str
    risky: list[str]
    holds: list[str]


class Analysis(TypedDict):
    schema: str
    session: dict[str, Any]
    lanes: list[dict[str, Any]]
    reference: str | None
    candidates: list[str]
    machine: dict[str, Any]
    definitions: dict[str, str]
    suites: list[SuiteBlock]
    overall: RateBlock
    groups: list[GroupTable]
    long_context: dict[str, Any] | None
    concurrency: dict[str, Any] | None
    capacity: dict[str, Any] | None
    latency: dict[str, Any] | None
    failures: dict[str, Any]
    telemetry: dict[str, Any] | None
    #: Token-level agreement per candidate (quantlab.agreement.summary), when measured.
    agreement: dict[str, Any] | None
    verdicts: NotRequired[dict[str, CandidateVerdict]]
    headline: NotRequired[str]
