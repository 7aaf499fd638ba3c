"""``quantlab suites``: the built-in and user suites, and any user suite file that is broken.

One line per suite (name, kind, cases, where it comes from); ``--json`` prints one object
``{"suites": [{"name", "kind", "cases", "origin", "path", "description"}], "errors": [...]}``.
A broken user file is reported on stderr with its reason, the rest are still listed, and
the exit status is 1 so scripts notice.
"""

from __future__ import annotations

import argparse
import sys

import orjson

from quantlab.suites import SuiteError, catalog, user_dirs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    try:
        cat = catalog()
    except SuiteError as exc:  # a broken built-in suite: a packaging bug, said plainly
        print(f"quantlab suites: {exc}", file=sys.stderr)
        return 2
    suites = sorted(cat.suites.values(), key=lambda s: (s.origin != "built-in", s.name))
    if args.json:
        out = {
            "suites": [
                {
                    "name": s.name,
                    "kind": s.kind,
                    "cases": s.case_count,
                    "origin": s.origin,
                    "path": str(s.path) if s.path else None,
                    "description": s.description,
                }
                for s in suites
            ],
            "errors": cat.errors,
            "user_dirs": [str(d) for d in user_dirs()],
        }
        sys.stdout.write(orjson.dumps(out).decode() + "\n")
    else:
        rows = [
            (s.name, s.kind, s.case_count, s.origin if s.origin == "built-in" else str(s.path))
            for s in suites
        ]
        head = ("name", "kind", "cases", "from")
        w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        line = "  ".join(f"{{:<{x}}}" for x in w)
        print(line.format(*head).rstrip())
        for s, r in zip(suites, rows, strict=True):
            print(line.format(*r).rstrip())
            if s.description:
                print(f"    {s.description}")
        print(f"\nuser suites are read from: {', '.join(str(d) for d in user_dirs())}")
    for note in cat.shadowed:
        print(f"quantlab suites: note: {note}", file=sys.stderr)
    for err in cat.errors:
        print(f"quantlab suites: cannot use {err}", file=sys.stderr)
    return 1 if cat.errors else 0
