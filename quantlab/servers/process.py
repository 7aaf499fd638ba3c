"""One child server process: spawned from an argument list (never a shell), tied to
quantlab's life, its output in a log file whose tail is at hand, stopped for sure.

No orphan servers, whatever ends quantlab:
- normal exit: ``atexit`` stops every live server (:func:`stop_all`);
- SIGTERM, SIGHUP: :mod:`quantlab.servers.signals` stops them, then exits 128 + signal;
- Ctrl+C: children stay in quantlab's process group, so the terminal's SIGINT reaches them
  too; quantlab unwinds through KeyboardInterrupt and ``atexit``;
- crash or ``kill -9``: before exec each child asks the kernel for a signal when its parent
  goes (``PR_SET_PDEATHSIG``) and exits at once if the parent is already gone. The kernel
  means the parent *thread*, so children are forked from the main thread or from one
  long-lived spawner thread, never from a short worker thread whose end would kill them.

The log: the child writes straight into a file (a named one in a log folder, or an
unlinked temporary one), so no pipe can fill up and stall a chatty server, and the tail is
read back with ``pread`` when a start fails.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx

EXIT_PARENT_GONE = 3
_PR_SET_PDEATHSIG = 1


class ServerStartError(RuntimeError):
    """A server could not be started; the message says which and why (with its log tail)."""


# ------------------------------------------------------------------ die with the parent

_PRCTL: Any = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError, AttributeError):
        _PRCTL = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, not after fork


def _death_signal(sig: int, parent: int) -> Callable[[], None]:
    """A ``preexec_fn``: PR_SET_PDEATHSIG, then exit if the parent already went (the
    window between fork and prctl)."""

    def preexec() -> None:
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(EXIT_PARENT_GONE)

    return preexec


class _Spawner:
    """Forks children from a thread that lives as long as the process (see module doc)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, fn: Callable[[], Any]) -> Any:
        if threading.current_thread() is threading.main_thread():
            return fn()  # the main thread ends only with the process
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="quantlab-server-spawner", daemon=True
                )
                self._thread.start()
        fut: Future[Any] = Future()
        self._jobs.put((fn, fut))
        return fut.result()

    def _loop(self) -> None:
        while True:
            fn, fut = self._jobs.get()
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)


_SPAWNER = _Spawner()

# ------------------------------------------------------------------ process-wide clean-up

_LIVE: set[ServerProcess] = set()
_LIVE_LOCK = threading.Lock()
_ATEXIT_DONE = False


def stop_all() -> None:
    """Stop every server this process started and has not stopped yet."""
    with _LIVE_LOCK:
        servers = list(_LIVE)
    for server in servers:
        server.stop()


def _register(server: ServerProcess) -> None:
    global _ATEXIT_DONE
    with _LIVE_LOCK:
        if not _ATEXIT_DONE:
            atexit.register(stop_all)
            _ATEXIT_DONE = True
        _LIVE.add(server)


# ------------------------------------------------------------------ the process


class ServerProcess:
    """A running child server.

    ``argv``: the exact argument list (``shell=False`` always: a model name or a flag is
    one argument, never parsed by a shell). ``log_path``: where its output goes (None: an
    unlinked temporary file). ``stdout_pipe``: keep stdout as a pipe for a line the child
    announces itself with (stderr still goes to the log). ``death_signal``: what the kernel
    sends the child when quantlab dies.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path | None = None,
        stdout_pipe: bool = False,
        death_signal: int = signal.SIGTERM,
        env: Mapping[str, str] | None = None,
        stop_timeout: float = 20.0,
    ) -> None:
        if isinstance(argv, str) or not argv:
            raise TypeError("argv must be a non-empty list of arguments, not a string")
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.stop_timeout = stop_timeout
        self._owner = os.getpid()  # a forked copy of this object must not stop the server
        self._stopped = False
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            write_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._log_fd = os.open(log_path, os.O_RDONLY)
        else:
            fd, tmp = tempfile.mkstemp(prefix=f"quantlab-{name}-", suffix=".log")
            os.close(fd)
            write_fd = os.open(tmp, os.O_WRONLY | os.O_APPEND)
            self._log_fd = os.open(tmp, os.O_RDONLY)
            os.unlink(tmp)
        parent = os.getpid()
        try:
            self.proc: subprocess.Popen[bytes] = _SPAWNER.run(
                lambda: subprocess.Popen(
                    self.argv,
                    shell=False,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE if stdout_pipe else write_fd,
                    stderr=write_fd,
                    close_fds=True,
                    env=None if env is None else dict(env),
                    preexec_fn=_death_signal(death_signal, parent),
                )
            )
        except OSError as exc:
            os.close(self._log_fd)
            why = f"cannot start the {name} server ({self.argv[0]}): {exc}"
            raise ServerStartError(why) from exc
        finally:
            os.close(write_fd)
        _register(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, max_bytes: int = 4000) -> str:
        """The end of the server's log (decoded leniently)."""
        try:
            size = os.fstat(self._log_fd).st_size
            data = os.pread(self._log_fd, max_bytes, max(0, size - max_bytes))
        except OSError:
            return ""
        return data.decode(errors="replace")

    def tail_lines(self, lines: int = 40) -> str:
        return "\n".join(self.tail(16_000).splitlines()[-lines:]) or "(no output)"

    def signal_stop(self) -> None:
        """SIGTERM now (the first half of :meth:`stop`, to stop several at once)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM, SIGKILL after ``timeout`` (default ``stop_timeout``); idempotent."""
        if os.getpid() != self._owner:
            return
        with _LIVE_LOCK:
            _LIVE.discard(self)
        self.signal_stop()
        try:
            self.proc.wait(timeout=self.stop_timeout if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait()
        if self._stopped:
            return
        self._stopped = True
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        with contextlib.suppress(OSError):
            os.close(self._log_fd)

    def died(self, what: str = "while starting") -> ServerStartError:
        where = f" ({self.log_path})" if self.log_path else ""
        return ServerStartError(
            f"server {self.name!r} exited with status {self.proc.poll()} {what}; "
            f"last log lines{where}:\n{self.tail_lines()}"
        )

    def wait_healthy(
        self,
        url: str,
        timeout: float,
        *,
        poll_s: float = 1.0,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        """Poll ``url`` (a ``/health``) until 200. ``on_wait(seconds waited)`` after each
        miss, for progress. Raises ServerStartError with the log tail if the server dies or
        ``timeout`` passes."""
        start = time.monotonic()
        with httpx.Client(timeout=min(5.0, max(timeout, 0.1)), trust_env=False) as http:
            while True:
                if not self.alive():
                    raise self.died()
                try:
                    if http.get(url).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                waited = time.monotonic() - start
                if waited > timeout:
                    where = f" (log: {self.log_path})" if self.log_path else ""
                    raise ServerStartError(
                        f"server {self.name!r} not healthy after {timeout:.0f} s{where}; "
                        f"last log lines:\n{self.tail_lines()}"
                    )
                if on_wait is not None:
                    on_wait(waited)
                time.sleep(poll_s)
