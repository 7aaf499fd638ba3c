"""expected_answer: the answer misses or contradicts the case's expected answer.

* ``case.expect`` that is one number ("42", "$1,200", "12.5%") is checked numerically
  against the answer's final number (numbers.final_number: the last number after "the
  answer is" / "####" / "\\boxed{}", else the last number; separators, "$", units and
  English number words such as "twelve" are understood):
  - final number equal → pass;
  - no number at all → fail ("missing");
  - a different final number → fail ("contradicted") — downgraded to warn when the
    expected number does appear elsewhere in the answer (and not only as an echo of a
    number in the prompt) and no explicit marker names the other number, because "last
    number" is a heuristic.
* ``case.expect`` "yes"/"no"/"true"/"false" is a verdict, looked for after "the answer
  is", else as the first word standing before punctuation ("No, …"), else as the first
  such word anywhere ("…, so yes."; "no doubt" does not count), else as the first word; it
  must equal the expectation: the opposite → fail; none found, or a leading "No," undone
  by a later "the answer is yes" → warn.
* a numeric ``case.expect`` written with decimals accepts answers that round to it
  ("3.14" accepts 3.14159); an integer one needs the exact value.
* any other ``case.expect`` must be contained in the answer as whole words, normalized
  (case, accents, punctuation, thousands separators) → else fail.
* ``case.expect_regex`` must match (``re.search``, as written: add ``(?i)`` for case
  insensitivity) → else fail.

A loop that merely repeats the right answer is repetition's business, not a wrong answer:
when the answer's loop contains the expected answer, this detector stays silent; and an
answer cut at max_tokens does not count a number touching the cut as its final number.
Score: 0 when missing or contradicted, 0.5 for the warn cases.
"""

from __future__ import annotations

import re

from quantlab.detectors import repetition
from quantlab.detectors.context import Context
from quantlab.detectors.numbers import (
    FinalAnswer,
    Number,
    cut_number,
    final_number,
    find_numbers,
    parse_number,
    same_number,
)
from quantlab.detectors.textnorm import contains, fold, snippet
from quantlab.records import Finding, Severity

NAME = "expected_answer"

_VERDICTS = {"yes": "no", "no": "yes", "true": "false", "false": "true"}
# Where the verdict is, in order: after "the answer is"; the first word, standing before
# punctuation or the end ("No, …"); the first yes/no/true/false so standing anywhere (not
# "no doubt"); the first word however it goes on ("No fish can…").
_STANDS = r"\b(?=\s*(?:[.,!;:)\n—*]|$))"
_MARKED_VERDICT = re.compile(r"\banswer\s*(?:is|:)\W*(yes|no|true|false)\b", re.IGNORECASE)
_LEADING_VERDICT = re.compile(rf"[\W_]*(yes|no|true|false){_STANDS}", re.IGNORECASE)
_VERDICT_WORD = re.compile(rf"\b(yes|no|true|false){_STANDS}", re.IGNORECASE)
_LEADING_WORD = re.compile(r"[\W_]*(yes|no|true|false)\b", re.IGNORECASE)


def _fmt(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e15 else str(value)


def _matches(value: float, expected: float, decimals: int) -> bool:
    """Equal, or — when the expected answer is written with decimals — equal once rounded
    to that many decimals ("3.14" accepts 3.14159; "8" does not accept 7.5)."""
    if same_number(value, expected):
        return True
    return decimals > 0 and same_number(round(value, decimals), expected)


def _appears(ctx: Context, expected: float, decimals: int) -> list[Number]:
    """Where the expected number is in the answer, not counting echoes of prompt numbers."""
    prompt_values = [n.value for n in find_numbers(ctx.prompt or "")]
    return [
        n
        for n in find_numbers(ctx.text)
        if _matches(n.value, expected, decimals)
        and not any(same_number(n.value, p) for p in prompt_values)
    ]


def _could_become(cut: Number, expect: str) -> bool:
    """Whether a number cut by max_tokens ("4", "2.7", "twenty") may be the start of the
    expected one ("42", "2.72", "twenty-one"): then nothing can be said about it."""
    if not cut.raw[:1].isdigit() and not cut.raw.startswith(("$", "-", "−")):
        return True  # a number word: "twenty" may go on to "twenty-one"
    digits = re.sub(r"[^\d.]", "", cut.raw)
    wanted = re.sub(r"[^\d.]", "", expect)
    return wanted.startswith(digits)


def _check_capped(
    ctx: Context, expected: float, expect: str, decimals: int, final: FinalAnswer | None
) -> tuple[Severity, str] | None:
    """A capped answer with no explicit final answer: the model was still going, so its
    last number is only the last number *so far*, and an earlier number equal to the
    expected one is no answer (it may be an intermediate step: "4 * 2 = 8 dollars").

    * cut inside a number that may still become the expected one → warn (unverifiable);
    * cut inside a number that cannot ("…is 24" when 8 is expected), or last number so far
      different → fail: at the cut the answer was saying something else;
    * last number so far equal to the expected one, nothing after it cut → pass ("The
      secret number is 8812. It's a special number that…"): what the answer said last is
      right, and truncation already says it was capped.
    """
    cap = "capped at max_tokens before a final answer"
    earlier = _appears(ctx, expected, decimals)
    seen = f"; {expect} appears at char {earlier[0].start}" if earlier else ""
    cut = cut_number(ctx.text)
    if cut is not None:
        where = f"{snippet(cut.raw, 0)}… at char {cut.start}"
        if _could_become(cut, expect):
            return "warn", f"unverifiable: {cap}, cut inside a number ({where}), expected {expect}"
        return "fail", f"{cap}; it was giving {where}, expected {expect}{seen}"
    if final is None:
        return "fail", f"no number in the answer, expected {expect} (the answer was capped)"
    got = final.number
    so_far = f"last number so far {_fmt(got.value)} ({snippet(got.raw, 0)} at char {got.start})"
    if _matches(got.value, expected, decimals):
        return None  # it said the answer last; truncation already flags the cap
    return "fail", f"{cap}; {so_far}, expected {expect}{seen}"


def _check_number(ctx: Context, expected: float, expect: str) -> tuple[Severity, str] | None:
    frac = re.search(r"\.(\d+)", expect)
    decimals = len(frac.group(1)) if frac else 0
    final = final_number(ctx.text, truncated=ctx.capped)
    if final is not None and final.marked and _matches(final.number.value, expected, decimals):
        return None
    loop = ctx.loop
    if loop is not None and loop.repeats >= 2 and repetition.reports_loop(ctx, loop):
        in_loop = [n for n in find_numbers(ctx.text) if loop.start <= n.start < loop.end]
        if any(_matches(n.value, expected, decimals) for n in in_loop):
            return None  # a loop repeating the right answer: repetition reports it
    if ctx.capped and (final is None or not final.marked):
        return _check_capped(ctx, expected, expect, decimals, final)
    if final is None:
        return "fail", f"no number in the answer, expected {expect}"
    got = final.number
    if _matches(got.value, expected, decimals):
        return None
    elsewhere = _appears(ctx, expected, decimals)
    how = "final answer" if final.marked else "final number"
    evidence = (
        f"{how} {_fmt(got.value)} ({snippet(got.raw, 0)} at char {got.start}), expected {expect}"
    )
    if elsewhere and not final.marked:
        return "warn", evidence + f"; {expect} appears earlier at char {elsewhere[0].start}"
    return "fail", evidence


def _check_verdict(ctx: Context, expected: str) -> tuple[Severity, str] | None:
    text = ctx.text
    m = (
        _MARKED_VERDICT.search(text)
        or _LEADING_VERDICT.match(text)
        or _VERDICT_WORD.search(text)
        or _LEADING_WORD.match(text)
    )
    if m is None:
        opposite = _VERDICTS[expected]
        return "warn", f"neither {expected!r} nor {opposite!r} in the answer"
    said = m.group(1).lower()
    if said == expected:
        lead = _LEADING_VERDICT.match(text)
        if lead and lead.group(1).lower() == _VERDICTS[expected]:
            first = lead.group(1).lower()
            return "warn", f"contradicts itself: starts with {first!r}, then says {said!r}"
        return None
    return "fail", f"answers {said!r} (char {m.start(1)}), expected {expected!r}"


def _check_text(ctx: Context, expect: str) -> tuple[Severity, str] | None:
    if contains(ctx.text, expect):
        return None
    cut = " (the answer was capped at max_tokens)" if ctx.capped else ""
    return "fail", f"{expect!r} not in the answer{cut}"


def _check_regex(ctx: Context, pattern: str) -> tuple[Severity, str] | None:
    try:
        if re.search(pattern, ctx.text):
            return None
    except re.error as exc:
        return "warn", f"expect_regex {pattern!r} is not a valid regular expression: {exc}"
    return "fail", f"no match for /{pattern}/"


def check(ctx: Context) -> Finding | None:
    case = ctx.case
    if case is None or (case.expect is None and not case.expect_regex):
        return None
    problems: list[tuple[Severity, str]] = []
    if case.expect is not None and case.expect.strip():
        expect = case.expect.strip()
        number = parse_number(expect)
        verdict = fold(expect).strip()
        if number is not None:
            result = _check_number(ctx, number, expect)
        elif verdict in _VERDICTS:
            result = _check_verdict(ctx, verdict)
        else:
            result = _check_text(ctx, expect)
        if result:
            problems.append(result)
    if case.expect_regex:
        result = _check_regex(ctx, case.expect_regex)
        if result:
            problems.append(result)
    if not problems:
        return None
    severity: Severity = "fail" if any(s == "fail" for s, _ in problems) else "warn"
    score = 0.0 if severity == "fail" else 0.5
    return ctx.finding(NAME, severity, score, "; ".join(e for _, e in problems))
