"""``quantlab report SESSION --format md|longctx|brief|csv|json [-o FILE]``: export a session.

- ``md``: the failure-modes report (headline, pass rates with Wilson intervals, paired
  McNemar comparison that says when there are not enough cases to tell, long context,
  concurrency, capacity, latency, findings and annotations with examples, telemetry).
- ``longctx``: a JSON list, one object per long-context answer (``context_tokens``,
  ``prompt``, ``<lane>_output`` per lane, plus ``bf16_output``/``quant_output`` for a pair).
- ``brief``: the quantization risk brief draft, filled with the measured figures.
- ``csv``: one row per exchange per lane with every metric.
- ``json``: the whole analysis (the md report's numbers) as one object.

Written to stdout, or atomically to ``-o FILE``. A missing or unreadable session, or an
output file that cannot be written, is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from quantlab import fsio
from quantlab.session import Session, SessionError, load_session

FORMATS = ("md", "longctx", "brief", "csv", "json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "session_path",
        nargs="?",
        metavar="SESSION",
        help="the session file (X.json); --session PATH works too",
    )
    parser.add_argument(
        "--format",
        "-f",
        choices=FORMATS,
        default="md",
        help="md (default): failure-modes report; longctx: long-context JSON; brief: risk "
        "brief draft; csv: one row per exchange per lane; json: the whole analysis",
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    parser.add_argument(
        "--gpu-hour-price",
        type=float,
        metavar="USD",
        help="price of one GPU-hour for cost per 1M output tokens (default: the run's own)",
    )


def render(session: Session, fmt: str, *, gpu_hour_price: float | None = None) -> str:
    """The text of one report format for a loaded session."""
    if fmt == "csv":
        from quantlab.reports import csv_export

        return csv_export.render(session)
    if fmt == "longctx":
        from quantlab.reports import longctx

        return json.dumps(longctx.rows(session), ensure_ascii=False, indent=2) + "\n"
    from quantlab.reports.analysis import analyze

    analysis = analyze(session, gpu_hour_price=gpu_hour_price)
    if fmt == "md":
        from quantlab.reports import md

        return md.render(analysis)
    if fmt == "brief":
        from quantlab.reports import brief

        return brief.render(analysis)
    from quantlab.reports import json_export

    return json_export.render(analysis)


def _write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` whole or not at all, created ``0600``: a report quotes prompts and
    answers, which can be confidential."""
    fsio.atomic_write(path, text.encode("utf-8", "replace"))


def run(args: argparse.Namespace) -> int:
    path = args.session_path or getattr(args, "session", None)
    if not path:
        print("quantlab report: name a session file (quantlab report SESSION)", file=sys.stderr)
        return 2
    if args.gpu_hour_price is not None and not args.gpu_hour_price >= 0:
        print("quantlab report: --gpu-hour-price must be a number ≥ 0", file=sys.stderr)
        return 2
    try:
        session = load_session(path)
    except SessionError as exc:
        print(f"quantlab report: {exc}", file=sys.stderr)
        return 2
    try:
        text = render(session, args.format, gpu_hour_price=args.gpu_hour_price)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # The loader checks the structure; values a hand edit broke (a concurrency of "x",
        # a fact without a key) surface here: name the file and the problem, no traceback.
        print(
            f"quantlab report: {path}: a value in the session cannot be used "
            f"({type(exc).__name__}: {exc})",
            file=sys.stderr,
        )
        return 2
    if args.format == "longctx" and text.strip() == "[]":
        print(
            "quantlab report: no long-context answers in this session (run the long-context "
            "suite first); wrote an empty list",
            file=sys.stderr,
        )
    if args.output:
        out = Path(args.output)
        try:
            _write_atomic(out, text)
        except OSError as exc:
            print(f"quantlab report: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        print(f"quantlab report: wrote {args.format} to {out}", file=sys.stderr)
        return 0
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `quantlab report … | head`
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 0
    return 0
