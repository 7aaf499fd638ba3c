"""format: the answer breaks the format the case asked for (``case.format``).

* "json": the answer must be valid JSON (``json.loads``). A reply that is exactly one
  fenced block (```json … ``` or ``` … ```) holding valid JSON passes: chat models fence
  JSON by habit and every consumer strips the fence, so failing it would measure style,
  not damage. Valid JSON embedded in other text ("Here is the JSON: {…} In this example…")
  → warn (extractable, but "JSON only" was ignored). No parseable JSON → fail, with the
  parser's message and where it broke.
* "one_line": exactly one non-empty line → else fail.
* "yes_no": the first word is "yes" or "no" (markdown emphasis and quotes ignored) → pass;
  a yes/no later in the answer → warn; none at all → fail.
* "number": the whole answer is one number ("42", "$1,200.", "12.5%") → pass; a number
  with other text ("17 + 25 = 42.") → warn; no number → fail.
* any other value → warn that the format is unknown, so a typo in a suite never passes
  silently.

Score: 1 = the format holds, 0.5 = warn cases, 0 = broken.
"""

from __future__ import annotations

import json
import re

from quantlab.detectors.context import Context
from quantlab.detectors.numbers import find_numbers, parse_number
from quantlab.detectors.textnorm import snippet
from quantlab.records import Finding, Severity

NAME = "format"
FORMATS = ("json", "one_line", "yes_no", "number")

#: How many "{" / "[" positions are tried when looking for JSON inside prose.
JSON_SCAN_LIMIT = 20

_FENCE = re.compile(r"\A```[A-Za-z0-9_+-]*[ \t]*\n(?P<body>.*?)\n?```\Z", re.DOTALL)
_FIRST_WORD = re.compile(r"[\W_]*([A-Za-z]+)")
_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def _bracket_end(text: str, start: int) -> int:
    """Where the bracket opened at ``start`` closes (strings skipped), or the text's end."""
    depth, i, n = 0, start, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


def _check_json(text: str) -> tuple[Severity, str] | None:
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group("body").strip()
    try:
        json.loads(body)
        return None
    except json.JSONDecodeError as exc:
        error = exc
    decoder = json.JSONDecoder()
    starts = [m.start() for m in re.finditer(r"[\[{]", text)][:JSON_SCAN_LIMIT]
    skip_to = 0
    for start in starts:
        if start < skip_to:
            continue  # inside a bracket that did not parse (truncated JSON, not prose)
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            skip_to = _bracket_end(text, start)
            continue
        if isinstance(value, dict | list) and end - start >= 2:
            return "warn", (
                f"valid JSON at chars {start}–{end} inside other text: {snippet(text, 0, width=40)}"
            )
    where = max(0, error.pos - 20)
    return "fail", (
        f"invalid JSON: {error.msg} (line {error.lineno}, col {error.colno}) near "
        f"{snippet(body, where, error.pos + 20, width=40)}"
    )


def _check_one_line(text: str) -> tuple[Severity, str] | None:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) <= 1:
        return None if lines else ("fail", "no line at all")
    return "fail", f"{len(lines)} lines, expected one; line 2: {snippet(lines[1], 0, width=40)}"


def _check_yes_no(text: str) -> tuple[Severity, str] | None:
    first = _FIRST_WORD.match(text)
    if first and first.group(1).lower() in ("yes", "no"):
        return None
    later = _YES_NO.search(text)
    start = snippet(text, 0, width=40)
    if later:
        return (
            "warn",
            f"does not start with yes/no ({later.group(1)!r} at char {later.start()}): {start}",
        )
    return "fail", f"no yes/no in the answer: {start}"


def _check_number(text: str) -> tuple[Severity, str] | None:
    body = text.strip()
    if parse_number(body) is not None:
        return None
    if find_numbers(body):
        return "warn", f"a number with other text: {snippet(body, 0, width=40)}"
    return "fail", f"no number in the answer: {snippet(body, 0, width=40)}"


_CHECKS = {
    "json": _check_json,
    "one_line": _check_one_line,
    "yes_no": _check_yes_no,
    "number": _check_number,
}


def check(ctx: Context) -> Finding | None:
    if ctx.case is None or not ctx.case.format:
        return None
    wanted = ctx.case.format.strip().lower().replace("-", "_")
    checker = _CHECKS.get(wanted)
    if checker is None:
        known = ", ".join(FORMATS)
        return ctx.finding(
            NAME, "warn", 0.5, f"unknown format {ctx.case.format!r} (known: {known})"
        )
    result = checker(ctx.text)
    if result is None:
        return None
    severity, evidence = result
    if ctx.capped and severity != "info":
        evidence += "; the answer was capped at max_tokens"
    return ctx.finding(NAME, severity, 0.0 if severity == "fail" else 0.5, f"{wanted}: {evidence}")
