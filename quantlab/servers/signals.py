"""The one place where SIGTERM and SIGHUP (a closed SSH session) become a clean stop.

Used three ways: ``quantlab up`` and a headless command with the local pair stop their
servers and exit with 128 + the signal (the default action); the TUI asks its app to quit
and exits with that status after its own clean-up (an action of its own). Rules for all:
handlers are installed from the main thread only (Python's rule; elsewhere nothing is
installed and ``atexit`` / PR_SET_PDEATHSIG still cover the exit); a signal that was
ignored when we started (SIGHUP under ``nohup``) stays ignored; the handler that was
there before is put back on leaving, and the default action chains to it.

The exit status is the signal's, whatever the clean-up after it raises: the signal is why
the process ends, and a shell or a supervisor reads 128 + N as exactly that.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from quantlab.servers.process import stop_all

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGHUP)


@dataclass(slots=True)
class StopSignals:
    """What the handlers saw: ``received`` is the first stop signal's number."""

    installed: bool = False
    received: int | None = None
    previous: dict[int, Any] = field(default_factory=dict)

    @property
    def exit_status(self) -> int | None:
        """128 + the signal, the conventional status of a signalled exit; None if none."""
        return None if self.received is None else 128 + self.received


def stop_and_exit(state: StopSignals, signum: int, frame: FrameType | None) -> None:
    """The default action: stop every server quantlab started, let the handler that was
    installed before run, then exit with 128 + the signal (``finally`` blocks still run)."""
    stop_all()
    previous = state.previous.get(signum)
    if callable(previous):
        previous(signum, frame)
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def stop_signals(on_signal: Callable[[int], None] | None = None) -> Iterator[StopSignals]:
    """While inside: SIGTERM and SIGHUP record themselves on the yielded state, then call
    ``on_signal(signum)`` (default: :func:`stop_and_exit`)."""
    state = StopSignals()

    def handler(signum: int, frame: FrameType | None) -> None:
        if state.received is None:
            state.received = signum
        if on_signal is None:
            stop_and_exit(state, signum, frame)
        else:
            on_signal(signum)

    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            current = signal.getsignal(sig)
            if current == signal.SIG_IGN:
                continue
            state.previous[sig] = current
            signal.signal(sig, handler)
        state.installed = True
    try:
        yield state
    finally:
        for signum, old in state.previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(signum, old if old is not None else signal.SIG_DFL)


_PERMANENT: contextlib.ExitStack | None = None


def install_exit_handlers() -> bool:
    """For the rest of the process: the default action on SIGTERM/SIGHUP. Idempotent;
    False off the main thread (nothing installed)."""
    global _PERMANENT
    if threading.current_thread() is not threading.main_thread():
        return False
    if _PERMANENT is None:
        stack = contextlib.ExitStack()
        stack.enter_context(stop_signals())
        _PERMANENT = stack
    return True
