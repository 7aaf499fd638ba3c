"""What every detector looks at: one lane's answer plus what is known about its request.

Detectors share work through this object: the answer is tokenized and searched for a loop
once, however many detectors need it (expected_answer must know whether the answer is a
loop before it calls a missing answer "wrong").
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from quantlab.detectors.loops import Loop, find_loop
from quantlab.detectors.textnorm import Tokens, tokenize
from quantlab.records import Case, Finding, Severity

#: finish_reason values that mean "cut by the token budget" (OpenAI/vLLM/llama.cpp say
#: "length"; some servers say "max_tokens").
LENGTH_REASONS = frozenset({"length", "max_tokens"})


@dataclass
class Context:
    """One answer to judge. ``prompt`` falls back to the case's final user turn and
    ``max_tokens`` to the case's sampling params."""

    text: str
    case: Case | None = None
    reference: str | None = None
    finish_reason: str | None = None
    lane: str = ""
    prompt: str | None = None
    max_tokens: int | None = None
    cut_off: str | None = None  # LaneResult.cut_off: quantlab stopped a runaway answer

    def __post_init__(self) -> None:
        if self.prompt is None and self.case is not None:
            self.prompt = self.case.prompt or None
        if self.max_tokens is None and self.case is not None and self.case.params:
            self.max_tokens = self.case.params.max_tokens

    @property
    def capped(self) -> bool:
        """The server stopped the answer at max_tokens."""
        return (self.finish_reason or "").lower() in LENGTH_REASONS

    @cached_property
    def tokens(self) -> Tokens:
        return tokenize(self.text)

    @cached_property
    def loop(self) -> Loop | None:
        """The longest back-to-back repeat in the answer (any size; detectors judge it)."""
        return find_loop(self.tokens)

    def finding(self, detector: str, severity: Severity, score: float, evidence: str) -> Finding:
        return Finding(
            detector=detector,
            lane=self.lane,
            severity=severity,
            score=round(float(score), 4),
            evidence=evidence,
        )
