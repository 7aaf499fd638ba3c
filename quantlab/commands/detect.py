"""``quantlab detect FILE.jsonl``: run the failure detectors over recorded outputs.

Input: one JSON object per line::

    {"id": "q1", "prompt": "…", "expect": "42", "bf16": {"text": "…", "finish_reason": "stop"},
     "awq": {"text": "…", "finish_reason": "length"}}

Every key whose value is an object holding a "text" is a lane, in file order; the first
lane is the reference (divergence compares every other lane against it). Optional checks
per record: "expect", "expect_regex", "facts" (list of {key, value, depth?, aliases?}),
"format", "max_tokens". Output: one JSON line per finding,
``{"id", "lane", "detector", "severity", "score", "evidence"}``.

Bad input never stops the run: a line that is not JSON, a record with no lanes, a malformed
check is reported on stderr with its line number, the rest is processed, and the exit
status is 2. Otherwise it is 1 when a finding at ``--fail-on`` severity or worse was found
(default ``fail``; ``warn``; ``never``), said in one line on stderr, so it can gate CI; 0
else. ``--min-severity`` only chooses what is printed, not what the gate counts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from quantlab.detectors import DETECTORS, detect
from quantlab.gate import add_fail_on, gate_message, tripped
from quantlab.records import Case, Fact, SamplingParams
from quantlab.textsafe import json_safe

SEVERITIES = ("info", "warn", "fail")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.jsonl", help="recorded outputs; '-' reads stdin")
    parser.add_argument(
        "--min-severity",
        choices=SEVERITIES,
        default="info",
        help="print only findings at least this severe (default: all)",
    )
    parser.add_argument(
        "--detector",
        action="append",
        choices=list(DETECTORS),
        metavar="NAME",
        help=f"run only this detector (repeatable): {', '.join(DETECTORS)}",
    )
    parser.add_argument(
        "--summary",
        action="store_true",
        help="also print finding counts per lane, detector and severity to stderr",
    )
    add_fail_on(parser)


class BadRecord(ValueError):
    """A record that cannot be used as given; the message says why."""


def _lanes(record: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(k, v) for k, v in record.items() if isinstance(v, dict) and "text" in v]


def _facts(raw: Any) -> list[Fact]:
    if not isinstance(raw, list):
        raise BadRecord('"facts" must be a list of {"key", "value", …} objects')
    facts = []
    for i, f in enumerate(raw):
        if not isinstance(f, dict) or "value" not in f:
            raise BadRecord(f'"facts"[{i}] needs at least a "value"')
        aliases = f.get("aliases") or []
        if not isinstance(aliases, list):
            raise BadRecord(f'"facts"[{i}].aliases must be a list of strings')
        try:
            depth = float(f.get("depth", 0.5))
        except (TypeError, ValueError):
            raise BadRecord(f'"facts"[{i}].depth must be a number') from None
        facts.append(
            Fact(
                key=str(f.get("key", f"fact {i + 1}")),
                value=str(f["value"]),
                depth=depth,
                aliases=[str(a) for a in aliases],
            )
        )
    return facts


def build_case(record: dict[str, Any], rid: str) -> tuple[Case, list[str]]:
    """The Case a record describes, and messages about the checks that had to be dropped."""
    problems: list[str] = []
    prompt = record.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        problems.append('"prompt" is not a string; ignored')
        prompt = None
    case = Case(id=rid, messages=[{"role": "user", "content": prompt or ""}])
    expect = record.get("expect")
    if expect is not None:
        if isinstance(expect, bool):
            expect = "yes" if expect else "no"
        if isinstance(expect, (str, int, float)):
            case.expect = str(expect)
        else:
            problems.append('"expect" must be a string or a number; ignored')
    regex = record.get("expect_regex")
    if regex is not None:
        try:
            re.compile(str(regex))
            case.expect_regex = str(regex)
        except re.error as exc:
            problems.append(f'"expect_regex" is not a valid regular expression ({exc}); ignored')
    if record.get("facts") is not None:
        try:
            case.facts = _facts(record["facts"])
        except BadRecord as exc:
            problems.append(f"{exc}; facts ignored")
    fmt = record.get("format")
    if fmt is not None:
        if isinstance(fmt, str):
            case.format = fmt
        else:
            problems.append('"format" must be a string; ignored')
    max_tokens = record.get("max_tokens")
    if max_tokens is not None:
        if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0:
            case.params = SamplingParams(max_tokens=max_tokens)
        else:
            problems.append('"max_tokens" must be a positive integer; ignored')
    return case, problems


def findings_for(
    record: dict[str, Any], rid: str, only: tuple[str, ...] | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """(output rows, problems) for one record. Raises BadRecord when it has no lanes."""
    lanes = _lanes(record)
    if not lanes:
        raise BadRecord('no lanes (a lane is a key whose value is an object with a "text")')
    case, problems = build_case(record, rid)
    reference_text: str | None = None
    rows: list[dict[str, Any]] = []
    for index, (lane, value) in enumerate(lanes):
        text = value.get("text")
        if not isinstance(text, str):
            problems.append(f'lane "{lane}": "text" is not a string; lane skipped')
            if index == 0:
                problems.append("no reference text: divergence not checked")
            continue
        finish = value.get("finish_reason")
        if finish is not None and not isinstance(finish, str):
            problems.append(f'lane "{lane}": "finish_reason" is not a string; ignored')
            finish = None
        if index == 0:
            reference_text = text
        found = detect(
            text,
            case=case,
            reference=None if index == 0 else reference_text,
            finish_reason=finish,
            lane=lane,
            only=only,
        )
        rows.extend(
            {
                "id": rid,
                "lane": f.lane,
                "detector": f.detector,
                "severity": f.severity,
                "score": f.score,
                "evidence": f.evidence,
            }
            for f in found
        )
    return rows, problems


def _read_lines(path: str) -> Iterator[tuple[int, str]]:
    if path == "-":
        yield from enumerate(sys.stdin, 1)
        return
    with open(path, encoding="utf-8", errors="replace") as fh:
        yield from enumerate(fh, 1)


def process(
    lines: Iterable[tuple[int, str]],
    out: TextIO,
    err: TextIO,
    *,
    min_severity: str = "info",
    only: tuple[str, ...] | None = None,
    name: str = "input",
) -> tuple[int, Counter[tuple[str, str, str]]]:
    """Run the detectors over numbered JSON lines; returns (bad line count, counts)."""
    floor = SEVERITIES.index(min_severity)
    bad = 0
    counts: Counter[tuple[str, str, str]] = Counter()
    for lineno, line in lines:
        if not line.strip():
            continue
        where = f"{name}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            print(f"{where}: not JSON ({exc.msg} at column {exc.colno}); skipped", file=err)
            bad += 1
            continue
        if not isinstance(record, dict):
            print(f"{where}: not a JSON object; skipped", file=err)
            bad += 1
            continue
        rid = record.get("id")
        if rid is None or isinstance(rid, (dict, list)):
            rid = f"line {lineno}"
            print(f'{where}: no usable "id"; reported as "{rid}"', file=err)
            bad += 1
        try:
            rows, problems = findings_for(record, str(rid), only)
        except BadRecord as exc:
            print(f"{where}: {exc}; skipped", file=err)
            bad += 1
            continue
        if problems:
            bad += 1
            for p in problems:
                print(f"{where}: {p}", file=err)
        for row in rows:
            counts[(row["lane"], row["detector"], row["severity"])] += 1
            if SEVERITIES.index(row["severity"]) >= floor:
                out.write(json_safe(json.dumps(row, ensure_ascii=False)) + "\n")
    return bad, counts


def _print_summary(counts: Counter[tuple[str, str, str]], err: TextIO) -> None:
    lanes = sorted({k[0] for k in counts})
    print("findings per lane and detector (fail/warn/info):", file=err)
    for lane in lanes:
        for det in DETECTORS:
            cells = [counts[(lane, det, s)] for s in ("fail", "warn", "info")]
            if any(cells):
                print(f"  {lane:12} {det:16} {cells[0]:3} / {cells[1]:3} / {cells[2]:3}", file=err)


def run(args: argparse.Namespace) -> int:
    name = "stdin" if args.file == "-" else args.file
    only = tuple(args.detector) if args.detector else None
    try:
        bad, counts = process(
            _read_lines(args.file),
            sys.stdout,
            sys.stderr,
            min_severity=args.min_severity,
            only=only,
            name=name,
        )
    except BrokenPipeError:
        # The reader went away (`quantlab detect f.jsonl | head`): stop quietly, and keep
        # the interpreter's final flush from complaining about the closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as exc:
        print(f"quantlab detect: cannot read {name}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if args.summary:
        _print_summary(counts, sys.stderr)
    if bad:
        return 2
    hits = tripped(counts, args.fail_on)
    if hits:
        print(gate_message("quantlab detect", hits, args.fail_on), file=sys.stderr)
        return 1
    return 0
