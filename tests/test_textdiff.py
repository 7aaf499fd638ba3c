"""The word-level diff of two answers (quantlab.textdiff): what each span holds."""

from __future__ import annotations

from quantlab.textdiff import Span, counts, tokens, word_diff


def _join(spans: list[Span], *kinds: str) -> str:
    return "".join(s.text for s in spans if s.kind in kinds)


def test_a_replaced_word_is_removed_then_added() -> None:
    spans = word_diff("The answer is 42.", "The answer is 41.")
    assert spans == [
        Span("same", "The answer is "),
        Span("removed", "42"),
        Span("added", "41"),
        Span("same", "."),
    ]


def test_same_and_added_rebuild_the_candidate_exactly() -> None:
    ref = "  Paris is the capital of France.\nIt is large."
    cand = "Paris is  the capital city of France!\n\nIt is very large, and old."
    spans = word_diff(ref, cand)
    assert _join(spans, "same", "added") == cand
    ref_words = [t.strip() for t in tokens(ref) if t.strip()]
    kept = [t.strip() for t in tokens(_join(spans, "same", "removed")) if t.strip()]
    assert kept == ref_words
    assert Span("added", "city ") in spans
    assert any(s.kind == "removed" and s.text.startswith(".") for s in spans)


def test_whitespace_alone_is_no_change() -> None:
    spans = word_diff("a b\nc", "a  b c")
    assert [s.kind for s in spans] == ["same"]


def test_empty_sides() -> None:
    assert word_diff("", "") == []
    assert word_diff("", "new text") == [Span("added", "new text")]
    assert word_diff("old text", "") == [Span("removed", "old text")]


def test_counts_words_per_kind() -> None:
    c = counts(word_diff("one two three", "one four three five"))
    assert (c.same, c.added, c.removed) == (2, 2, 1)


def test_tokens_join_back_to_the_text() -> None:
    text = " x=1, y_2 — done…\t ok "
    assert "".join(tokens(text)) == text
