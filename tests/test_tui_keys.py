"""Pilot tests of the screen as a person over SSH uses it (issue 12): the annotate form at
80x24, keys typed or pasted in one burst after F2, tab keys, the help screen, ``q``, the
layout after a resize, the remembered theme and layout, the Runner at 80x24, and the
"stopped" mark. The lanes point at dead ports: none of this needs an answer."""

from __future__ import annotations

import json
import re
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
import report_sessions as rs
from textual import events
from textual.app import App
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Input, OptionList, SelectionList

from quantlab.cli import main
from quantlab.records import Endpoint, Finding
from tui.app import QuantlabApp
from tui.state import UiState, load_state, save_state
from tui.theme import choose_themes, load_app_themes
from tui.widgets.chat.params_bar import ParamsBar
from tui.widgets.chat.params_dialog import ParamsDialog
from tui.widgets.chat.prompt_box import PromptBox
from tui.widgets.common.annotate import AnnotationForm
from tui.widgets.common.help_screen import KEY_SECTIONS, HelpScreen
from tui.widgets.runner.compare import CompareView
from tui.widgets.runner.runner_pane import RunnerPane, flags_text

ROOT = Path(__file__).resolve().parent.parent


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lanes() -> list[Endpoint]:
    return [
        Endpoint("bf16", f"http://127.0.0.1:{dead_port()}", role="reference"),
        Endpoint("q4_0", f"http://127.0.0.1:{dead_port()}", role="candidate"),
    ]


def make_app(**kw: Any) -> QuantlabApp:
    return QuantlabApp(endpoints=lanes(), themes=load_app_themes(None), **kw)


def burst(app: App[Any], *keys: str) -> None:
    """Post keys to the app in one go, as a terminal delivers a fast typist's keys or
    tmux's send-keys: nothing is processed in between (Pilot.press waits after each)."""
    for key in keys:
        char = key if len(key) == 1 else {"space": " "}.get(key)
        app.post_message(events.Key(key, char))


# ------------------------------------------------------------------ annotate form


class FormApp(App[None]):
    def on_mount(self) -> None:
        self.push_screen(AnnotationForm("ex-1", ["bf16", "q4_0"], prompt="a long prompt " * 20))


@pytest.mark.parametrize("size", [(80, 24), (80, 30), (80, 20)])
async def test_annotate_form_fits_and_every_focused_field_is_in_view(
    size: tuple[int, int],
) -> None:
    app = FormApp()
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        form = app.screen
        assert isinstance(form, AnnotationForm)
        screen = form.region
        fields = form.query_one("#annotate-fields", VerticalScroll)
        seen = set()
        for _ in range(8):
            focused = app.focused
            assert focused is not None
            seen.add(focused.id)
            await pilot.pause()
            r = focused.region
            assert r.height > 0 and screen.contains_region(r), (focused, r)
            if fields in focused.ancestors:
                assert fields.region.contains_region(r), (focused, r, fields.region)
            await pilot.press("tab")
        assert {"annotate-note", "annotate-save", "annotate-severity"} <= seen
        # The buttons stay on screen whatever the fields' scroll.
        for button in ("#annotate-save", "#annotate-cancel"):
            assert screen.contains_region(form.query_one(button).region)


async def test_a_note_typed_after_tabbing_lands_in_the_note() -> None:
    app = FormApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        # (Space is a binding, resolved against the focus when it is handled: pressed
        # apart. Text goes to the field it was typed in even in one burst.)
        await pilot.press("space")
        burst(app, "tab", "tab", *"loops", "tab")  # severity, note, then the buttons
        await pilot.pause()
        form = app.screen
        assert form.query_one("#annotate-note", Input).value == "loops"
        assert list(form.query_one("#annotate-tags", SelectionList).selected) == ["repetition loop"]


# ------------------------------------------------------------------ F2 under fast typing


async def test_keys_typed_in_one_burst_after_f2_land_in_the_fields() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        burst(app, "f2", "0", ".", "7", "tab", "0", ".", "9")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, ParamsDialog)
        assert dialog.query_one("#param-temperature", Input).value == "0.7"
        assert dialog.query_one("#param-top_p", Input).value == "0.9"
        await pilot.press("escape")
        assert app.query_one("#prompt", PromptBox).value == ""  # nothing went behind the dialog


async def test_a_paste_right_after_f2_lands_in_the_first_field() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.post_message(events.Key("f2", None))
        app.post_message(events.Paste("0.3"))
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, ParamsDialog)
        assert dialog.query_one("#param-temperature", Input).value == "0.3"
        await pilot.press("enter")
        await pilot.pause()
        assert app.chat is not None and app.chat.params.temperature == pytest.approx(0.3)
        assert app.query_one("#prompt", PromptBox).value == ""


# ------------------------------------------------------------------ tabs, help, q


def footer_keys(app: QuantlabApp) -> dict[str, str]:
    """The keys the footer offers now: key -> description."""
    return {
        key: b.binding.description
        for key, b in app.screen.active_bindings.items()
        if b.binding.show and b.enabled
    }


async def test_tab_keys_switch_tabs_move_focus_and_show_in_the_footer() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        shown = footer_keys(app)
        assert shown.get("f5") == "Runner" and shown.get("f6") == "Telemetry"
        assert "f4" not in shown  # the tab already shown
        assert "f1" in shown
        await pilot.press("f5")
        await pilot.pause()
        assert app.active_tab == "tab-runner"
        assert app.focused is not None and app.query_one(RunnerPane) in app.focused.ancestors
        shown = footer_keys(app)
        assert shown.get("f4") == "Chat" and "f2" not in shown  # chat keys stay on Chat
        await pilot.press("3")  # no text box has focus: plain digits work too
        await pilot.pause()
        assert app.active_tab == "tab-telemetry"
        await pilot.press("ctrl+pageup")
        await pilot.pause()
        assert app.active_tab == "tab-runner"
        await pilot.press("ctrl+pagedown")
        await pilot.pause()
        assert app.active_tab == "tab-telemetry"
        await pilot.press("f4")
        await pilot.pause()
        assert app.active_tab == "tab-chat" and app.focused is app.query_one("#prompt")
        await pilot.press("2")  # typed into the prompt, not a tab switch
        assert app.active_tab == "tab-chat"
        assert app.query_one("#prompt", PromptBox).value == "2"
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert {"Go to the Runner tab", "Go to the Telemetry tab", "Keys"} <= set(titles)


async def test_help_opens_with_f1_and_question_mark_and_lists_every_tab() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("question_mark")  # in the prompt: a character
        assert not isinstance(app.screen, HelpScreen)
        assert app.query_one("#prompt", PromptBox).value == "?"
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        assert len(app.screen.query(".help-section")) == len(KEY_SECTIONS)
        text = app.screen.plain
        for section in ("Everywhere", "Chat", "Runner", "Telemetry"):
            assert section in text
        await pilot.press("escape")
        await pilot.press("f5")
        await pilot.pause()
        await pilot.press("question_mark")  # no text box has focus on the Runner
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        assert app.screen.order[:2] == ["Everywhere", "Runner"]  # the tab's own keys first
        await pilot.press("q")  # closes the help, does not quit
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen) and app.is_running


async def test_q_types_in_the_prompt_and_quits_elsewhere() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("q")
        assert app.query_one("#prompt", PromptBox).value == "q" and app.is_running
        await pilot.press("f6")
        await pilot.pause()
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running


def test_every_footer_key_is_in_the_help_and_the_readme_matches_it() -> None:
    listed = {k for entries in KEY_SECTIONS.values() for _, _, keys in entries for k in keys}
    for cls in (QuantlabApp, RunnerPane, CompareView, AnnotationForm, ParamsDialog):
        for b in cls.BINDINGS:
            assert isinstance(b, Binding)
            if b.show:
                for key in b.key.split(","):
                    assert key in listed, f"{cls.__name__}: {key} is not in the help"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    keys_part = readme.split("## Keys", 1)[1].split("\n## ", 1)[0]
    for section, entries in KEY_SECTIONS.items():
        assert f"**{section}**" in keys_part, section
        for shown, what, _ in entries:
            assert f"| {shown} | {what} |" in keys_part, (section, shown)


# ------------------------------------------------------------------ layout, state


async def test_automatic_layout_follows_the_size_after_a_resize() -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        lanes_box = app.query_one("#lanes")
        assert not lanes_box.has_class("-stacked")
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert lanes_box.has_class("-stacked") and app.has_class("-short")
        await pilot.resize_terminal(160, 48)
        await pilot.pause()
        assert not lanes_box.has_class("-stacked") and not app.has_class("-short")


async def test_theme_and_layout_are_remembered_in_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "config" / "quantlab" / "state.json"
    app = make_app(state_path=path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        app.theme = "quantlab-light"
        await pilot.press("ctrl+l")  # auto -> side
        await pilot.press("ctrl+l")  # side -> stacked
        await pilot.pause()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {
        "theme": "quantlab-light",
        "layout": "stacked",
        "linked_scroll": True,
    }
    state = load_state(path)
    assert choose_themes(None, state.theme, "quantlab").selected == "quantlab-light"
    again = make_app(layout=state.layout)
    async with again.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        assert again.query_one("#lanes").has_class("-stacked")  # wide, yet as chosen


def test_a_broken_state_file_means_nothing_remembered(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")
    assert load_state(path) == UiState()
    path.write_text('{"theme": 3, "layout": "diagonal"}')
    assert load_state(path) == UiState()
    save_state(UiState("nord", "side", linked_scroll=False), path)
    assert load_state(path) == UiState("nord", "side", linked_scroll=False)
    path.write_text('{"theme": "nord", "linked_scroll": "no"}')  # not a bool: the default
    assert load_state(path) == UiState("nord")
    # A remembered theme whose file is gone: the config's (or the default) instead.
    assert choose_themes(None, "gone-theme", None).selected == "quantlab"
    assert choose_themes(None, "gone-theme", None).problems == []


def test_an_unknown_theme_flag_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert main(["--endpoint", "a=http://127.0.0.1:9", "--theme", "bogus"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("quantlab: --theme 'bogus': no such theme")
    assert "quantlab-light" in err and "nord" in err
    assert not list(tmp_path.glob("sessions/*"))  # refused before a session was opened


# ------------------------------------------------------------------ runner at 80x24


async def test_runner_at_80x24_has_few_wide_columns_and_details_below() -> None:
    app = QuantlabApp(endpoints=rs.endpoints(), themes=load_app_themes(None))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("f5")
        await pilot.pause()
        pane = app.query_one(RunnerPane)
        exchanges = rs.sanity_exchanges()[:4]
        exchanges[0].results["awq"].findings[0].status = "confirmed"  # a person's verdict
        for ex in exchanges:
            pane._show_exchange_rows(ex)
        table = pane.query_one("#runner-table", DataTable)
        table.focus()
        table.move_cursor(row=1)
        await pilot.pause(0.3)
        assert str(table.get_cell("sani-s0|awq", "flags")) == "expected_answer (confirmed)"
        assert [c.label.plain for c in table.columns.values()] == [
            "case",
            "lane",
            "status",
            "flags",
        ]
        assert table.region.height >= 6  # header + five rows, not one or two
        view = pane.query_one(CompareView)
        assert view.exchange is not None
        heads = " ".join(str(s.content) for s in view.query(".compare-lane-head"))
        assert "TTFT" in heads and "tok/s" in heads  # the numbers left out of the table
        finding = view.query_one("#compare-findings", OptionList).get_option_at_index(0)
        assert "[confirmed]" in str(finding.prompt)  # shown, not eaten as markup
        await pilot.resize_terminal(160, 40)
        await pilot.pause()
        assert len(table.columns) == 8 and table.row_count == 8
        assert table.cursor_row == 1


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 60)])
async def test_the_compare_view_shows_the_answers_not_only_their_heads(
    size: tuple[int, int],
) -> None:
    app = QuantlabApp(endpoints=rs.endpoints(), themes=load_app_themes(None))
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        await pilot.press("f5")
        await pilot.pause()
        pane = app.query_one(RunnerPane)
        ex = rs.sanity_exchanges()[0]
        for lane, r in ex.results.items():  # a long answer and many findings (they scroll)
            r.text = " ".join(f"word{i}" for i in range(300))
            r.findings += [Finding("length", lane, "warn", 0.5, "long " * 30) for _ in range(5)]
        pane._show_exchange_rows(ex)
        pane.query_one("#runner-table", DataTable).focus()
        await pilot.pause(0.3)
        await pilot.press("w")  # the word diff
        await pilot.pause(0.3)
        view = pane.query_one(CompareView)
        assert view.word_diff
        assert not view.query_one("#compare-notes").display  # no annotations: no empty row
        want = 1 if size[1] < 40 else 5  # rows of each answer in view
        for lane in view.query(".compare-lane"):
            head = lane.query_one(".compare-lane-head")
            text = lane.query_one(".compare-lane-text")
            seen = lane.region.intersection(text.region)
            assert seen.height >= want, (size, head.region, text.region, lane.region)


def test_flags_show_the_persons_verdict() -> None:
    assert flags_text(["repetition"], [], None) == "repetition"
    assert (
        flags_text(["repetition"], ["length"], None, {"repetition": "confirmed"})
        == "repetition (confirmed) (+1 warn)"
    )
    # A dismissed failure no longer counts as a flag, but the verdict stays in sight.
    assert flags_text([], [], None, {"repetition": "dismissed"}) == "repetition (dismissed)"


# ------------------------------------------------------------------ chat display


async def test_stopped_is_said_once_and_cleared_by_a_new_conversation() -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        chat = app.chat
        assert chat is not None
        pane = chat.panes[0]
        pane.streaming = True  # as if an answer were arriving
        pane.stop()
        await pilot.pause()
        shown = pane.header.plain + pane.view.text() + pane.metrics.plain
        assert shown.count("■") == 1 and pane.header.status == "stopped"
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert pane.header.status == "ready"


async def test_params_bar_ends_with_an_ellipsis_when_cut() -> None:
    app = make_app()
    async with app.run_test(size=(60, 24)) as pilot:
        await pilot.pause()
        bar = app.query_one(ParamsBar)
        text = bar.render_line(0).text.rstrip()
        assert text.endswith("…") and "F2 edit" not in text
        assert re.search(r"temperature 0 {2}· {2}top_p 1", text)


async def test_screenshots_keep_their_spaces() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        svg = app.export_screenshot()
    assert svg.startswith("<svg") and 'xml:space="preserve"' in svg.split(">", 1)[0]
