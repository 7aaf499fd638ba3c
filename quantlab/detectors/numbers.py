"""Finding the numbers in an answer, and the one that is its final answer.

Arithmetic checks compare numbers, not strings: "$1,200.00", "1200" and "one thousand two
hundred" are the same answer. Numbers glued to the end of a word ("H2O", "x86") are not
numbers of the answer; units glued to a number ("10km", "5th") are dropped.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache

_UNIT_WORDS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
)
_TEN_WORDS = (
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "sixty",
    "seventy",
    "eighty",
    "ninety",
)
_UNITS = {w: i for i, w in enumerate(_UNIT_WORDS)}
_TENS = {w: 10 * i for i, w in enumerate(_TEN_WORDS, 2)}
_SCALES = {"hundred": 100, "thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12}
_WORD_ALT = "|".join(sorted([*_UNITS, *_TENS, *_SCALES], key=len, reverse=True))
_FIRST_LETTERS = "".join(sorted({w[0] for w in (*_UNITS, *_TENS, *_SCALES)}))
# Matched on lowercased text; the lookahead on first letters keeps the scan fast.
_NUMBER_WORDS = re.compile(
    rf"(?<![a-z])(?=[{_FIRST_LETTERS}])(?:{_WORD_ALT})"
    rf"(?:(?:[\s-]+(?:and[\s-]+)?)(?:{_WORD_ALT}))*\b"
)
_DIGITS = re.compile(
    r"(?<![\w.])(?P<sign>[-−]?)\$?"
    r"(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<frac>\d+))?"
    r"(?:(?P<k>k)\b|\s*(?P<scale>thousand|million|billion|trillion)\b)?",
    re.IGNORECASE,
)
_MARKERS = re.compile(
    r"\\boxed\{|####|\b(?:final answer|the answer|answer|result|total)\s*(?:is|:|=|equals)"
    r"|\b(?:a|the) total of\b",
    re.IGNORECASE,
)
# A marker's answer ends at a sentence end: a full stop not inside a number nor part of an
# ellipsis ("1 + 2 + ... + 20 = 210"), or a newline.
_SENTENCE_END = re.compile(r"\n|(?<!\.)[!?](?!\d)|(?<!\.)\.(?![\d.])|\}")
# A number standing right after its marker ("the answer is 20, which …") is the answer,
# whatever follows it in the sentence, unless a calculation goes on from it ("the answer
# is 3 + 5 = 8"). Not after "total of" ("the total of 18 and 11 is 29").
_RIGHT_AFTER = re.compile(r"[\s:=*$(\[{]*\Z")
_CALCULATION = re.compile(r"\s*(?:[-+*/×÷=^]|x\s*\d|times\b|plus\b|minus\b)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Number:
    """A number mentioned in a text, with where it sits."""

    value: float
    start: int
    end: int
    raw: str
    #: A lone "one" ("one of the most…") is as often a pronoun as a number.
    weak: bool = False


def _words_value(phrase: str) -> float | None:
    total, current, seen = 0.0, 0.0, False
    for w in re.split(r"[\s-]+", phrase.lower()):
        if w == "and" or not w:
            continue
        if w in _UNITS:
            current += _UNITS[w]
        elif w in _TENS:
            current += _TENS[w]
        elif w == "hundred":
            current = (current or 1) * 100
        elif w in _SCALES:
            total += (current or 1) * _SCALES[w]
            current = 0
        seen = True
    return total + current if seen else None


@lru_cache(maxsize=64)
def find_numbers(text: str) -> tuple[Number, ...]:
    """Every number in ``text``, in order: digits (with separators, sign, decimals and a
    scale word such as "million") and spelled-out English numbers ("twenty-one").

    Cached: several checks ask about the same answer and prompt."""
    found: list[Number] = []
    for m in _DIGITS.finditer(text):
        sign, whole, frac, k, scale = m.group("sign", "int", "frac", "k", "scale")
        value = float(whole.replace(",", "") + "." + (frac or "0"))
        if sign:
            value = -value
        if k:
            value *= 1e3
        elif scale:
            value *= _SCALES[scale.lower()]
        found.append(Number(value, m.start(), m.end(), m.group()))
    ends = [n.end for n in found]
    low = text.lower()
    if len(low) != len(text):  # rare case mappings that change length: keep offsets right
        low = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
    digits = list(found)
    pos = 0
    while (w := _NUMBER_WORDS.search(low, pos)) is not None:
        m = w
        # Starting inside a digit number ("9.4 billion and twenty-one")? Search again from
        # its end. Digit numbers are sorted and disjoint.
        i = bisect_right(ends, m.start())
        if i < len(digits) and digits[i].start <= m.start():
            pos = digits[i].end
            continue
        v = _words_value(m.group())
        if v is not None:
            raw = text[m.start() : m.end()]
            found.append(Number(v, m.start(), m.end(), raw, weak=m.group() == "one"))
        pos = m.end()
    found.sort(key=lambda n: n.start)
    return tuple(found)


def parse_number(text: str) -> float | None:
    """The value of ``text`` when it is one number and nothing else ("$1,200", "12.5%",
    "twelve"); None otherwise. Decides whether an expected answer is checked numerically."""
    stripped = text.strip().rstrip(".%").strip()
    nums = find_numbers(stripped)
    if len(nums) != 1:
        return None
    n = nums[0]
    rest = (stripped[: n.start] + stripped[n.end :]).strip(" $")
    return n.value if not rest else None


def same_number(a: float, b: float) -> bool:
    """Equal up to float noise: 100.000 == 100, 0.1 + 0.2 == 0.3."""
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


@dataclass(frozen=True, slots=True)
class FinalAnswer:
    """The number an answer ends on, and whether an explicit marker ("the answer is",
    "####", "\\boxed{}") introduced it."""

    number: Number
    marked: bool


def cut_number(text: str) -> Number | None:
    """The number touching the very end of ``text``, if any: in an answer cut at
    max_tokens it may be incomplete ("4" of "42")."""
    nums = find_numbers(text)
    if nums and nums[-1].end >= len(text.rstrip()):
        return nums[-1]
    return None


def final_number(text: str, *, truncated: bool = False) -> FinalAnswer | None:
    """The answer's final number: the last number after the last explicit answer marker
    when there is one, else the last number of the text (a lone "one" only when there is
    no other number).

    When the text was cut (``truncated``) a number touching the very end may be incomplete
    ("…the answer is 4" of "42"), so it is not taken as the final answer.
    """
    nums = list(find_numbers(text))
    if truncated and nums and cut_number(text) is not None:
        nums = nums[:-1]
    if not nums:
        return None
    markers = list(_MARKERS.finditer(text))
    for marker in reversed(markers):
        end_m = _SENTENCE_END.search(text, marker.end())
        stop = end_m.start() if end_m else len(text)
        inside = [n for n in nums if marker.end() <= n.start < stop]
        if inside:
            first = inside[0]
            if (
                not marker.group().lower().endswith("of")
                and _RIGHT_AFTER.match(text, marker.end(), first.start)
                and not _CALCULATION.match(text, first.end)
                and not first.weak
            ):
                return FinalAnswer(first, True)
            return FinalAnswer(inside[-1], True)
    strong = [n for n in nums if not n.weak]
    return FinalAnswer((strong or nums)[-1], False)
