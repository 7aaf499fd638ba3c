"""Start, watch and stop the two llama.cpp child servers of the local pair.

No orphan servers, whatever ends quantlab:
- normal exit: ``atexit`` stops every live pair;
- SIGTERM, SIGHUP (an SSH drop): handlers stop the pairs, chain to the handler that was
  there before, then exit with 128 + the signal number (installed from the main thread; a
  signal that was ignored, as SIGHUP under ``nohup``, stays ignored);
- Ctrl+C: the children stay in quantlab's process group, so the terminal's SIGINT reaches
  them as well and they exit; quantlab itself unwinds through KeyboardInterrupt and
  ``atexit``. (A process group of their own would shield them from the terminal and leave
  everything to quantlab's own clean-up.)
- crash or ``kill -9``: each child asked the kernel for SIGKILL when its parent goes
  (``PR_SET_PDEATHSIG``). The kernel means the parent *thread*, so children are always
  forked from the main thread or from one long-lived spawner thread, never from a short
  worker thread whose end would kill them.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import orjson

from quantlab.client import llama_build
from quantlab.localpair import serve
from quantlab.localpair.models import ModelBuildError, PairFiles, Progress, ensure_models
from quantlab.records import Endpoint, Role

DEFAULT_START_TIMEOUT_S = 60.0
DEFAULT_STOP_TIMEOUT_S = 5.0


class LocalPairError(Exception):
    """The pair cannot be built or started; the message says why (with the server's log
    tail when a child died)."""


@dataclass(frozen=True, slots=True)
class LaneSpec:
    """One server of the pair."""

    name: str
    role: Role
    quantization: str
    model_id: str
    path: Path


@dataclass(slots=True)
class _Child:
    spec: LaneSpec
    proc: subprocess.Popen[bytes]
    log_fd: int  # read side of the child's stderr file (unlinked; gone when closed)
    url: str | None = None
    buf: bytes = b""
    props: dict[str, Any] = field(default_factory=dict)


def _lane_specs(files: PairFiles) -> list[LaneSpec]:
    return [
        LaneSpec("bf16", "reference", "BF16", "smollm2-135m-bf16", files.bf16),
        LaneSpec("q4_0", "candidate", "Q4_0", "smollm2-135m-q4_0", files.q4_0),
    ]


# ------------------------------------------------------------------ spawning


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
                    target=self._loop, name="quantlab-localpair-spawner", daemon=True
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

_LIVE: set[LocalPair] = set()
_PREVIOUS: dict[int, Any] = {}
_ATEXIT_DONE = False


def stop_all() -> None:
    """Stop every pair still running in this process."""
    for pair in list(_LIVE):
        pair.stop()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    stop_all()
    previous = _PREVIOUS.get(signum)
    if callable(previous):
        previous(signum, frame)
    raise SystemExit(128 + signum)


def install_signal_handlers() -> bool:
    """Stop the pairs on SIGTERM and SIGHUP. Only the main thread may set handlers: returns
    False elsewhere (PR_SET_PDEATHSIG and atexit still cover those exits). Idempotent."""
    if threading.current_thread() is not threading.main_thread():
        return False
    for sig in (signal.SIGTERM, signal.SIGHUP):
        current = signal.getsignal(sig)
        if current is _on_signal or current == signal.SIG_IGN:
            continue
        _PREVIOUS[sig] = current
        signal.signal(sig, _on_signal)
    return True


def _register(pair: LocalPair) -> None:
    global _ATEXIT_DONE
    if not _ATEXIT_DONE:
        atexit.register(stop_all)
        _ATEXIT_DONE = True
    _LIVE.add(pair)


# ------------------------------------------------------------------ the pair


class LocalPair:
    """The BF16 reference and Q4_0 candidate of SmolLM2-135M-Instruct, each served by its
    own llama.cpp child process on a loopback port the OS picks.

    Defaults, and why: ``parallel=4`` slots so concurrency sweeps really overlap;
    ``kv_tokens=16384`` with a unified KV cache, so any one request may use the model's full
    trained context (8192, what ``/props`` reports as ``n_ctx``) while the four slots share
    the cache (two full-length requests fit at once; ~0.4 GB per server); ``threads=1`` per
    server (the pair shares a 2-core machine; ``$QUANTLAB_PAIR_THREADS`` or the argument
    raise it); llama.cpp's host prompt cache capped at 256 MiB (its default is 8 GiB).
    """

    def __init__(
        self,
        *,
        cache_dir: Path | None = None,
        kv_tokens: int = serve.DEFAULT_KV_TOKENS,
        parallel: int = serve.DEFAULT_PARALLEL,
        threads: int | None = None,
        host: str = "127.0.0.1",
        start_timeout: float = DEFAULT_START_TIMEOUT_S,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT_S,
    ) -> None:
        if threads is None:
            env = os.environ.get("QUANTLAB_PAIR_THREADS", "")
            threads = int(env) if env.isdigit() and int(env) > 0 else serve.DEFAULT_THREADS
        self.cache_dir = cache_dir
        self.kv_tokens = kv_tokens
        self.parallel = parallel
        self.threads = threads
        self.host = host
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.files: PairFiles | None = None
        self.endpoints: list[Endpoint] = []
        self.startup_s: float | None = None  # spawn -> both healthy (models already built)
        self._children: list[_Child] = []
        self._owner = os.getpid()  # a forked copy of this object must not stop the servers
        self._lock = threading.RLock()  # re-entrant: a signal handler may stop mid-start

    # ---------------------------------------------------------------- public

    @property
    def running(self) -> bool:
        """True while every child is alive."""
        return bool(self._children) and all(c.proc.poll() is None for c in self._children)

    @property
    def pids(self) -> list[int]:
        return [c.proc.pid for c in self._children]

    def start(self, progress: Progress | None = None) -> list[Endpoint]:
        """Build the models if needed, start both servers, wait until both answer
        ``/health``; returns ``[bf16 (reference), q4_0 (candidate)]``. Raises
        LocalPairError (after stopping whatever started) when that fails."""
        report = progress or (lambda _m, _f: None)
        with self._lock:
            if self._children:
                if self.running:
                    return self.endpoints
                self.stop()
            install_signal_handlers()
            try:
                self.files = ensure_models(self.cache_dir, report)
            except ModelBuildError as exc:
                raise LocalPairError(str(exc)) from exc
            _register(self)
            try:
                report("starting the llama.cpp servers", None)
                t0 = time.monotonic()
                for spec in _lane_specs(self.files):
                    self._spawn(spec)
                self._wait_listening(t0 + self.start_timeout)
                self._wait_healthy(t0 + self.start_timeout)
                self.startup_s = time.monotonic() - t0
                self.endpoints = [self._endpoint(c) for c in self._children]
            except BaseException:
                self.stop()
                raise
            names = ", ".join(f"{e.name} {e.base_url}" for e in self.endpoints)
            report(f"local pair ready: {names}", 1.0)
            return self.endpoints

    def stop(self) -> None:
        """SIGTERM both children, SIGKILL what is left after ``stop_timeout``; idempotent."""
        if os.getpid() != self._owner:
            return
        with self._lock:
            children, self._children = list(self._children), []
            self.endpoints = []
            _LIVE.discard(self)
            for c in children:
                if c.proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        c.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            for c in children:
                try:
                    c.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        c.proc.kill()
                    c.proc.wait()
                if c.proc.stdout is not None:
                    c.proc.stdout.close()
                with contextlib.suppress(OSError):
                    os.close(c.log_fd)

    def log_tail(self, name: str, max_bytes: int = 4000) -> str:
        """The end of a running child's stderr (llama.cpp's log)."""
        for c in self._children:
            if c.spec.name == name:
                return _tail(c.log_fd, max_bytes)
        return ""

    def __enter__(self) -> LocalPair:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- internals

    def _command(self, spec: LaneSpec) -> list[str]:
        return [
            sys.executable, "-m", "quantlab.localpair.serve",
            "--model", str(spec.path), "--host", self.host, "--port", "0",
            "--ctx", str(self.kv_tokens), "--parallel", str(self.parallel),
            "--threads", str(self.threads), "--name", spec.model_id,
            "--parent-pid", str(os.getpid()),
        ]  # fmt: skip

    def _spawn(self, spec: LaneSpec) -> None:
        fd, path = tempfile.mkstemp(prefix=f"quantlab-{spec.name}-", suffix=".log")
        os.close(fd)
        write_fd = os.open(path, os.O_WRONLY | os.O_APPEND)  # child appends, we pread
        read_fd = os.open(path, os.O_RDONLY)
        os.unlink(path)
        try:
            proc: subprocess.Popen[bytes] = _SPAWNER.run(
                lambda: subprocess.Popen(
                    self._command(spec),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=write_fd,
                    close_fds=True,
                )
            )
        except OSError as exc:
            os.close(read_fd)
            raise LocalPairError(f"cannot start the {spec.name} server: {exc}") from exc
        finally:
            os.close(write_fd)
        self._children.append(_Child(spec, proc, read_fd))

    def _died(self, c: _Child) -> LocalPairError:
        rc = c.proc.poll()
        tail = _tail(c.log_fd, 2000).strip() or "(no output)"
        return LocalPairError(
            f"the {c.spec.name} server ({c.spec.path.name}) exited with status {rc} while "
            f"starting; its log ends with:\n{tail}"
        )

    def _timeout(self, c: _Child, what: str) -> LocalPairError:
        tail = _tail(c.log_fd, 2000).strip() or "(no output)"
        return LocalPairError(
            f"the {c.spec.name} server did not {what} within {self.start_timeout:.0f} s; "
            f"its log ends with:\n{tail}"
        )

    def _wait_listening(self, deadline: float) -> None:
        """Read each child's one JSON line: its URL."""
        pending = {c.proc.stdout.fileno(): c for c in self._children if c.proc.stdout}
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._timeout(next(iter(pending.values())), "start listening")
            ready, _, _ = select.select(list(pending), [], [], min(left, 0.5))
            for fd in ready:
                c = pending[fd]
                chunk = os.read(fd, 4096)
                if not chunk:
                    c.proc.wait(timeout=5)
                    raise self._died(c)
                c.buf += chunk
                if b"\n" in c.buf:
                    line = c.buf.split(b"\n", 1)[0]
                    try:
                        c.url = str(orjson.loads(line)["url"]).rstrip("/")
                    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                        raise LocalPairError(
                            f"the {c.spec.name} server said {line[:200]!r}, not its address"
                        ) from exc
                    del pending[fd]
            for fd, c in list(pending.items()):
                if c.proc.poll() is not None and fd not in ready:
                    raise self._died(c)

    def _wait_healthy(self, deadline: float) -> None:
        """Poll ``/health`` until 200, then read ``/props`` for the endpoint's facts."""
        with httpx.Client(trust_env=False, timeout=5.0) as http:
            for c in self._children:
                while True:
                    if c.proc.poll() is not None:
                        raise self._died(c)
                    try:
                        if http.get(f"{c.url}/health").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise self._timeout(c, "answer /health")
                    time.sleep(0.05)
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    props = http.get(f"{c.url}/props").json()
                    c.props = props if isinstance(props, dict) else {}

    def _endpoint(self, c: _Child) -> Endpoint:
        assert c.url is not None
        dgs = c.props.get("default_generation_settings") or {}
        n_ctx = dgs.get("n_ctx")
        slots = c.props.get("total_slots")
        version = c.props.get("build_info")
        return Endpoint(
            name=c.spec.name,
            base_url=c.url,
            model=c.spec.model_id,
            role=c.spec.role,
            backend="llama.cpp",
            server_version=llama_build(version),
            max_context=int(n_ctx) if isinstance(n_ctx, int) else None,
            quantization=c.spec.quantization,
            pid=c.proc.pid,
            status="ok",
            slots=int(slots) if isinstance(slots, int) else self.parallel,
            model_path=str(c.spec.path),
        )


def _tail(fd: int, max_bytes: int) -> str:
    try:
        size = os.fstat(fd).st_size
        data = os.pread(fd, max_bytes, max(0, size - max_bytes))
    except OSError:
        return ""
    return data.decode(errors="replace")
