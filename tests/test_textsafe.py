"""Hostile answers (issue 9.2): escape sequences and markup never reach a terminal raw.

One answer holding an OSC 52 clipboard write, a screen clear, BEL, a C1 CSI, a bidi
override and Rich/Textual markup goes through every text output: ``quantlab ask``'s
columns, the md/brief/csv reports, the progress line, and the TUI's stream view and
compare view (read back from what the widgets render). JSON keeps the exact text.
"""

from __future__ import annotations

import csv
import io
import re

import orjson
import pytest
from report_sessions import endpoints, exchange, fail, result
from textual.app import App, ComposeResult
from textual.widgets import Static

from quantlab.commands.ask import render as ask_render
from quantlab.fanout import lane_results
from quantlab.progress_line import ProgressLine
from quantlab.records import Endpoint, Exchange, LaneError
from quantlab.reports import analysis, brief, csv_export, json_export, md
from quantlab.session import Session
from quantlab.textsafe import has_unsafe, json_safe, safe_line, safe_same_length, safe_text
from tui.widgets.chat.stream_view import StreamView
from tui.widgets.runner.compare import CompareView

OSC52 = "\x1b]52;c;cm0gLXJmIH4=\x07"  # writes "rm -rf ~" to the clipboard
CLEAR = "\x1b[2J\x1b[H"
TITLE = "\x1b]0;owned\x07"
C1_CSI = "\x9b31m"
BIDI = "\u202eevil\u202c"
MARKUP = "[bold]not bold[/bold] [@click=app.quit]click[/] [link=http://x]l[/link]"
HOSTILE = f"Answer: 42{OSC52}{CLEAR}{TITLE} bell\x07 {C1_CSI}red {BIDI}\n{MARKUP}\tend"

#: Any raw control character but newline and tab (what a terminal would act on).
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_safe_text_shows_every_control_visibly_and_keeps_newline_and_tab() -> None:
    out = safe_text(HOSTILE)
    assert not RAW.search(out)
    assert "\\x1b]52;c;cm0gLXJmIH4=\\x07" in out and "\\x1b[2J" in out and "\\x9b31m" in out
    assert "\\u202eevil\\u202c" in out and "bell\\x07" in out
    assert "\n" in out and "\tend" in out and MARKUP in out
    assert safe_text("plain ünïcode 日本 text\n\tok") == "plain ünïcode 日本 text\n\tok"
    assert safe_text("a\r\nb\rc") == "a\nb\\x0dc"
    assert safe_line("two\nlines\x1b") == "two\\x0alines\\x1b"
    same = safe_same_length(HOSTILE)
    assert len(same) == len(HOSTILE) and not RAW.search(same) and "\u241b" in same
    assert has_unsafe(HOSTILE) and not has_unsafe("fine\n\tfine")


def _exchange() -> Exchange:
    ref, cand = (e.name for e in endpoints()[:2])
    err = LaneError("stream", f"server said {CLEAR}{OSC52}", 500)
    return exchange(
        "sanity",
        "s0",
        {
            ref: result(ref, HOSTILE),
            cand: result(cand, HOSTILE, findings=[fail("repetition", cand, f"loop {OSC52}")]),
            "q4": result("q4", "partial", error=err),
        },
        prompt=f"hostile prompt {TITLE}",
    )


@pytest.mark.parametrize("width", [140, 40], ids=["side-by-side", "stacked"])
def test_ask_columns_never_print_a_raw_control(width: int) -> None:
    ex = _exchange()
    out = ask_render(ex, endpoints(), width)
    assert not RAW.search(out)
    assert "\\x1b]52" in out and "[bold]not" in out  # shown, not acted on
    # --json keeps the exact text.
    lanes = lane_results(ex)
    assert orjson.loads(orjson.dumps(lanes))[0]["text"] == HOSTILE


def _session() -> Session:
    return Session(endpoints=endpoints(), exchanges=[_exchange()])


def test_md_brief_and_csv_reports_never_hold_a_raw_control_but_json_is_exact() -> None:
    s = _session()
    a = analysis.analyze(s)
    for text in (md.render(a), brief.render(a), csv_export.render(s)):
        assert not RAW.search(text)
    report = md.render(a)
    assert "\\x1b]52" in report and "loop \\x1b]52" in report  # quoted, visibly
    rows = list(csv.DictReader(io.StringIO(csv_export.render(s))))
    outputs = [r["output"] for r in rows]
    assert safe_text(HOSTILE) in outputs
    doc = json_export.render(a)
    assert not RAW.search(doc.replace("\n", ""))  # a terminal is safe from the JSON too
    assert HOSTILE in _strings(orjson.loads(doc))  # and it decodes to the exact text


def _strings(v: object) -> list[str]:
    if isinstance(v, str):
        return [v]
    if isinstance(v, dict):
        return [s for x in v.values() for s in _strings(x)]
    if isinstance(v, list):
        return [s for x in v for s in _strings(x)]
    return []


def test_json_safe_escapes_what_encoders_leave_raw_and_decodes_the_same() -> None:
    raw = orjson.dumps({"text": HOSTILE}).decode()
    assert RAW.search(raw)  # orjson leaves C1 and bidi controls raw
    safe = json_safe(raw)
    assert not RAW.search(safe) and orjson.loads(safe) == {"text": HOSTILE}


def test_the_progress_line_shows_a_hostile_status_visibly() -> None:
    buf = io.StringIO()
    bar = ProgressLine(buf, width=200)
    bar.update(1, 2, None, f"case x {CLEAR}")
    bar.message(f"lane failed: {OSC52}\nfake line")
    bar.close()
    out = buf.getvalue()
    assert not RAW.search(out.replace("\n", ""))
    assert "\\x1b[2J" in out and "\\x1b]52" in out


class StreamHarness(App[None]):
    def compose(self) -> ComposeResult:
        yield StreamView()


def _drawn(view: StreamView) -> str:
    return "\n".join(
        "".join(seg.text for seg in view.render_line(y)) for y in range(view.size.height)
    )


async def test_the_stream_view_draws_controls_visibly_and_markup_literally() -> None:
    app = StreamHarness()
    async with app.run_test(size=(120, 12)) as pilot:
        view = app.query_one(StreamView)
        view.begin_answer()
        for i in range(0, len(HOSTILE), 3):  # escapes split across deltas too
            view.append(HOSTILE[i : i + 3])
        view.end_answer()
        view.flush()
        await pilot.pause()
        drawn = _drawn(view)
        assert app.is_running  # [@click=app.quit] did nothing
    assert not RAW.search(drawn)
    assert "\\x1b]52;c;cm0gLXJmIH4=\\x07" in drawn and "\\x9b31m" in drawn
    assert "[bold]not bold[/bold]" in drawn and "[@click=app.quit]click[/]" in drawn


class CompareHarness(App[None]):
    def compose(self) -> ComposeResult:
        yield CompareView()


async def test_the_compare_view_shows_answer_markup_literally_and_no_control() -> None:
    ex = _exchange()
    ex.results[endpoints()[0].name].findings = []
    app = CompareHarness()
    async with app.run_test(size=(160, 40)) as pilot:
        view = app.query_one(CompareView)
        view.show(ex, endpoints()[0].name)
        await pilot.pause()
        texts = [str(w.render()) for w in view.query(Static)]
        assert app.is_running
    joined = "\n".join(texts)
    assert not RAW.search(joined)
    assert "[bold]not bold[/bold]" in joined and "[@click=app.quit]click[/]" in joined
    assert "\u241b]52;c;cm0gLXJmIH4=\u2407" in joined  # the answer, one picture per control
    assert "\\x1b[2J" in joined  # the lane's error text
    assert "hostile prompt \\x1b]0;owned\\x07" in joined  # the title


def test_an_endpoint_flag_cannot_smuggle_a_control_into_a_lane_name() -> None:
    # Lane names are validated at the door; the model name (from the server) is not.
    ex = _exchange()
    eps = endpoints()
    eps[0] = Endpoint(eps[0].name, eps[0].base_url, model=f"model{CLEAR}", role="reference")
    ex.results[eps[0].name].model = None
    assert not RAW.search(ask_render(ex, eps, 140))


class RunnerHarness(App[None]):
    def __init__(self, pane: object) -> None:
        super().__init__()
        self.pane = pane

    def compose(self) -> ComposeResult:
        yield self.pane  # type: ignore[misc]


async def test_the_runner_table_shows_a_hostile_error_and_case_id_literally() -> None:
    """DataTable reads a str cell as markup: a server error holding ``[/INST]`` used to
    raise MarkupError on the screen, and ``[bold]`` restyled the row."""
    from standin import Reply, StandIn

    from quantlab.records import Case, SamplingParams
    from quantlab.runner import RunOptions
    from quantlab.suites import Suite
    from tui.widgets.runner.runner_pane import RunnerPane

    message = f"bad template [/INST] {CLEAR} [bold]x[/bold]"
    case = Case(id="[red]c1[/]", messages=[{"role": "user", "content": "hi"}])
    suite = Suite(name="hostile", kind="cases", params=SamplingParams(max_tokens=4), cases=[case])
    with StandIn(Reply(fault="http500", message=message)) as s:
        pane = RunnerPane([Endpoint("a", s.url, role="reference")], suites=[suite], id="runner")
        app = RunnerHarness(pane)
        async with app.run_test(size=(160, 30)) as pilot:
            pane.start([suite], RunOptions(discover=False))
            for _ in range(200):
                await pilot.pause(0.05)
                if pane.exchanges and pane.runner is None:
                    break
            await pilot.pause(0.2)
            table = pane.query_one("#runner-table")
            (row,) = [table.get_row(k) for k in table.rows]  # type: ignore[attr-defined]
            shown = [str(c) for c in row]
            assert app.is_running
    assert shown[0] == "hostile/[red]c1[/]"
    assert "[/INST]" in shown[-1] and "\\x1b[2J" in shown[-1] and "[bold]x[/bold]" in shown[-1]
    assert not RAW.search("".join(shown))


async def test_a_hostile_paste_is_kept_whole_shown_safely_sent_and_saved(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A huge multi-line paste with escape sequences, controls and an undecodable byte
    (a lone surrogate, as surrogateescape gives it): Textual's Input kept only the first
    line and drew ESC raw; the box now keeps every line, shows controls visibly,
    says so, and the prompt goes to the lane and into the session."""
    from standin import Reply, StandIn
    from textual import events

    from quantlab.session import SessionStore, load_session
    from tui.app import QuantlabApp

    lines = [f"line {i} {CLEAR}{OSC52} bell\x07 \udcff end" for i in range(5000)]  # ~250 KB
    paste = "\n".join(lines)
    with StandIn(Reply(tokens=["ok"]), max_model_len=10**6) as s:
        store = SessionStore.open(tmp_path / "s.json")
        app = QuantlabApp(endpoints=[Endpoint("a", s.url, role="reference")], store=store)
        async with app.run_test(size=(120, 30)) as pilot:
            chat = app.chat
            assert chat is not None
            for _ in range(100):
                await pilot.pause(0.05)
                if all(p.header.status != "connecting" for p in chat.panes):
                    break
            chat.prompt_box.focus()
            app.post_message(events.Paste(paste))
            await pilot.pause(0.2)
            value = chat.prompt_box.value
            drawn = "".join(seg.text for seg in chat.prompt_box.render_line(0))
            await pilot.press("enter")
            for _ in range(200):
                await pilot.pause(0.05)
                if chat.exchanges and not chat.busy:
                    break
            assert app.is_running
        store.close()
        result = chat.exchanges[-1].results["a"]
        sent = s.requests[-1]["messages"][-1]["content"]
    assert value.count("line ") == 5000 and "line 4999" in value  # nothing dropped
    assert not RAW.search(value) and not RAW.search(drawn)
    assert "\\x1b[2J" in value and "\\x07" in value
    assert sent == value.strip().replace("\udcff", "\ufffd")  # JSON is UTF-8: U+FFFD sent
    assert result.ok and "undecodable bytes" in " ".join(result.notes)
    saved = load_session(tmp_path / "s.json").exchanges
    assert len(saved) == 1 and saved[0].results["a"].text == "ok"
    assert saved[0].prompt.count("line ") == 5000
