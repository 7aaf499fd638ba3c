"""The ``quantlab`` command line: parses flags and dispatches to one sub-command module.

Commands that open a UI (the default, ``demo``, ``top``) hand over to the ``tui`` package,
resolved by name at run time, so this core package never imports textual itself.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import io
import sys
from collections.abc import Sequence
from typing import Any

#: sub-command -> (module under quantlab.commands or tui, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("tui.launch:demo", "build (once) and start the local BF16 + Q4_0 pair, open the TUI"),
    "ask": ("quantlab.commands.ask", "send one prompt to all endpoints at once"),
    "run": ("quantlab.commands.run", "headless suite run with a progress bar, into a session file"),
    "report": ("quantlab.commands.report", "export a session: md | longctx | brief | csv | json"),
    "detect": ("quantlab.commands.detect", "run the failure detectors over recorded outputs"),
    "top": ("tui.launch:top", "telemetry and server stats only, no chat"),
    "up": ("quantlab.commands.up", "launch and supervise vLLM servers (reference + candidates)"),
    "suites": ("quantlab.commands.suites", "list built-in and user suites"),
    "web": ("quantlab.commands.web", "serve the TUI to a browser (127.0.0.1 unless --host)"),
}


#: The common flag groups (see :func:`add_common`).
GROUP_NAMES = ("lanes", "config", "session", "theme", "limits")

#: sub-command -> the common flag groups it reads; its ``--help`` shows those only.
GROUPS: dict[str, tuple[str, ...]] = {
    "demo": ("config", "session", "theme", "limits"),
    "ask": ("lanes", "config", "session", "limits"),
    "run": ("lanes", "config", "session", "limits"),
    "report": ("session",),
    "detect": (),
    "top": ("lanes", "config", "theme"),
    "up": (),
    "suites": (),
    "web": ("lanes", "config", "session", "theme"),
}

#: sub-command -> examples shown at the end of its ``--help``.
EXAMPLES: dict[str, tuple[str, ...]] = {
    "demo": ("quantlab demo", "quantlab demo --session sessions/today.json --theme light"),
    "ask": (
        'quantlab ask --demo "What is the capital of Australia?"',
        "echo 'Explain RAID 5' | quantlab ask --endpoint bf16=http://gpu:8000 "
        "--endpoint awq=http://gpu:8001 --json - | jq '.lanes[].text'",
    ),
    "run": (
        "quantlab run sanity --demo --quick",
        "quantlab run sanity distribution --endpoint bf16=http://gpu:8000 "
        "--endpoint awq=http://gpu:8001 --fail-on warn   # gate CI",
    ),
    "report": (
        "quantlab report sessions/2026-11-25T03-12-44_3f9a0c.json --format md -o report.md",
        "quantlab report run.json --format json | jq .headline",
    ),
    "detect": (
        "quantlab detect outputs.jsonl --min-severity warn",
        "quantlab detect outputs.jsonl --summary --fail-on never > findings.jsonl",
    ),
    "top": ("quantlab top --demo", "quantlab top --endpoint bf16=http://gpu:8000"),
    "up": (
        "quantlab up --ref bf16=Qwen/Qwen2.5-1.5B-Instruct --mem 0.4 "
        "--cand awq=Qwen/Qwen2.5-1.5B-Instruct-AWQ --mem 0.3",
        "quantlab up --dry-run --ref Qwen/Qwen2.5-1.5B-Instruct "
        "--cand Qwen/Qwen2.5-1.5B-Instruct-AWQ",
    ),
    "suites": ("quantlab suites", "quantlab suites --json | jq '.suites[].name'"),
    "web": ("quantlab web --demo", "quantlab web top --endpoint bf16=http://gpu:8000 --port 8080"),
}


def add_common(
    p: argparse.ArgumentParser, *, sub: bool = False, groups: tuple[str, ...] = GROUP_NAMES
) -> None:
    """The common flags of ``groups``, understood before or after the command name.

    On sub-commands the defaults are suppressed, so ``quantlab --endpoint a=URL ask …`` and
    ``quantlab ask --endpoint a=URL …`` mean the same: a sub-parser's default would
    otherwise overwrite what the top-level parser already read. The top-level parser (the
    chat) takes every group; a sub-command only the groups it reads (:data:`GROUPS`), so
    its ``--help`` lists only flags that do something there."""
    d = argparse.SUPPRESS if sub else None
    if "lanes" in groups:
        p.add_argument(
            "--endpoint",
            action="append",
            default=d if sub else [],
            metavar="NAME=URL",
            help="a server to compare (repeatable); the first is the reference",
        )
        p.add_argument(
            "--demo",
            action="store_true",
            default=d if sub else False,
            help="use the local BF16 + Q4_0 llama.cpp pair",
        )
    if "session" in groups:
        p.add_argument(
            "--session", metavar="PATH", default=d, help="session file to write or reopen"
        )
    if "config" in groups:
        p.add_argument(
            "--config", metavar="PATH", default=d, help="quantlab.toml (default: ./quantlab.toml)"
        )
    if "theme" in groups:
        p.add_argument(
            "--theme",
            default=d,
            help="theme name: a built-in one or a file in ~/.config/quantlab/themes",
        )
    if "limits" not in groups:
        return
    limits = p.add_argument_group("server limits (default: [client] in quantlab.toml)")
    limits.add_argument(
        "--connect-timeout", type=float, metavar="S", default=d, help="seconds to connect (10)"
    )
    limits.add_argument(
        "--stall-timeout",
        type=float,
        metavar="S",
        default=d,
        help="seconds without a byte from a server before its lane fails (60)",
    )
    limits.add_argument(
        "--total-timeout",
        type=float,
        metavar="S",
        default=d,
        help="seconds one answer may take in all (600)",
    )
    limits.add_argument(
        "--max-answer-bytes",
        type=int,
        metavar="N",
        default=d,
        help="stream bytes read per answer before quantlab cuts it off (8 MiB)",
    )


def epilog(name: str) -> str | None:
    """The examples block of a sub-command's ``--help``."""
    lines = EXAMPLES.get(name)
    if not lines:
        return None
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _resolve(target: str) -> Any:
    mod_name, _, attr = target.partition(":")
    mod = importlib.import_module(mod_name)
    return getattr(mod, attr) if attr else mod


#: Entry points that start with the garbage collector paused (see :func:`main`): those
#: whose app turns it back on after the first frame.
GC_PAUSED = ("tui.launch:chat", "tui.launch:demo")

#: :func:`build_parser`'s ``only`` meaning every sub-command's own flags.
ALL = "*"


def command_of(argv: Sequence[str]) -> str | None:
    """The sub-command ``argv`` names (None: the chat), found without importing any.

    Adding a sub-command's own flags imports its module (``ask`` pulls in the client, the
    pipeline and the detectors: ~0.2 s), which a plain ``quantlab`` should not pay before
    its first frame. This first pass knows only the common flags and the names; anything
    it cannot parse gives :data:`ALL`, so the full parser reports the error as before."""
    p = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    add_common(p)
    sub = p.add_subparsers(dest="command")
    for name in COMMANDS:
        sub.add_parser(name, add_help=False, exit_on_error=False)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            ns, _ = p.parse_known_args(list(argv))
    except (SystemExit, argparse.ArgumentError):
        return ALL
    return ns.command


def build_parser(only: str | None = ALL) -> argparse.ArgumentParser:
    """The whole parser; ``only`` names the one sub-command whose own flags are added
    (None: none, for the chat; :data:`ALL`: every one's, for help and tests)."""
    parser = argparse.ArgumentParser(
        prog="quantlab",
        description="A terminal lab: does the quantized model replace its BF16 original?",
    )
    add_common(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (target, help_text) in COMMANDS.items():
        sp = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=epilog(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_common(sp, sub=True, groups=GROUPS.get(name, GROUP_NAMES))
        if not target.startswith("tui.") and only in (ALL, name):
            try:
                _resolve(target).add_arguments(sp)
            except ImportError as exc:  # e.g. a dependency missing from this environment
                sp.set_defaults(_missing=_missing_words(exc))
    return parser


def _missing_words(exc: ImportError) -> str:
    """Name what is missing: a package is the usual cause, and the fix."""
    name = getattr(exc, "name", None)
    if name:
        top = name.split(".")[0]
        return f"the package {top!r} is missing ({exc}); pip install {top}, or reinstall quantlab"
    return str(exc)


def pass_through_options(only: str | None = ALL) -> tuple[str, ...]:
    """Options whose value may itself start with "-" (``--vllm-arg --enforce-eager``)."""
    found: list[str] = []
    for name, (target, _) in COMMANDS.items():
        if target.startswith("tui.") or only not in (ALL, name):
            continue
        try:
            found.extend(getattr(_resolve(target), "PASS_THROUGH", ()))
        except ImportError:
            continue
    return tuple(found)


def join_pass_through(argv: Sequence[str], options: Sequence[str]) -> list[str]:
    """``--opt -x`` -> ``--opt=-x`` for pass-through options: argparse takes a value that
    starts with "-" for another option and refuses ("expected one argument"), so the value
    is attached before it parses. Anything after ``--`` is left alone."""
    out: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        arg = items[i]
        if arg == "--":
            out.extend(items[i:])
            break
        if arg in options and i + 1 < len(items) and items[i + 1].startswith("-"):
            out.append(f"{arg}={items[i + 1]}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    only = command_of(raw)
    parser = build_parser(only)
    args, unknown = parser.parse_known_args(join_pass_through(raw, pass_through_options(only)))
    if unknown and not getattr(args, "_missing", None):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    name = args.command or "quantlab"
    if getattr(args, "_missing", None):
        print(f"quantlab {name}: not available: {args._missing}", file=sys.stderr)
        return 2
    target = "tui.launch:chat" if args.command is None else COMMANDS[args.command][0]
    if target in GC_PAUSED:
        # The chat's imports and first layout make ~1M objects: cyclic collections during
        # them cost ~35 ms of its first frame. The app collects, freezes and turns the
        # collector back on once it has painted (tui.app._freeze_gc); `finally` below
        # makes sure it is back on however the command ends.
        gc.disable()
    try:
        entry = _resolve(target)
    except ImportError as exc:  # e.g. textual missing for the UI commands
        gc.enable()
        print(f"quantlab {name}: not available: {_missing_words(exc)}", file=sys.stderr)
        return 2
    try:
        if ":" in target:
            return int(entry(args) or 0)
        return int(entry.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        gc.enable()


if __name__ == "__main__":
    sys.exit(main())
