"""Progress lines and server facts show what is known and nothing else: no "None", no
"1.0", no trailing "100%" on a stage announced as complete, no made-up version."""

from __future__ import annotations

import io

import pytest

from quantlab.backends.llamacpp import llama_build
from quantlab.commands import run as run_command
from quantlab.localpair import TextProgress


def test_run_progress_prints_the_message_only(capsys: pytest.CaptureFixture[str]) -> None:
    run_command._progress("starting the llama.cpp servers", None)
    run_command._progress("local pair ready: bf16, q4_0", 1.0)
    run_command._progress("building BF16 reference", 0.5)
    assert capsys.readouterr().err.splitlines() == [
        "quantlab run: starting the llama.cpp servers",
        "quantlab run: local pair ready: bf16, q4_0",
        "quantlab run: building BF16 reference",
    ]


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_progress_draws_no_bar_for_a_finished_stage() -> None:
    out = Tty()
    with TextProgress(out, prefix="") as p:
        p("building BF16 reference", 0.5)
        p("local pair ready: bf16, q4_0", 1.0)
    last = out.getvalue().split("\r\x1b[2K")[-1]
    assert last == "local pair ready: bf16, q4_0\n"
    assert "[############............]  50%" in out.getvalue()  # a stage in progress has one


@pytest.mark.parametrize(
    ("build", "shown"),
    [
        ("b0-unknown", None),
        ("unknown", None),
        ("", None),
        (None, None),
        ("b4567-1a2b3c", "b4567-1a2b3c"),
    ],
)
def test_llama_cpp_placeholder_build_is_no_version(build: str | None, shown: str | None) -> None:
    assert llama_build(build) == shown
