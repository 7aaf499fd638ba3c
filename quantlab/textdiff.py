"""Word-level diff of two lanes' answers: where a candidate's words part from the
reference's, beyond the first differing character that the compare view marks.

Answers are cut into words and punctuation marks, each with the whitespace after it, and
compared with :class:`difflib.SequenceMatcher` on the words alone (whitespace differences
are not changes). The result is a list of :class:`Span` in reading order: ``same`` and
``added`` spans rebuild the candidate exactly; ``same`` and ``removed`` spans hold the
reference's words. Plain text only: whoever shows it makes it safe for a terminal.

    >>> [(s.kind, s.text) for s in word_diff("the cat sat", "the dog sat")]
    [('same', 'the '), ('removed', 'cat '), ('added', 'dog '), ('same', 'sat')]
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Literal

SpanKind = Literal["same", "added", "removed"]

#: A word (letters, digits, underscore) or one other non-space character, with the
#: whitespace that follows it; a text's leading whitespace is a token of its own.
_TOKEN = re.compile(r"^\s+|(?:\w+|[^\w\s])\s*")


@dataclass(frozen=True)
class Span:
    """A run of text that both answers share (``same``), only the candidate has
    (``added``) or only the reference has (``removed``)."""

    kind: SpanKind
    text: str


@dataclass(frozen=True)
class DiffCounts:
    """Words (and punctuation marks) in each kind of span: for a one-line summary."""

    same: int
    added: int
    removed: int


def tokens(text: str) -> list[str]:
    """``text`` cut into words and marks, each keeping the whitespace after it; joined,
    they give ``text`` back."""
    return _TOKEN.findall(text)


def word_diff(reference: str, candidate: str) -> list[Span]:
    """The candidate against the reference, word by word (see the module docstring). A
    replaced run gives its ``removed`` span before its ``added`` one; neighbours of one
    kind are merged."""
    ref_tok, cand_tok = tokens(reference), tokens(candidate)
    matcher = difflib.SequenceMatcher(
        None, [t.strip() for t in ref_tok], [t.strip() for t in cand_tok], autojunk=False
    )
    spans: list[Span] = []

    def put(kind: SpanKind, parts: list[str]) -> None:
        text = "".join(parts)
        if not text:
            return
        if spans and spans[-1].kind == kind:
            spans[-1] = Span(kind, spans[-1].text + text)
        else:
            spans.append(Span(kind, text))

    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            put("same", cand_tok[j1:j2])
        else:  # replace, delete, insert
            put("removed", ref_tok[i1:i2])
            put("added", cand_tok[j1:j2])
    return spans


def counts(spans: list[Span]) -> DiffCounts:
    """How many words each kind of span holds."""
    n = {"same": 0, "added": 0, "removed": 0}
    for s in spans:
        n[s.kind] += len([t for t in tokens(s.text) if t.strip()])
    return DiffCounts(same=n["same"], added=n["added"], removed=n["removed"])
