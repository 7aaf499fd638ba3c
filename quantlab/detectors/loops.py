"""Finding the loop in an answer: a span of tokens repeated back to back.

Quantization damage shows as a short span repeated until max_tokens ("a majestic and
majestic tiger, a majestic and majestic tiger, …", "1. 1. 1. 1.", "111,111,111,…"). The
longest such *tandem repeat* is found in linear time: for each 4-gram, the distance back
to its previous occurrence is a candidate period; the most common distances are checked
with one vectorized comparison each (token i == token i + period, numpy), and the longest
run of matches is the loop. Two extra views catch loops that differ only in list numbers ("4. The
mainframe: …", "5. The mainframe: …": line-leading numbers masked as ``#``) and loops
inside one long token ("1111111111", "hahahahaha"). Numbers are masked only where they
start a line: numbers inside the content ("2 x 1 = 2", "2 x 2 = 4") are content, and a
table of them is not a loop.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from itertools import compress

import numpy as np

from quantlab.detectors.textnorm import Tokens

#: n of the n-grams used for seq-rep-n and for the candidate periods (Welleck et al. 2019).
NGRAM = 4
#: How many of the most common 4-gram distances are tried as loop periods.
CANDIDATE_PERIODS = 6
#: Longest unit (in tokens) a loop may have; longer "units" are repeated paragraphs.
MAX_PERIOD = 400
#: A long token (>= this many characters) is searched for a character-level loop.
LONG_TOKEN = 12
_CHAR_LOOP = re.compile(r"(.{1,8}?)\1{5,}", re.DOTALL)
_HASH_MUL = 1_000_003  # int64 arithmetic wraps: fine for a hash
_SENTENCE_END = frozenset(".!?:;。！？")
_LINE_NUMBER = re.compile(r"^[ \t]*\d", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Loop:
    """A unit repeated back to back: text[start:end] is ``repeats`` copies of the unit."""

    unit: str  # one copy of the repeating unit, as raw text (rotated to start at a word)
    start: int  # char offset where the loop starts
    end: int  # char offset where it stops repeating
    repeats: float  # copies of the unit, fractional when the last one is cut
    unit_tokens: int  # length of the unit in tokens (characters for a char-level loop)
    masked: bool = False  # found only with line-leading numbers masked ("4. x" / "5. x")

    @property
    def chars(self) -> int:
        return self.end - self.start


def seq_rep(keys: list[str], n: int = NGRAM) -> float:
    """seq-rep-n: 1 - distinct n-grams / total n-grams (0 = no n-gram repeats), over the
    n-grams holding at least one word: a "-----" rule or "=====" underline is layout, not
    repetition."""
    word = [k[:1].isalnum() for k in keys]
    has_word = list(map(any, zip(*(word[i:] for i in range(n)), strict=False)))
    grams = list(compress(zip(*(keys[i:] for i in range(n)), strict=False), has_word))
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def compression_ratio(text: str) -> float:
    """len(bytes) / len(zlib(bytes)): Whisper treats > 2.4 as a repetitive segment."""
    data = text.encode("utf-8", "surrogatepass")
    if not data:
        return 0.0
    return len(data) / len(zlib.compress(data))


def _tandem(ids: list[int]) -> tuple[int, int, int]:
    """(start token, period, run) of the longest back-to-back repeat in ``ids``.

    ``run`` counts the positions i where ids[i] == ids[i + period]; the loop covers
    ``run + period`` tokens. Returns (0, 0, 0) when nothing repeats. Vectorized: the 4-grams
    are hashed (a collision only adds a candidate period, which the exact comparison then
    rejects), sorted, and equal neighbours give the distance back to the previous copy.
    """
    a = np.asarray(ids, dtype=np.int64)
    k = NGRAM if len(a) >= 2 * NGRAM else 1
    if len(a) <= k:
        return (0, 0, 0)
    grams = a[: len(a) - k + 1].copy()
    for i in range(1, k):
        grams = grams * _HASH_MUL + a[i : len(a) - k + 1 + i]
    order = np.argsort(grams, kind="stable")
    same = grams[order[1:]] == grams[order[:-1]]
    dists = (order[1:] - order[:-1])[same]
    dists = dists[dists <= MAX_PERIOD]
    if dists.size == 0:
        return (0, 0, 0)
    counts = np.bincount(dists)
    best = (0, 0, 0)
    for period in np.argsort(counts, kind="stable")[::-1][:CANDIDATE_PERIODS]:
        p = int(period)
        if counts[p] == 0:
            break
        eq = np.zeros(len(a) - p + 2, dtype=np.int8)
        eq[1:-1] = a[:-p] == a[p:]
        edges = np.diff(eq)
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        if starts.size == 0:
            continue
        i = int(np.argmax(ends - starts))
        run = int(ends[i] - starts[i])
        # More tokens covered wins; on a tie the shorter period (the true unit) wins.
        if run + p > best[2] + best[1] or (run + p == best[2] + best[1] and p < best[1]):
            best = (int(starts[i]), p, run)
    return best


def _word_start(tokens: Tokens, start: int, period: int, covered: int) -> int:
    """Rotate the loop to begin where a reader would: at a line start, else after a
    sentence end, else after punctuation, else at a word ("el capital de la Repúba, "
    rather than ", el capital de la Repúba"). Any rotation of a unit is the same loop; this
    one quotes best."""
    text = tokens.text
    best, best_rank = start, 5
    for j in range(start, min(start + period, start + covered - period)):
        if not tokens.is_word(j):
            continue
        if j == 0 or "\n" in text[tokens.end(j - 1) : tokens.start(j)]:
            rank = 0
        elif tokens.keys[j - 1] in _SENTENCE_END:
            rank = 1
        elif not tokens.is_word(j - 1):
            rank = 2
        else:
            rank = 3
        if rank < best_rank:
            best, best_rank = j, rank
    return best


def _loop_from(tokens: Tokens, ids: list[int], masked: bool) -> Loop | None:
    start, period, run = _tandem(ids)
    if period == 0 or run == 0:
        return None
    covered = run + period
    last = min(start + covered, len(tokens)) - 1
    # The quoted unit is rotated to read well; the loop's extent is not changed by it.
    shown = _word_start(tokens, start, period, covered)
    unit_end = tokens.start(shown + period) if shown + period < len(tokens) else tokens.end(last)
    return Loop(
        unit=tokens.text[tokens.start(shown) : unit_end],
        start=tokens.start(start),
        end=tokens.end(last),
        repeats=covered / period,
        unit_tokens=period,
        masked=masked,
    )


def _char_loop(tokens: Tokens) -> Loop | None:
    best: Loop | None = None
    for i, key in enumerate(tokens.keys):
        if len(key) < LONG_TOKEN:
            continue
        for m in _CHAR_LOOP.finditer(tokens.text, tokens.start(i), tokens.end(i)):
            unit = m.group(1)
            cand = Loop(
                unit=unit,
                start=m.start(),
                end=m.end(),
                repeats=(m.end() - m.start()) / len(unit),
                unit_tokens=len(unit),
            )
            if best is None or cand.chars > best.chars:
                best = cand
    return best


def find_number_run(tokens: Tokens) -> Loop | None:
    """The longest loop with *every* number masked whose unit holds no letter: a run of
    bare numbers ("1. 2. 3. 4. …", "1, 2, 3, …"). Legitimate in a counting task, a
    degenerate answer elsewhere; the caller decides (repetition only warns when such a run
    fills a capped answer)."""
    vocab: dict[str, int] = {}
    ids = [vocab.setdefault("#" if k.isdigit() else k, len(vocab)) for k in tokens.keys]
    loop = _loop_from(tokens, ids, masked=True)
    if loop is None or any(c.isalpha() for c in loop.unit):
        return None
    if not any(c.isdigit() for c in loop.unit):
        return None
    return loop


def _line_number_ids(tokens: Tokens, raw_ids: list[int], hash_id: int) -> list[int]:
    """``raw_ids`` with every number that starts a line replaced by ``hash_id``."""
    text = tokens.text
    out = list(raw_ids)
    for i, key in enumerate(tokens.keys):
        if key.isdigit():
            pos = tokens.start(i)
            line_start = text.rfind("\n", 0, pos) + 1
            if not text[line_start:pos].strip():
                out[i] = hash_id
    return out


def find_loop(tokens: Tokens) -> Loop | None:
    """The loop covering the most characters, from the raw, number-masked and char views.

    The number-masked view wins only when it covers clearly more (a fifth) than the raw one,
    so that a loop is reported as literally as possible.
    """
    if len(tokens) < 2:
        return None
    vocab: dict[str, int] = {}
    raw_ids = [vocab.setdefault(k, len(vocab)) for k in tokens.keys]
    raw = _loop_from(tokens, raw_ids, masked=False)
    best = raw
    # The masked view must beat the raw loop by a fifth: skip it when it cannot.
    if _LINE_NUMBER.search(tokens.text) and (raw is None or 1.2 * raw.chars < len(tokens.text)):
        masked_ids = _line_number_ids(tokens, raw_ids, vocab.setdefault("#", len(vocab)))
        masked = _loop_from(tokens, masked_ids, masked=True) if masked_ids != raw_ids else None
        if masked and (raw is None or masked.chars > 1.2 * raw.chars):
            best = masked
    if max(map(len, tokens.keys)) >= LONG_TOKEN:
        char = _char_loop(tokens)
        if char and (best is None or char.chars > best.chars):
            best = char
    return best
