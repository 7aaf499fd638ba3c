"""The command line contract: common flags mean the same before or after the command."""

from __future__ import annotations

import re
from pathlib import Path

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


def test_a_command_whose_imports_fail_names_the_missing_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not "unrecognized arguments: sanity …": the command's own arguments are accepted
    and the message says which package is missing."""
    import sys

    from quantlab import cli

    (tmp_path / "needs_missing_pkg.py").write_text("import rapidfuzz_not_installed_here\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, "run", ("needs_missing_pkg", "headless suite run"))
    monkeypatch.delitem(sys.modules, "needs_missing_pkg", raising=False)
    assert cli.main(["run", "sanity", "--concurrency", "4"]) == 2
    err = capsys.readouterr().err
    assert "rapidfuzz_not_installed_here" in err and "missing" in err
    assert "unrecognized" not in err


GROUP_FLAGS = {
    "lanes": ("--endpoint", "--demo"),
    "config": ("--config",),
    "session": ("--session",),
    "theme": ("--theme",),
    "limits": ("--connect-timeout", "--stall-timeout", "--total-timeout", "--max-answer-bytes"),
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_help_shows_only_the_flags_its_command_uses_and_examples(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from quantlab.cli import GROUPS

    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([name, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    words = set(text.replace(",", " ").replace("[", " ").replace("]", " ").split())
    for group, flags in GROUP_FLAGS.items():
        for flag in flags:
            assert (flag in words) == (group in GROUPS[name]), (name, flag)
    examples = text.split("examples:\n", 1)[1].splitlines()
    assert 1 <= len(examples) <= 2 and all(re.search(rf"quantlab {name}\b", e) for e in examples)


def test_a_flag_the_command_does_not_use_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from quantlab.cli import main

    with pytest.raises(SystemExit) as done:
        main(["detect", "x.jsonl", "--endpoint", "a=http://h:1"])
    assert done.value.code == 2
    assert "unrecognized arguments: --endpoint" in capsys.readouterr().err
