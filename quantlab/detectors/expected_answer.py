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
* ``case.expect`` "yes"/"no"/"true"/"false" is a verdict: the first yes/no (true/false)
  word of the answer must equal it; the opposite word → fail; neither word → warn.
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

from quantlab.detectors.context import Context
from quantlab.detectors.numbers import final_number, find_numbers, parse_number, same_number
from quantlab.detectors.textnorm import contains, fold, snippet
from quantlab.records import Finding, Severity

NAME = "expected_answer"

_VERDICTS = {"yes": "no", "no": "yes", "true": "false", "false": "true"}
_VERDICT_WORD = re.compile(r"\b(yes|no|true|false)\b", re.IGNORECASE)


def _fmt(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e15 else str(value)


def _check_number(ctx: Context, expected: float, expect: str) -> tuple[Severity, str] | None:
    final = final_number(ctx.text, truncated=ctx.capped)
    if final is not None and same_number(final.number.value, expected):
        return None
    loop = ctx.loop
    if loop is not None and loop.repeats >= 2:
        in_loop = [n for n in find_numbers(ctx.text) if loop.start <= n.start < loop.end]
        if any(same_number(n.value, expected) for n in in_loop):
            return None  # a loop repeating the right answer: repetition reports it
    if final is None:
        cut = " (the answer was capped at max_tokens)" if ctx.capped else ""
        return "fail", f"no number in the answer, expected {expect}{cut}"
    prompt_values = [n.value for n in find_numbers(ctx.prompt or "")]
    elsewhere = [
        n
        for n in find_numbers(ctx.text)
        if same_number(n.value, expected)
        and not any(same_number(n.value, p) for p in prompt_values)
    ]
    got = final.number
    how = "final answer" if final.marked else "final number"
    evidence = (
        f"{how} {_fmt(got.value)} ({snippet(got.raw, 0)} at char {got.start}), expected {expect}"
    )
    if elsewhere and not final.marked:
        return "warn", evidence + f"; {expect} appears earlier at char {elsewhere[0].start}"
    return "fail", evidence


def _check_verdict(ctx: Context, expected: str) -> tuple[Severity, str] | None:
    m = _VERDICT_WORD.search(ctx.text)
    if m is None:
        opposite = _VERDICTS[expected]
        return "warn", f"neither {expected!r} nor {opposite!r} in the answer"
    said = m.group(1).lower()
    if said == expected:
        return None
    return "fail", f"answers {said!r} (char {m.start()}), expected {expected!r}"


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
