"""What the chat's first frame must not wait for (benchmarks/first_frame.py measures it).

Each check runs in a fresh interpreter, since this test process has imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

#: Imported late: after the first frame (runner, telemetry) or at the first answer.
LATE = (
    "numpy",
    "rapidfuzz",
    "quantlab.detectors",
    "quantlab.runner",
    "prometheus_client",
    "tui.widgets.runner.runner_pane",
    "tui.widgets.telemetry.telemetry_pane",
    "tui.widgets.chat.params_dialog",
    "tui.widgets.common.annotate",
    "quantlab.commands.ask",
    "quantlab.commands.run",
)


def _modules_after(code: str) -> dict[str, bool]:
    script = textwrap.dedent(code) + textwrap.dedent(f"""
        import json, sys
        print(json.dumps({{m: m in sys.modules for m in {list(LATE)!r}}}))
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    result: dict[str, bool] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_the_chat_module_and_its_parser_import_nothing_heavy() -> None:
    loaded = _modules_after("""
        from quantlab.cli import build_parser, command_of
        assert command_of(["--endpoint", "a=http://x:1"]) is None
        build_parser(None).parse_known_args(["--endpoint", "a=http://x:1"])
        import tui.app, tui.launch
    """)
    assert [m for m, yes in loaded.items() if yes] == []


def test_a_sub_command_imports_only_its_own_module() -> None:
    loaded = _modules_after("""
        from quantlab.cli import build_parser, command_of
        only = command_of(["--session", "s.json", "report", "s.json"])
        assert only == "report", only
        build_parser(only)
    """)
    assert not loaded["quantlab.commands.ask"] and not loaded["quantlab.commands.run"]


def test_a_parse_error_still_builds_the_whole_parser() -> None:
    from quantlab.cli import ALL, command_of

    assert command_of(["--endpoint"]) == ALL  # missing value: the full parser says so
    assert command_of(["ask", "--json", "hi"]) == "ask"
    assert command_of([]) is None


def test_the_app_mounts_runner_and_telemetry_after_its_first_frame() -> None:
    import asyncio

    from quantlab.records import Endpoint
    from tui.app import QuantlabApp

    async def go() -> tuple[int, int]:
        eps = [Endpoint("a", "http://127.0.0.1:9"), Endpoint("b", "http://127.0.0.1:10")]
        app = QuantlabApp(endpoints=eps)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            return len(app.query("#runner")), len(app.query("#telemetry"))

    assert asyncio.run(go()) == (1, 1)
