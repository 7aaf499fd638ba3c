"""The commands that open the UI: mistakes are one line before the screen switches, and the
servers quantlab started are gone after the app exits (quit key, SIGTERM, SIGHUP)."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from quantlab.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_bad_endpoint_flag_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--endpoint", "nonsense"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("quantlab: --endpoint 'nonsense': expected NAME=URL")
    assert "Traceback" not in err


def test_demo_refuses_endpoints(capsys: pytest.CaptureFixture[str]) -> None:
    # Before the command name the flag is read (the chat's), and demo says why it refuses.
    assert main(["--endpoint", "a=http://127.0.0.1:9", "demo"]) == 2
    assert "demo uses the local pair" in capsys.readouterr().err
    # After it, demo does not take --endpoint at all (its --help does not offer it).
    with pytest.raises(SystemExit) as done:
        main(["demo", "--endpoint", "a=http://127.0.0.1:9"])
    assert done.value.code == 2
    assert "unrecognized arguments: --endpoint" in capsys.readouterr().err


def test_a_file_that_is_not_a_session_is_refused_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.json"
    notes.write_text('{"hello": "world"}')
    code = main(["--endpoint", "a=http://127.0.0.1:9", "--session", str(notes)])
    assert code == 2
    err = capsys.readouterr().err
    assert str(notes) in err and "Traceback" not in err
    assert notes.read_text() == '{"hello": "world"}'


class Terminal:
    """A child process on a pseudo-terminal, its output drained on a thread."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        master, slave = pty.openpty()
        env = dict(os.environ, TERM="xterm-256color", COLUMNS="120", LINES="40")
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, close_fds=True
        )
        os.close(slave)
        self.master = master
        self.output = bytearray()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.output += data

    def wait_for(self, needle: bytes, timeout: float) -> None:
        end = time.monotonic() + timeout
        while needle not in self.output:
            assert self.proc.poll() is None, f"exited early: {bytes(self.output[-2000:])!r}"
            assert time.monotonic() < end, f"no {needle!r} on screen"
            time.sleep(0.1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_demo_stops_its_servers_on_signal(
    sig: signal.Signals, local_pair: object, tmp_path: Path
) -> None:
    """``local_pair`` only makes sure the models are built before the clock starts."""
    session = tmp_path / "s.json"
    term = Terminal([sys.executable, "-m", "quantlab", "demo", "--session", str(session)], ROOT)
    try:
        term.wait_for(b"ready", timeout=90)
        children = psutil.Process(term.proc.pid).children(recursive=True)
        servers = [c for c in children if "quantlab.localpair.serve" in " ".join(c.cmdline())]
        assert len(servers) == 2
        term.proc.send_signal(sig)
        assert term.proc.wait(timeout=30) == 128 + sig
        _, alive = psutil.wait_procs(servers, timeout=10)
        assert alive == [], f"servers left running: {alive}"
        assert not session.exists(), "an empty new session is not kept"
    finally:
        term.close()
