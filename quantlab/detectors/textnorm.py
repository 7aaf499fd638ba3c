"""Text normalization and tokenization shared by the detectors.

Checks compare answers against expected values "normalized": case, accents, punctuation and
thousands separators must not decide whether "4,417" matches "4417" or "Müller" matches
"muller". Tokens are what the repetition and divergence detectors count: words, single
punctuation marks, and single CJK characters (CJK text has no spaces, so a whole Chinese
sentence would otherwise be one "word").
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np

# A thousands separator sits between digits and is followed by exactly three digits.
_THOUSANDS = re.compile(r"(?<=\d)[,'’_\u00a0\u2009\u202f](?=\d{3}(?!\d))")
_NON_ALNUM = re.compile(r"[^\w]+|_+")

#: Han ideographs and Japanese kana: each character is one token.
CJK_CHARS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK = re.compile(f"[{CJK_CHARS}]")
#: Lookup table: is code point c whitespace for Python's regex ``\s`` (str.isspace)? None
#: lies above U+3000, so every higher code point is clipped onto the last, False, entry.
_WS_LIMIT = 0x3001
_IS_WHITESPACE = np.array([chr(c).isspace() for c in range(_WS_LIMIT + 1)], dtype=bool)
_IS_WHITESPACE[_WS_LIMIT] = False
_TOKEN = re.compile(rf"[{CJK_CHARS}]|[^\W{CJK_CHARS}]+|[^\w\s]")


def fold(text: str) -> str:
    """Casefold, strip accents, drop thousands separators, turn punctuation into spaces.

    The result is space-separated words wrapped in single spaces, so that containment
    checks with ``f" {word} " in fold(text)`` respect word boundaries.
    """
    text = _THOUSANDS.sub("", text)
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    words = _NON_ALNUM.sub(" ", stripped.casefold()).split()
    return " " + " ".join(words) + " "


def contains(text: str, value: str) -> bool:
    """Whether ``value`` occurs in ``text`` as whole words, after :func:`fold` on both.

    Chinese and Japanese write no spaces between words, so a value holding CJK characters
    is looked for as a plain substring.
    """
    needle = fold(value)
    if not needle.strip():
        return False
    if _CJK.search(needle):
        return needle.strip() in fold(text)
    return needle in fold(text)


class Tokens:
    """An answer's tokens: lowercased keys (what detectors compare) and, computed only when
    evidence needs them, the character offsets of each in the raw text."""

    __slots__ = ("_ends", "_raw", "_starts", "keys", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._raw: list[str] = _TOKEN.findall(text)
        self.keys: list[str] = list(map(str.lower, self._raw))
        self._starts: list[int] | None = None
        self._ends: list[int] = []

    def __len__(self) -> int:
        return len(self.keys)

    def _locate(self) -> list[int]:
        """Token offsets without a match object per token: every non-whitespace character
        belongs to exactly one token, so the k-th non-whitespace character of the text is
        the k-th character of the concatenated tokens."""
        if self._starts is None:
            raw = self.text.encode("utf-32-le", "surrogatepass")
            codes = np.minimum(np.frombuffer(raw, dtype=np.uint32), _WS_LIMIT)
            ink = np.flatnonzero(~_IS_WHITESPACE[codes])
            lengths = np.fromiter(map(len, self._raw), dtype=np.int64, count=len(self._raw))
            ends = np.cumsum(lengths)
            self._starts = ink[ends - lengths].tolist() if len(ends) else []
            self._ends = (ink[ends - 1] + 1).tolist() if len(ends) else []
        return self._starts

    def start(self, i: int) -> int:
        return self._locate()[i]

    def end(self, i: int) -> int:
        self._locate()
        return self._ends[i]

    def is_word(self, i: int) -> bool:
        head = self.keys[i][:1]
        return head.isalnum() or head == "_"

    def words(self) -> list[str]:
        """Word keys only (no punctuation): what similarity measures compare."""
        return [k for k in self.keys if k[:1].isalnum()]


def tokenize(text: str) -> Tokens:
    """Split into words, single punctuation marks and single CJK characters, lowercased."""
    return Tokens(text)


def words(text: str) -> list[str]:
    """Lowercased word tokens only (no punctuation): what similarity measures compare."""
    return [t.lower() for t in _TOKEN.findall(text) if t[:1].isalnum()]


def snippet(text: str, start: int, end: int | None = None, width: int = 60) -> str:
    """A short quoted excerpt of ``text[start:end]`` for evidence strings.

    Newlines are shown as ``\\n`` so that evidence stays on one line; long spans are cut
    with an ellipsis.
    """
    end = len(text) if end is None else end
    piece = text[start:end]
    cut = len(piece) > width
    piece = piece[:width]
    piece = piece.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    return '"' + piece + ("…" if cut else "") + '"'
