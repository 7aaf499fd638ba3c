"""The command line contract: common flags mean the same before or after the command."""

from __future__ import annotations

import pytest

from quantlab.cli import COMMANDS, build_parser


@pytest.mark.parametrize(
    "argv",
    [
        ["--endpoint", "a=http://h:1", "--demo", "--session", "s.json", "ask", "hi"],
        ["ask", "--endpoint", "a=http://h:1", "--demo", "--session", "s.json", "hi"],
    ],
)
def test_common_flags_before_or_after_the_command(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.command, args.endpoint, args.demo, args.session) == (
        "ask",
        ["a=http://h:1"],
        True,
        "s.json",
    )


def test_every_contract_command_exists() -> None:
    contract = {"demo", "ask", "run", "report", "detect", "top", "up", "suites", "web"}
    assert set(COMMANDS) == contract
    args = build_parser().parse_args([])
    assert args.command is None and args.endpoint == [] and args.demo is False
