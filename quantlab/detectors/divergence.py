"""divergence: how far this lane's answer is from the reference lane's answer.

Measures: exact match; the first differing character (with a snippet of both sides); and a
similarity, ROUGE-L F1 over lowercased words — 2·LCS / (words in both answers), computed
as rapidfuzz's normalized Indel similarity on word lists (C++, microseconds; the same
pure-Python LCS takes tens of milliseconds on 2,000-character answers, see
benchmarks/detectors_speed.py).

Severity is honest about what divergence means: greedy 4-bit and BF16 answers share only
about 0.4 ROUGE-L on average (Kurtic et al. 2024), so different wording is not a failure.

* identical (up to surrounding whitespace) → no finding;
* similarity below WARN_SIMILARITY while both answers have at least MIN_WORDS words →
  warn: the candidate answers something else entirely (on the local pair, answers about
  the same question share 0.2–0.6; the Q4_0 lane's loops and digressions fall below 0.1);
* otherwise → info (position and similarity, for the side-by-side view).

Score: the similarity (1 = same words in the same order).
"""

from __future__ import annotations

from functools import lru_cache

from rapidfuzz.distance import Indel

from quantlab.detectors.context import Context
from quantlab.detectors.textnorm import words
from quantlab.records import Finding, Severity

NAME = "divergence"

WARN_SIMILARITY = 0.1
MIN_WORDS = 8
#: Characters of context the evidence shows on each side of the first difference.
SNIPPET_BEFORE = 15
SNIPPET_AFTER = 25


def similarity(a: str, b: str) -> float:
    """ROUGE-L F1 over lowercased words: 2·LCS(a, b) / (len(a) + len(b)); 1 when both are
    empty."""
    return _word_similarity(words(a), words(b))


def _word_similarity(wa: list[str], wb: list[str]) -> float:
    if not wa and not wb:
        return 1.0
    return float(Indel.normalized_similarity(wa, wb))


@lru_cache(maxsize=16)
def _reference_words(reference: str) -> list[str]:
    """The reference is compared with every candidate lane: split it once."""
    return words(reference)


def first_difference(a: str, b: str) -> int | None:
    """Index of the first character where ``a`` and ``b`` differ; None when equal."""
    if a == b:
        return None
    n = min(len(a), len(b))
    i = 0
    # Compare in blocks first: answers often share a long prefix.
    step = 64
    while i + step <= n and a[i : i + step] == b[i : i + step]:
        i += step
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _side(text: str, pos: int) -> str:
    start = max(0, pos - SNIPPET_BEFORE)
    before = ("…" if start else "") + text[start:pos]
    after = text[pos : pos + SNIPPET_AFTER] + ("…" if pos + SNIPPET_AFTER < len(text) else "")
    if pos >= len(text):
        after = "⟨end⟩"
    shown = f"{before}⟦{after}"
    return '"' + shown.replace("\n", "\\n").replace("\t", "\\t") + '"'


def check(ctx: Context) -> Finding | None:
    ref = ctx.reference
    if ref is None:
        return None
    text = ctx.text
    if text.strip() == ref.strip():
        return None
    pos = first_difference(text, ref)
    if pos is None:
        return None
    text_words, ref_words = ctx.tokens.words(), _reference_words(ref)
    sim = _word_similarity(text_words, ref_words)
    n_text, n_ref = len(text_words), len(ref_words)
    low = sim < WARN_SIMILARITY and min(n_text, n_ref) >= MIN_WORDS
    severity: Severity = "warn" if low else "info"
    evidence = (
        f"similarity {sim:.2f} (ROUGE-L; {n_text} words here, {n_ref} in the reference); "
        f"first differs at "
        f"char {pos}: reference {_side(ref, pos)} vs {_side(text, pos)}"
    )
    return ctx.finding(NAME, severity, sim, evidence)
