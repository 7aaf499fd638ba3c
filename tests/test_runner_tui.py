"""The runner pane, the compare view and the annotation form in a tiny Textual app, on the
real local pair: run a suite, annotate, confirm/dismiss a finding, follow a headless run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.widgets import DataTable, OptionList

from quantlab.records import Annotation, Endpoint
from quantlab.runner import RunOptions
from quantlab.session import SessionStore, load_session
from quantlab.suites import find_suite
from tui.widgets.common.annotate import AnnotationForm
from tui.widgets.runner.compare import CompareView, highlighted_text
from tui.widgets.runner.runner_pane import RunnerPane

pytestmark = pytest.mark.slow


class PaneApp(App[None]):
    def __init__(self, pane: RunnerPane) -> None:
        super().__init__()
        self.pane = pane

    def compose(self) -> ComposeResult:
        yield self.pane


class FormApp(App[None]):
    """Pushes the form and keeps what it returns."""

    def __init__(self, form: AnnotationForm) -> None:
        super().__init__()
        self.form = form
        self.result: Annotation | str | None = "not yet"

    def on_mount(self) -> None:
        def done(a: Annotation | None) -> None:
            self.result = a

        self.push_screen(self.form, done)


async def _wait(pilot: Any, cond: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await pilot.pause(0.1)


def _copies(endpoints: list[Endpoint]) -> list[Endpoint]:
    return [Endpoint.from_dict(e.to_dict()) for e in endpoints]


def test_highlight_marks_the_first_differing_character() -> None:
    c = highlighted_text("abcdef", 2)
    assert c.plain == "abcdef"
    spans = [(s.start, s.end, str(s.style)) for s in c.spans]
    assert (2, 3, "reverse") in spans
    assert highlighted_text("abc", 3).plain.endswith("(ends here)")
    assert highlighted_text("abc", None).spans == []


async def test_annotation_form_builds_the_annotation_from_keys() -> None:
    app = FormApp(AnnotationForm("ex1", ["bf16", "q4_0"], lane="q4_0", prompt="Why?"))
    async with app.run_test(size=(110, 45)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+s")  # nothing chosen yet: the form says why and stays
        await pilot.pause()
        assert app.result == "not yet"
        error = app.screen.query_one("#annotate-error").render()
        assert "choose at least one tag" in str(error)
        await pilot.press("space")  # the tag list has focus: "repetition loop"
        await pilot.press("down", "down", "down", "space")  # "hallucination/wrong fact"
        await pilot.click("#annotate-sev-3")
        await pilot.click("#annotate-note")
        await pilot.press(*"loops on the date")
        await pilot.press("enter")
        await pilot.pause()
    a = app.result
    assert isinstance(a, Annotation)
    assert a.exchange_id == "ex1" and a.lane == "q4_0"
    assert a.tags == ["repetition loop", "hallucination/wrong fact"]
    assert a.severity == 3 and a.note == "loops on the date"


async def test_runner_pane_runs_annotates_and_judges_findings_into_the_session(
    local_pair: list[Endpoint], tmp_path: Path
) -> None:
    eps = _copies(local_pair)
    path = tmp_path / "tui.json"
    store = SessionStore.open(path, endpoints=eps)
    base = find_suite("sanity")
    suite = replace(base, cases=[c for c in base.cases if c.id in ("json-lisbon", "arith-mul")])
    pane = RunnerPane(eps, store=store, suites=[suite], id="runner")
    app = PaneApp(pane)
    try:
        async with app.run_test(size=(140, 50)) as pilot:
            await pilot.pause()
            table = pane.query_one("#runner-table", DataTable)
            await pilot.click("#runner-start")  # "sanity" is ticked by default, both lanes
            await _wait(pilot, lambda: pane.runner is not None or len(pane.exchanges) == 2)
            await _wait(pilot, lambda: pane.runner is None and len(pane.exchanges) == 2)
            assert table.row_count == 4  # 2 cases x 2 lanes
            statuses = {str(table.get_row(k)[3]) for k in table.rows}
            assert statuses == {"done"}
            status = str(pane.query_one("#runner-status").render())
            assert "2/2" in status and "finished" in status
            # Highlight the Q4_0 row of json-lisbon: the compare view shows both lanes.
            keys = [k.value for k in table.rows]
            target = next(k for k in keys if "json-lisbon" in k and k.endswith("|q4_0"))
            table.focus()
            table.move_cursor(row=keys.index(target))
            await pilot.pause()
            view = pane.query_one(CompareView)
            assert view.exchange is not None and view.exchange.case_id == "json-lisbon"
            assert len(view.query(".compare-lane")) == 2
            assert "repetition" in str(table.get_row(target)[7])
            # Annotate it (key "a"): lane preselected, one tag, a note, ctrl+s.
            await pilot.press("a")
            await pilot.pause()
            assert isinstance(app.screen, AnnotationForm)
            await pilot.press("space")
            await pilot.click("#annotate-note")
            await pilot.press(*"loops on braces")
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert not isinstance(app.screen, AnnotationForm)
            # Dismiss the repetition finding from the compare view's list.
            findings = view.query_one("#compare-findings", OptionList)
            findings.focus()
            idx = next(
                i
                for i, f in enumerate(view._findings)
                if f.lane == "q4_0" and f.detector == "repetition"
            )
            findings.highlighted = idx
            await pilot.press("d")
            await pilot.pause()
            assert "repetition (dismissed)" in str(table.get_row(target)[7])  # in sight
            ex_id = view.exchange.id
    finally:
        store.close()
    s = load_session(path)
    assert len(s.exchanges) == 2
    notes = s.annotations_for(ex_id)
    assert len(notes) == 1
    assert notes[0].lane == "q4_0" and notes[0].tags == ["repetition loop"]
    assert notes[0].note == "loops on braces"
    ex = s.exchange(ex_id)
    assert ex is not None
    rep = [f for f in ex.results["q4_0"].findings if f.detector == "repetition"]
    assert rep and rep[0].status == "dismissed"
    assert s.finding_status[-1]["status"] == "dismissed"


async def test_runner_pane_follows_a_headless_run_as_it_writes(
    local_pair: list[Endpoint], tmp_path: Path
) -> None:
    path = tmp_path / "live.json"
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    flags = [f for e in local_pair for f in ("--endpoint", f"{e.name}={e.base_url}")]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "quantlab",
            "run",
            "sanity",
            "--quick",
            "--fail-on",  # this test is about following the file, not gating on findings
            "never",
            *flags,
            "--session",
            str(path),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not path.exists():
            assert time.monotonic() < deadline and proc.poll() is None, "run did not start"
            time.sleep(0.05)
        pane = RunnerPane(follow=path, id="runner")
        app = PaneApp(pane)
        async with app.run_test(size=(140, 50)) as pilot:
            table = pane.query_one("#runner-table", DataTable)
            counts: list[int] = []

            def finished() -> bool:
                counts.append(table.row_count)
                return "run finished" in str(pane.query_one("#runner-status").render())

            await _wait(pilot, finished, timeout=180)
            assert table.row_count == 16  # 8 cases x 2 lanes
            assert any(0 < c < 16 for c in counts), f"rows grew while it ran: {counts}"
            assert str(pane.query_one("#runner-status").render()).startswith("8/8")
            proc.wait(timeout=30)
            # Once the run has let go of the file, a person can annotate from this view.
            table.focus()
            table.move_cursor(row=1)
            await pilot.pause()
            await pilot.press("a")
            await pilot.pause()
            assert isinstance(app.screen, AnnotationForm)
            await pilot.press("space")
            await pilot.press("ctrl+s")
            await pilot.pause()
            # The follower sees the annotation this view wrote.
            await _wait(pilot, lambda: len(pane.annotations) == 1, timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    s = load_session(path)
    assert len(s.exchanges) == 8 and len(s.annotations) == 1
    assert s.annotations[0].tags == ["repetition loop"]
    assert proc.returncode == 0


async def test_run_from_code_without_a_store_says_nothing_is_saved(
    local_pair: list[Endpoint],
) -> None:
    base = find_suite("sanity")
    suite = replace(base, cases=base.cases[:1])
    pane = RunnerPane(_copies(local_pair), suites=[suite], id="runner")
    app = PaneApp(pane)
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.pause()
        assert "not saved" in str(pane.query_one("#runner-status").render())
        pane.start([suite], RunOptions())
        await _wait(pilot, lambda: len(pane.exchanges) == 1 and pane.runner is None)
        assert pane.query_one("#runner-table", DataTable).row_count == 2
