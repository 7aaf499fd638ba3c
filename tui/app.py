"""QuantlabApp: the Textual app — a top bar, three tabs (Chat, Runner, Telemetry), the key footer.

:meth:`QuantlabApp.compose_tabs` yields one ``TabPane`` per tab. Endpoints either come ready
(``endpoints=``), or from ``connect=``, a blocking callable (the local pair's build and
start) run on a thread while a progress panel fills the Chat tab; the Runner and Telemetry
tabs are added once the endpoints are known.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import events, on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.geometry import Size
from textual.screen import Screen
from textual.widgets import Footer, TabbedContent, TabPane, Tabs

from quantlab.records import Endpoint, Exchange, SamplingParams
from tui.screenshot import ScreenshotMixin
from tui.state import LAYOUTS, UiState, save_state
from tui.theme import ThemeSet, apply_themes
from tui.widgets.chat.chat_view import ChatView
from tui.widgets.common.app_bar import AppBar

if TYPE_CHECKING:
    from quantlab.session import SessionStore
    from tui.widgets.common.startup_panel import StartupPanel
    from tui.widgets.runner.runner_pane import RunnerPane
    from tui.widgets.telemetry.telemetry_pane import TelemetryPane

#: Below this many columns the lanes are stacked instead of side by side.
NARROW_COLUMNS = 100
#: Below this many rows a stacked layout uses one-line lane headers.
SHORT_ROWS = 40

Connect = Callable[[Callable[[str, float | None], None]], Any]

#: tab pane id -> (title, function key, number): the function key opens it anywhere, the
#: number where no text box has focus. (Alt+digit is no use: terminals send Esc+digit,
#: which Textual reads as other characters, e.g. "™".)
TABS: dict[str, tuple[str, str, int]] = {
    "tab-chat": ("Chat", "f4", 1),
    "tab-runner": ("Runner", "f5", 2),
    "tab-telemetry": ("Telemetry", "f6", 3),
}
#: Actions that only mean something on the chat tab (hidden from the footer elsewhere).
CHAT_ACTIONS = ("new_conversation", "edit_params", "annotate", "toggle_layout", "link_scroll")


def _warm_up() -> None:
    """Import, off the event loop, what the first answer will need (the detectors)."""
    from quantlab.pipeline import warm_up

    warm_up()


#: Middle-generation collections between two full ones (CPython's default: 10).
FULL_COLLECTION_EVERY = 1000


def _freeze_gc() -> None:
    """Move everything alive after start-up (Textual, Rich, httpx: hundreds of thousands of
    objects) out of the garbage collector's sight. Without it each full collection scans
    them all: 40-70 ms pauses here, several a minute while answers stream, each one a
    stall of the screen. Only for the real command (it is process-wide), not in tests.
    The command starts with the collector off (quantlab.cli.GC_PAUSED): on again here.

    Then full collections are made rarer (:data:`FULL_COLLECTION_EVERY` young-generation
    collections instead of 10). While three answers streamed at 2,000 tok/s a full
    collection came about once a second, scanning everything the answers had built
    (27 ms on average, up to 50 ms, each a stall): it is what most of the screen's worst
    delays were (benchmarks/ui_lag.py: lag p99 29-34 ms with them, 17 ms with the collector
    off). Cycles still die young in the two younger generations, which keep their
    thresholds; what outlives them waits for the next full collection, about a minute."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
    gc.enable()


def describe_endpoints(endpoints: Sequence[Endpoint], source: str | None) -> str:
    """What the app compares, for the top bar."""
    names = " vs ".join(e.name for e in endpoints)
    if source == "local pair":
        return f"{names} · local pair: SmolLM2-135M-Instruct on llama.cpp (CPU)"
    return names


class QuantlabApp(ScreenshotMixin, App[int]):
    """The split-screen chat lab. See the module docstring for how panes are added."""

    CSS_PATH = str(Path(__file__).with_name("app.tcss"))  # absolute: subclasses live elsewhere
    TITLE = "quantlab"
    # F1/F2/F3 are priority bindings: the dialog opens (and takes the focus) before the
    # next key is read, so keys typed or pasted right after them land in the dialog.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "help", "Help", priority=True, tooltip="Every key, tab by tab"),
        Binding("question_mark", "help", "Help", show=False),
        Binding("ctrl+n", "new_conversation", "New", tooltip="New conversation: clear the lanes"),
        Binding(
            "f2", "edit_params", "Params", priority=True, tooltip="Edit the sampling parameters"
        ),
        Binding("f3", "annotate", "Annotate", priority=True, tooltip="Annotate the last exchange"),
        Binding("escape", "stop", "Stop", tooltip="Stop the answers streaming now"),
        Binding("ctrl+l", "toggle_layout", "Layout", show=False, tooltip="Side by side / stacked"),
        # One key, two bindings: the footer shows the one that applies ("Link" while the
        # lanes scroll apart, "Unlink" while linked); check_action hides the other.
        Binding("f7", "link_scroll(True)", "Link scroll", tooltip="Scroll the lanes together"),
        Binding("f7", "link_scroll(False)", "Unlink", tooltip="Scroll each lane on its own"),
        Binding("s", "link_scroll(True)", "Link scroll", show=False),
        Binding("s", "link_scroll(False)", "Unlink", show=False),
        *(
            Binding(fkey, f"show_tab('{tab}')", title, priority=True, tooltip=f"The {title} tab")
            for tab, (title, fkey, _n) in TABS.items()
        ),
        Binding("ctrl+pagedown", "next_tab(1)", "Next tab", show=False, priority=True),
        Binding("ctrl+pageup", "next_tab(-1)", "Previous tab", show=False, priority=True),
        *(
            Binding(str(n), f"show_tab('{tab}')", title, show=False)
            for tab, (title, _fkey, n) in TABS.items()
        ),
        Binding("ctrl+o", "browse_sessions", "Sessions", show=False),
        Binding("q", "quit", "Quit", show=False),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(
        self,
        *,
        endpoints: Sequence[Endpoint] | None = None,
        connect: Connect | None = None,
        source: str | None = None,
        params: SamplingParams | None = None,
        store: SessionStore | None = None,
        history: Sequence[Exchange] = (),
        session_path: str | Path | None = None,
        themes: ThemeSet | None = None,
        read_timeout: float = 300.0,
        freeze_gc: bool = False,
        telemetry_hz: float = 4.0,
        limits: Any = None,
        layout: str = "auto",
        linked_scroll: bool = True,
        state_path: Path | None = None,
    ) -> None:
        super().__init__()
        if endpoints is None and connect is None:
            raise ValueError("give endpoints or a connect callable")
        self.endpoints = list(endpoints) if endpoints is not None else None
        self.connect = connect
        self.source = source
        self.params = params or SamplingParams()
        self.store = store
        self.history = list(history)
        self.session_path = str(session_path) if session_path else None
        self.read_timeout = read_timeout
        self.limits = limits  # quantlab.limits.ClientLimits from config and flags, or None
        self.setup: Any = None  # what connect() returned (it owns started servers)
        self.fatal: str | None = None  # why the app could not start its lanes
        self.layout_mode = layout if layout in LAYOUTS else "auto"  # "auto" | "side" | "stacked"
        self.linked_scroll = linked_scroll  # the chat's lanes scroll together
        self.freeze_gc = freeze_gc
        self.telemetry_hz = telemetry_hz
        self.state_path = state_path  # where theme and layout are remembered (None: nowhere)
        self._themes = apply_themes(self, themes)

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        # The size-dependent classes go on before anything is styled: set after mounting,
        # each one restyles every widget (~20 ms apiece on the first frame's path).
        self.add_class(*(["-short"] if self._layout_state(self.size)[1] else []), update=False)
        yield AppBar(id="app-bar")
        with TabbedContent(id="tabs"):
            yield from self.compose_tabs()
        yield Footer(compact=True, show_command_palette=False)  # Ctrl+P: see F1

    def compose_tabs(self) -> Iterable[TabPane]:
        """One TabPane per tab: the chat first, then runner and telemetry once lanes exist.

        With the lanes known, the Runner and Telemetry tabs start empty and get their panes
        just after the first frame (:meth:`_fill_lane_tabs`): their modules (the runner,
        numpy, prometheus_client, psutil) cost ~0.1 s to import, which the first frame
        should not wait for; the tab bar is there from the start, so nothing moves."""
        yield TabPane("Chat", self._chat_or_startup(), id="tab-chat")
        if self.endpoints is not None:  # else added once the local pair is up
            yield TabPane("Runner", id="tab-runner")
            yield TabPane("Telemetry", id="tab-telemetry")

    def _lane_panes(self, endpoints: Sequence[Endpoint]) -> tuple[RunnerPane, TelemetryPane]:
        """The panes that need the lanes: the suite runner, and live telemetry."""
        from tui.widgets.runner.runner_pane import RunnerPane
        from tui.widgets.telemetry.telemetry_pane import TelemetryPane

        runner = RunnerPane(endpoints, store=self.store, id="runner")
        tele = TelemetryPane(endpoints, hz=self.telemetry_hz, store=self.store, id="telemetry")
        return runner, tele

    def _lane_tabs(self, endpoints: Sequence[Endpoint]) -> Iterable[TabPane]:
        runner, tele = self._lane_panes(endpoints)
        yield TabPane("Runner", runner, id="tab-runner")
        yield TabPane("Telemetry", tele, id="tab-telemetry")

    async def _fill_lane_tabs(self) -> None:
        """Mount the Runner and Telemetry panes into their tabs (see :meth:`compose_tabs`)."""
        if self.endpoints is None or self.query("#runner") or self.return_code is not None:
            return
        runner, tele = self._lane_panes(self.endpoints)
        await self.query_one("#tab-runner", TabPane).mount(runner)
        await self.query_one("#tab-telemetry", TabPane).mount(tele)
        self._apply_layout()
        self.refresh_bindings()
        self.run_worker(_warm_up, thread=True, group="warm-up", exit_on_error=False)

    def _chat_or_startup(self) -> ChatView | StartupPanel:
        if self.endpoints is not None:
            return self._make_chat(self.endpoints)
        from tui.widgets.common.startup_panel import StartupPanel

        return StartupPanel(
            "Starting the local pair",
            "Two real llama.cpp servers: SmolLM2-135M-Instruct in BF16 (the reference) and "
            "requantized to Q4_0 (the candidate). The first run builds both files once.",
            id="startup",
        )

    def _make_chat(self, endpoints: Sequence[Endpoint]) -> ChatView:
        label = Path(self.session_path).name if self.session_path else None
        stacked, _, compact = self._layout_state(self.size)
        return ChatView(
            endpoints,
            stacked=stacked,
            compact=compact,
            params=self.params,
            store=self.store,
            history=self.history,
            history_label=label,
            read_timeout=self.read_timeout,
            limits=self.limits,
            scroll_linked=self.linked_scroll,
            id="chat",
        )

    def on_mount(self) -> None:
        if self.freeze_gc:
            # A second after start: the first frame, the lane tabs and the warm-up imports
            # are done by then, and its full collection (~50 ms) holds up none of them.
            self.set_timer(1.0, _freeze_gc)
        tabs = self.query_one(TabbedContent)
        tabs.set_class(tabs.tab_count <= 1, "-single")
        # The tab strip out of the Tab order: Tab goes from the prompt to the lanes (as the
        # help says), not to the strip first; F4-F6, 1-3 and a click switch tabs.
        for strip in tabs.query_children(Tabs):
            strip.can_focus = False
        bar = self.query_one(AppBar)
        bar.update_state(session=self._session_label(), exchanges=len(self.history))
        if self.endpoints is not None:
            bar.update_state(what=describe_endpoints(self.endpoints, self.source))
            self.call_after_refresh(self._fill_lane_tabs)
        else:
            self._connect()
        for problem in self._themes.problems:
            self.notify(problem, title="theme", severity="warning", timeout=12)
        self._apply_layout()
        if self.state_path is not None:
            self.theme_changed_signal.subscribe(self, lambda _theme: self._remember())

    def _session_label(self) -> str:
        if not self.session_path:
            return "not saved"
        p = Path(self.session_path)
        with contextlib.suppress(ValueError):
            return str(p.resolve().relative_to(Path.cwd()))
        return str(p)

    def on_resize(self, event: events.Resize) -> None:
        # The event's size: this handler runs before Textual's own records the new one.
        self._apply_layout(event.size)

    def _layout_state(self, size: Size) -> tuple[bool, bool, bool]:
        """(lanes stacked, short screen, one-line lane headers) for a screen of ``size``."""
        width, height = size
        if self.layout_mode == "auto":
            stacked = width < NARROW_COLUMNS
        else:
            stacked = self.layout_mode == "stacked"
        short = height < SHORT_ROWS
        return stacked, short, stacked and short

    def _apply_layout(self, size: Size | None = None) -> None:
        """Side by side when wide enough (or asked), stacked otherwise."""
        stacked, short, compact = self._layout_state(size or self.size)
        for lanes in self.query("#lanes"):
            lanes.set_class(stacked, "-stacked")
        self.set_class(short, "-short")
        for header in self.query("LaneHeader"):
            header.set_class(compact, "-compact")

    # ------------------------------------------------------------------ starting

    @work(thread=True, group="connect", exit_on_error=False)
    def _connect(self) -> None:
        """Run the blocking ``connect`` (build once, start servers) off the event loop."""
        assert self.connect is not None
        from tui.widgets.common.startup_panel import StartupPanel

        panel = self.query_one(StartupPanel)
        _warm_up()  # while the servers start: the first answer need not wait for it

        def progress(message: str, fraction: float | None = None) -> None:
            self.call_from_thread(panel.progress, message, fraction)

        try:
            setup = self.connect(progress)
        except Exception as exc:
            self.call_from_thread(self._connect_failed, str(exc))
            return
        self.setup = setup
        # An async callback is awaited on the app's loop; mypy cannot infer its result type.
        self.call_from_thread(self._connected, list(setup.endpoints), setup.source)  # type: ignore[arg-type]

    def _connect_failed(self, message: str) -> None:
        self.fatal = message
        from tui.widgets.common.startup_panel import StartupPanel

        for panel in self.query(StartupPanel):
            panel.fail(message)
        self.query_one(AppBar).update_state(what="could not start")

    async def _connected(self, endpoints: list[Endpoint], source: str | None) -> None:
        self.endpoints = endpoints
        self.source = source or self.source
        panels = self.query("StartupPanel")
        if not panels or self.return_code is not None:  # quitting already (quit key or a
            return  # signal): mount nothing; the caller stops what was started
        self.query_one(AppBar).update_state(what=describe_endpoints(endpoints, self.source))
        pane = self.query_one("#tab-chat", TabPane)
        await panels.remove()
        await pane.mount(self._make_chat(endpoints))
        await self._add_lane_tabs(endpoints)
        self._apply_layout()
        self.refresh_bindings()  # the new tabs' keys

    async def _add_lane_tabs(self, endpoints: Sequence[Endpoint]) -> None:
        """Add the lane tabs once the endpoints are known (after the local pair started)."""
        tabs = self.query_one(TabbedContent)
        if not self.query("#tab-runner"):
            for pane in self._lane_tabs(endpoints):
                await tabs.add_pane(pane)
        tabs.set_class(tabs.tab_count <= 1, "-single")

    # ------------------------------------------------------------------ chat events

    @property
    def chat(self) -> ChatView | None:
        try:  # by id, cached by Textual (see active_tab)
            return self.query_one("#chat", ChatView)
        except NoMatches:
            return None

    @on(ChatView.Changed)
    def _chat_changed(self, event: ChatView.Changed) -> None:
        self.query_one(AppBar).update_state(exchanges=event.exchanges, busy=event.busy)
        self.refresh_bindings()

    # ------------------------------------------------------------------ actions

    @property
    def active_tab(self) -> str:
        # By id: Textual caches an id lookup until the DOM changes, while a query walks
        # every widget. check_action asks this for each binding the footer shows, and
        # the footer asks check_action on every binding refresh (90 ms at the end of a
        # long answer, with the Runner and Telemetry panes in the DOM).
        try:
            return self.query_one("#tabs", TabbedContent).active or "tab-chat"
        except NoMatches:
            return "tab-chat"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Hide keys that do nothing now (Stop only while streaming; chat keys need lanes
        and the chat tab in sight; a tab's key while another tab shows)."""
        chat = self.chat
        if action == "show_tab":
            tab = str(parameters[0]) if parameters else ""
            if not tab or tab == self.active_tab:
                return False
            try:
                self.query_one(f"#{tab}", TabPane)
            except NoMatches:
                return False
            return True
        if action == "stop":
            return bool(chat and chat.busy)
        if action in CHAT_ACTIONS and (self.active_tab != "tab-chat" or len(self.screen_stack) > 1):
            return False  # not on the Chat tab, or a screen over it (a session opened)
        if action in ("new_conversation", "edit_params"):
            return chat is not None
        if action == "annotate":
            return bool(chat and chat.exchanges and not chat.busy)
        if action == "link_scroll":  # the binding that changes something, with 2+ lanes
            wanted = bool(parameters[0]) if parameters else True
            return chat is not None and len(chat.panes) > 1 and wanted != self.linked_scroll
        return True

    def action_new_conversation(self) -> None:
        if self.chat:
            self.chat.new_conversation()

    async def action_edit_params(self) -> None:
        if self.chat:
            await self.chat.edit_params()  # mounted (and focused) before the next key

    def action_stop(self) -> None:
        if self.chat:
            self.chat.stop()  # the chat says what finished and what was stopped

    async def action_annotate(self) -> None:
        """Annotate the chat's last exchange (the runner pane has its own key for rows)."""
        chat = self.chat
        if chat is None or not chat.exchanges:
            self.notify("nothing to annotate yet: send a prompt first", severity="warning")
            return
        ex = chat.exchanges[-1]
        save = self.store.add_annotation if self.store is not None else None
        from tui.widgets.common.annotate import open_annotation_form

        await open_annotation_form(self, ex.id, list(ex.results), save, prompt=ex.prompt)

    async def action_help(self) -> None:
        from tui.widgets.common.help_screen import HelpScreen

        if isinstance(self.screen, HelpScreen):
            return
        first = TABS.get(self.active_tab, ("Chat", "f4", 1))[0]
        await self.push_screen(HelpScreen(first))

    def action_browse_sessions(self) -> None:
        """The session browser on this session's folder (else the default one)."""
        from quantlab.session import DEFAULT_SESSIONS_DIR
        from tui.widgets.common.session_browser import SessionBrowser

        folder = Path(self.session_path).parent if self.session_path else DEFAULT_SESSIONS_DIR
        self.push_screen(SessionBrowser(folder))

    def action_next_tab(self, step: int) -> None:
        present = [t for t in TABS if self.query(f"#{t}")]
        if self.active_tab in present:
            i = present.index(self.active_tab)
            self.action_show_tab(present[(i + step) % len(present)])

    def action_show_tab(self, tab: str) -> None:
        """Show a tab and put the focus in it (the keys then act on what is shown)."""
        tabs = self.query_one(TabbedContent)
        if not self.query(f"#{tab}"):
            return
        tabs.active = tab
        self._focus_tab(tab)

    @on(TabbedContent.TabActivated)
    def _tab_shown(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id:
            self._focus_tab(event.pane.id)
        self.refresh_bindings()

    def _focus_tab(self, tab: str) -> None:
        pane = self.query_one(f"#{tab}", TabPane)
        focused = self.focused
        if focused is not None and pane in focused.ancestors:
            return
        target = {
            "tab-chat": "#prompt",
            "tab-runner": "#runner-table" if self._runner_has_rows() else "#runner-suites",
            "tab-telemetry": "#telemetry",
        }.get(tab)
        found = pane.query(target) if target else None
        if found:
            self.screen.set_focus(found.first())

    def _runner_has_rows(self) -> bool:
        found = self.query("#runner-table")
        return bool(found and getattr(found.first(), "row_count", 0))

    def action_toggle_layout(self) -> None:
        order = ["auto", "side", "stacked"]
        self.layout_mode = order[(order.index(self.layout_mode) + 1) % len(order)]
        self._apply_layout()
        self.notify(f"layout: {self.layout_mode}", timeout=2)
        self._remember()

    def action_link_scroll(self, linked: bool = True) -> None:
        """Scroll the chat's lanes together (or not); remembered like the layout."""
        self.linked_scroll = linked
        if self.chat:
            self.chat.set_scroll_linked(linked)
        self.refresh_bindings()
        self.notify(
            "scroll: linked, the lanes show the same exchange"
            if linked
            else "scroll: each lane on its own",
            timeout=2,
        )
        self._remember()

    def _remember(self) -> None:
        """Keep the theme, layout and scroll link for the next run (a failure is said,
        never raised)."""
        if self.state_path is None:
            return
        state = UiState(theme=self.theme, layout=self.layout_mode, linked_scroll=self.linked_scroll)
        try:
            save_state(state, self.state_path)
        except OSError as exc:
            self.notify(
                f"could not remember the theme, layout and scroll link: {exc}", severity="warning"
            )

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand(
            "New conversation", "Clear every lane's history (ctrl+n)", self.action_new_conversation
        )
        yield SystemCommand(
            "Sampling parameters",
            "Edit temperature, top_p, max tokens, seed, system prompt (F2)",
            self.action_edit_params,
        )
        yield SystemCommand("Stop streaming", "Stop the answers now (Esc)", self.action_stop)
        yield SystemCommand(
            "Annotate", "Tag the last exchange's failure modes (F3)", self.action_annotate
        )
        yield SystemCommand(
            "Toggle lane layout",
            "Auto / side by side / stacked (ctrl+l)",
            self.action_toggle_layout,
        )
        yield SystemCommand(
            "Link lane scrolling" if not self.linked_scroll else "Unlink lane scrolling",
            "Scroll the lanes together, the same exchange in view (F7)"
            if not self.linked_scroll
            else "Scroll each lane on its own (F7)",
            lambda: self.action_link_scroll(not self.linked_scroll),
        )
        yield SystemCommand("Keys", "Every key, tab by tab (F1)", self.action_help)
        yield SystemCommand(
            "Sessions",
            "Browse the saved sessions, search their prompts, open one read-only (ctrl+o)",
            self.action_browse_sessions,
        )
        for tab, (title, fkey, _n) in TABS.items():
            if self.query(f"#{tab}"):
                yield SystemCommand(
                    f"Go to the {title} tab",
                    fkey.upper(),
                    lambda tab=tab: self.action_show_tab(tab),
                )
