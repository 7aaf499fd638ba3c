"""The ``quantlab`` command line: parses flags and dispatches to one sub-command module.

Commands that open a UI (the default, ``demo``, ``top``) hand over to the ``tui`` package,
resolved by name at run time, so this core package never imports textual itself.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: sub-command -> (module under quantlab.commands or tui, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("tui.launch:demo", "build (once) and start the local BF16 + Q4_0 pair, open the TUI"),
    "ask": ("quantlab.commands.ask", "send one prompt to all endpoints at once"),
    "run": ("quantlab.commands.run", "headless suite run with a progress bar, into a session file"),
    "report": ("quantlab.commands.report", "export a session: md | longctx | brief | csv | json"),
    "detect": ("quantlab.commands.detect", "run the failure detectors over recorded outputs"),
    "top": ("tui.launch:top", "telemetry and server stats only, no chat"),
    "up": ("quantlab.commands.up", "launch and supervise vLLM servers (BF16 + quant on one GPU)"),
    "suites": ("quantlab.commands.suites", "list built-in and user suites"),
    "web": ("quantlab.commands.web", "serve the TUI to a browser (127.0.0.1 unless --host)"),
}


def add_common(p: argparse.ArgumentParser, *, sub: bool = False) -> None:
    """Flags every command understands (DESIGN.md, command line contract).

    On sub-commands the defaults are suppressed, so ``quantlab --endpoint a=URL ask …`` and
    ``quantlab ask --endpoint a=URL …`` mean the same: a sub-parser's default would
    otherwise overwrite what the top-level parser already read."""
    d = argparse.SUPPRESS if sub else None
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
    p.add_argument("--session", metavar="PATH", default=d, help="session file to write or reopen")
    p.add_argument(
        "--config", metavar="PATH", default=d, help="quantlab.toml (default: ./quantlab.toml)"
    )
    p.add_argument("--theme", default=d, help="theme name (a file in themes/)")


def _resolve(target: str) -> object:
    mod_name, _, attr = target.partition(":")
    mod = importlib.import_module(mod_name)
    return getattr(mod, attr) if attr else mod


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quantlab",
        description="A terminal lab: does the quantized model replace its BF16 original?",
    )
    add_common(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (target, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        add_common(sp, sub=True)
        if not target.startswith("tui."):
            try:
                _resolve(target).add_arguments(sp)
            except ModuleNotFoundError as exc:  # a command whose module is not built yet
                sp.set_defaults(_missing=str(exc))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command is None:
            return int(_resolve("tui.launch:chat")(args) or 0)
        target = COMMANDS[args.command][0]
        if getattr(args, "_missing", None):
            print(f"quantlab {args.command}: not available ({args._missing})", file=sys.stderr)
            return 2
        if target.startswith("tui."):
            return int(_resolve(target)(args) or 0)
        return int(_resolve(target).run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
