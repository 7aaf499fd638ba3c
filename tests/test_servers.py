"""quantlab.servers: argument lists only, private logs, and the one signal helper's rules
(ignored stays ignored, handlers put back, the signal's exit status)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from quantlab.servers import ServerProcess, StopSignals, stop_signals

REPO = Path(__file__).resolve().parent.parent


def test_a_command_string_is_refused_never_run_by_a_shell() -> None:
    with pytest.raises(TypeError, match="list of arguments"):
        ServerProcess("x", "vllm serve m; rm -rf ~")  # type: ignore[arg-type]


def test_the_log_is_private_and_its_tail_readable(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "s.log"
    p = ServerProcess("s", [sys.executable, "-c", "print('a\\n' * 50 + 'last line')"], log_path=log)
    p.proc.wait(10)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600  # prompts can show up in server logs
    assert p.tail_lines(2) == "a\nlast line"
    p.stop()
    p.stop()  # idempotent


def test_stop_signals_records_the_signal_and_puts_the_old_handler_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen: list[int] = []
    with stop_signals(seen.append) as state:
        assert state.installed
        os.kill(os.getpid(), signal.SIGTERM)
    assert seen == [signal.SIGTERM] and state.exit_status == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before
    assert StopSignals().exit_status is None


def test_an_ignored_hangup_stays_ignored_and_the_default_exits_with_the_signal() -> None:
    script = textwrap.dedent(
        """
        import os, signal, sys
        from quantlab.servers import stop_signals
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
        with stop_signals():
            os.kill(os.getpid(), signal.SIGHUP)  # ignored: nothing happens
            print("still here", flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
            print("not reached", flush=True)
        """
    )
    r = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=30
    )
    assert r.stdout == "still here\n"
    assert r.returncode == 128 + signal.SIGTERM
