"""Entry points of the commands that open the UI: ``quantlab`` (chat), ``demo``, ``top``.

Each one checks everything a person typed *before* the screen switches to the app, so a
mistake is one line on the terminal, not a traceback or a message lost behind the UI.
Servers quantlab starts (the local pair) are stopped when the app exits, however it exits:
quit key, SIGTERM/SIGHUP (handled as a quit), or an exception.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from quantlab.config import (
    Config,
    ConfigError,
    client_limits,
    endpoint_source,
    load_config,
    resolve_endpoints,
)
from quantlab.servers import StopSignals, stop_all, stop_signals
from quantlab.session import SessionBusy, SessionError, SessionStore, default_session_path

PROG = "quantlab"


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def _open_session(path_arg: str | None, config: Config) -> tuple[Any, Path, bool]:
    """(store, path, created): a new session file, or an existing one reopened."""
    path = Path(path_arg).expanduser() if path_arg else default_session_path(config.sessions_dir)
    created = not path.exists()
    store = SessionStore.open(path, machine=_machine())
    return store, path, created


def _machine() -> dict[str, Any]:
    """The machine's facts for the session (CPU, RAM, GPUs), never an error."""
    try:
        from quantlab.machine import machine_facts
    except ImportError:
        return {}
    try:
        return machine_facts()
    except Exception as exc:  # facts are a nicety; a session must open regardless
        return {"error": f"could not read the machine's facts: {exc}"}


def chat(args: argparse.Namespace) -> int:
    """``quantlab``: the split-screen chat on the configured endpoints (or the local pair)."""
    from tui.app import QuantlabApp
    from tui.state import load_state, state_path
    from tui.theme import UnknownTheme, choose_themes

    state = load_state()
    try:
        config = load_config(getattr(args, "config", None))
        limits = client_limits(args, config)
        themes = choose_themes(getattr(args, "theme", None), state.theme, config.theme)
        pair = endpoint_source(args, config) == "local pair"
        setup = None if pair else resolve_endpoints(args, config)
    except (ConfigError, UnknownTheme) as exc:
        _say(str(exc))
        return 2
    try:
        store, path, created = _open_session(getattr(args, "session", None), config)
    except SessionBusy as exc:
        # A headless run is writing it: follow it live, read-only, rather than refuse.
        if setup is not None:
            setup.close()
        return _follow(Path(args.session).expanduser(), args, config, str(exc))
    except SessionError as exc:
        _say(str(exc))
        if setup is not None:
            setup.close()
        return 2
    history = list(store.session.exchanges)

    def connect(progress: Any) -> Any:
        return resolve_endpoints(args, config, progress=progress)

    app = QuantlabApp(
        endpoints=None if setup is None else setup.endpoints,
        connect=connect if setup is None else None,
        source=None if setup is None else setup.source,
        params=config.sampling,
        store=store,
        history=history,
        session_path=path,
        themes=themes,
        freeze_gc=True,
        telemetry_hz=config.telemetry_hz,
        limits=limits,
        layout=state.layout,
        linked_scroll=state.linked_scroll,
        state_path=state_path(),
    )
    signalled: StopSignals | None = None
    try:
        with _quit_on_signals(app) as signalled:
            app.run()
    finally:
        started = setup if setup is not None else app.setup
        if started is not None:
            started.close()
        _stop_local_pairs()
        kept = _close_session(store, path, created)
    if app.fatal:
        _say(app.fatal)
    elif kept:
        print(f"session saved: {path}", file=sys.stderr)
    if signalled is not None and signalled.exit_status is not None:
        return signalled.exit_status
    return 2 if app.fatal else int(app.return_code or 0)


def _follow(path: Path, args: argparse.Namespace, config: Config, why: str) -> int:
    """Open the read-only live view of a session another process is writing."""
    from tui.follow import FollowApp
    from tui.state import load_state
    from tui.theme import UnknownTheme, choose_themes

    try:
        themes = choose_themes(getattr(args, "theme", None), load_state().theme, config.theme)
    except UnknownTheme as exc:
        _say(str(exc))
        return 2
    _say(f"{why}\n{PROG}: following it live, read-only")
    app = FollowApp(path, themes=themes)
    with _quit_on_signals(app) as signalled:
        app.run()
    return signalled.exit_status or int(app.return_code or 0)


def demo(args: argparse.Namespace) -> int:
    """``quantlab demo``: the chat on the local pair, built once and started here."""
    if getattr(args, "endpoint", None):
        _say("demo uses the local pair; leave out --endpoint (or run plain `quantlab`)")
        return 2
    args.demo = True
    return chat(args)


def top(args: argparse.Namespace) -> int:
    """``quantlab top``: telemetry only; the view lives in ``tui.top``."""
    from tui.top import top as run_top

    return int(run_top(args) or 0)


def _close_session(store: SessionStore, path: Path, created: bool) -> bool:
    """Close the store; a session created now that holds nothing is not kept."""
    empty = not store.session.exchanges
    try:
        store.close()
    except SessionError as exc:
        _say(str(exc))
        return True
    if created and empty:
        with contextlib.suppress(OSError):
            path.unlink()
        return False
    return True


def _stop_local_pairs() -> None:
    """A pair whose start was still under way when the app quit is stopped too."""
    stop_all()


@contextlib.contextmanager
def _quit_on_signals(app: Any) -> Iterator[StopSignals]:
    """SIGTERM and SIGHUP (a closed SSH session) quit the app cleanly, so the servers are
    stopped by the caller's ``finally`` and the terminal is restored. The caller exits with
    the signal's status (``state.exit_status``), whatever the app's teardown reported:
    a signal that lands while the app is still mounting its lanes can make a widget fail
    as the screen goes away, and Textual then sets return code 1."""

    def quit_app(signum: int) -> None:
        try:
            loop = asyncio.get_running_loop()  # the handler runs on the app's (main) thread
        except RuntimeError:
            raise SystemExit(128 + signum) from None
        loop.call_soon_threadsafe(lambda: app.exit(return_code=128 + signum))

    with stop_signals(quit_app) as state:
        yield state
