"""Time from starting ``quantlab`` to its first painted frame, as a person sees it.

Each run starts ``python -m quantlab --endpoint bf16=http://127.0.0.1:9 --endpoint
awq=http://127.0.0.1:10`` (nothing listens there: the lanes' discovery is still under way
behind the first frame, as when servers are still starting) on a pseudo-terminal of the
given size, reads what the app writes, and stops the clock when the chat's first frame is
on the terminal: the alternate screen was entered and the prompt box's placeholder text
has been written (escape sequences stripped). The process is then stopped with SIGTERM
(the app's own clean exit). Nothing is changed in the app for this: the time includes the
interpreter's start, every import and the first layout, as a user's launch does.

Prints one JSON object: ``first_frame_ms`` (each run), ``median_ms``, ``max_ms``,
``goal_ms`` (350), ``python_startup_ms`` (median of ``python -c pass``: this machine's
floor), ``textual_floor_median_ms`` (a bare Textual app with the same kinds of widget,
started the same way, interleaved with quantlab's runs: what Textual itself costs
here), ``cpu_ms_median`` / ``textual_floor_cpu_ms_median`` (the CPU time each process
had used by its first frame: steadier than wall time on a busy machine), ``load_avg_1m``
and ``cpus`` (the figures depend on how busy the machine is).

Usage: ``python benchmarks/first_frame.py [--runs 7] [--size 80x24]``. Runs in a fresh
temporary folder with its own XDG config, so no session file or remembered state is left
behind.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import re
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_MS = 350.0
#: Part of the prompt box's placeholder: on screen only once the chat is laid out.
MARKER = "every lane at once"
ALT_SCREEN = b"\x1b[?1049h"
_ESCAPES = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]")


#: The floor: a bare Textual app with the chat's widget kinds (a tab bar, two text panes,
#: a text area with the same placeholder, the footer), started the same way.
FLOOR_APP = f"""
from textual.app import App
from textual.widgets import Footer, Static, TabbedContent, TabPane, TextArea
class Floor(App):
    def compose(self):
        yield Static("quantlab")
        with TabbedContent():
            with TabPane("Chat"):
                yield Static("bf16"); yield Static("awq")
                yield TextArea(placeholder="{MARKER}")
            yield TabPane("Runner"); yield TabPane("Telemetry")
        yield Footer()
Floor().run()
"""


#: CPU time (user + system) each process had used when its first frame was seen, in
#: the order of the runs: unlike the wall time, hardly moved by other load on the machine.
CPU_MS: list[float] = []


def cpu_ms(pid: int) -> float:
    """User + system CPU milliseconds of ``pid`` so far (Linux ``/proc``; -1 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return -1.0
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def one_run(
    size: tuple[int, int], cwd: Path, timeout: float = 30.0, *, floor: bool = False
) -> float:
    """Milliseconds from spawn to the first frame (raises on timeout); ``floor``: of
    :data:`FLOOR_APP` instead of quantlab."""
    cols, rows = size
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = {
        **os.environ,
        "TERM": "xterm-256color",
        "COLORTERM": "truecolor",
        "XDG_CONFIG_HOME": str(cwd / "config"),
        "XDG_STATE_HOME": str(cwd / "state"),
        "PYTHONPATH": str(ROOT),
    }
    argv = [sys.executable, "-m", "quantlab"]
    argv += ["--endpoint", "bf16=http://127.0.0.1:9", "--endpoint", "awq=http://127.0.0.1:10"]
    if floor:
        argv = [sys.executable, "-c", FLOOR_APP]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, start_new_session=True
    )
    os.close(slave)
    seen = b""
    try:
        end = t0 + timeout
        while True:
            left = end - time.perf_counter()
            if left <= 0:
                tail = _ESCAPES.sub(b"", seen)[-300:].decode("utf-8", "replace")
                raise TimeoutError(f"no first frame within {timeout:g} s; output ends {tail!r}")
            ready, _, _ = select.select([master], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the process ended: its side of the pty closed
                raise RuntimeError(f"quantlab exited first: {seen[-300:]!r}") from None
            seen += chunk
            if ALT_SCREEN in seen and MARKER.encode() in _ESCAPES.sub(b"", seen):
                wall = (time.perf_counter() - t0) * 1000
                CPU_MS.append(cpu_ms(proc.pid))
                return wall
    finally:
        with_suppressed_kill(proc, master)
        drain_and_close(master)


def with_suppressed_kill(proc: subprocess.Popen[bytes], master: int) -> None:
    """SIGTERM (the app restores the terminal and quits), SIGKILL if it lingers.

    The terminal is read while the app quits, as a real one is: a large screen's last
    frames would otherwise fill the pty's buffer, the app would block writing them and
    never get to its exit (which left its session files behind at 200x60)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    end = time.monotonic() + 10
    while proc.poll() is None and time.monotonic() < end:
        if select.select([master], [], [], 0.05)[0]:
            try:
                os.read(master, 65536)
            except OSError:  # its side closed: it is exiting
                break
    try:
        proc.wait(timeout=max(0.1, end - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def drain_and_close(fd: int) -> None:
    try:
        while select.select([fd], [], [], 0)[0] and os.read(fd, 65536):
            pass
    except OSError:
        pass
    os.close(fd)


def python_startup_ms(runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--size", default="80x24", help="terminal COLSxROWS (default 80x24)")
    a = ap.parse_args(argv)
    cols, rows = (int(x) for x in a.size.lower().split("x"))
    load_before = os.getloadavg()[0]
    times: list[float] = []
    floor: list[float] = []
    with tempfile.TemporaryDirectory(prefix="quantlab-first-frame-") as tmp:
        one_run((cols, rows), Path(tmp))  # warm the OS file cache; not counted
        one_run((cols, rows), Path(tmp), floor=True)
        CPU_MS.clear()
        for _ in range(a.runs):  # interleaved, so both see the same machine
            times.append(one_run((cols, rows), Path(tmp)))
            floor.append(one_run((cols, rows), Path(tmp), floor=True))
        left = (
            sorted(p.name for p in (Path(tmp) / "sessions").glob("*"))
            if (Path(tmp) / "sessions").exists()
            else []
        )
    out = {
        "first_frame_ms": [round(t, 1) for t in times],
        "median_ms": round(statistics.median(times), 1),
        "max_ms": round(max(times), 1),
        "goal_ms": GOAL_MS,
        "meets_goal_median": statistics.median(times) <= GOAL_MS,
        "python_startup_ms": round(python_startup_ms(), 1),
        "cpu_ms_median": round(statistics.median(CPU_MS[0::2]), 1),
        "textual_floor_median_ms": round(statistics.median(floor), 1),
        "textual_floor_cpu_ms_median": round(statistics.median(CPU_MS[1::2]), 1),
        "over_floor_median_ms": round(statistics.median(times) - statistics.median(floor), 1),
        "size": f"{cols}x{rows}",
        "session_files_left": left,
        "load_avg_1m_before": round(load_before, 2),
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
