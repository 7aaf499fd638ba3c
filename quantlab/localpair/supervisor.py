"""Start, watch and stop the two llama.cpp child servers of the local pair.

The processes are :class:`quantlab.servers.ServerProcess` children, so the pair gets the
same guarantees as every server quantlab starts (no orphans on exit, SIGTERM/SIGHUP,
Ctrl+C, crash or ``kill -9``; see ``quantlab/servers/process.py``): the kernel SIGKILLs a
pair server when quantlab goes. Both start at once (seconds on a CPU); each announces its
URL as one JSON line on stdout, then answers ``/health``; ``/props`` gives the facts.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from quantlab.backends import LLAMA_CPP, ServeSpec
from quantlab.backends.llamacpp import facts_from_props
from quantlab.localpair import serve
from quantlab.localpair.models import ModelBuildError, PairFiles, Progress, ensure_models
from quantlab.records import Endpoint, Role
from quantlab.servers import ServerProcess, ServerStartError, install_exit_handlers
from quantlab.servers.supervisor import Launch, Supervisor

DEFAULT_START_TIMEOUT_S = 60.0
DEFAULT_STOP_TIMEOUT_S = 5.0
SERVE_PROGRAM = [sys.executable, "-m", "quantlab.localpair.serve"]


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
    server: ServerProcess
    url: str | None = None
    buf: bytes = b""
    props: dict[str, Any] = field(default_factory=dict)


def _lane_specs(files: PairFiles) -> list[LaneSpec]:
    return [
        LaneSpec("bf16", "reference", "BF16", "smollm2-135m-bf16", files.bf16),
        LaneSpec("q4_0", "candidate", "Q4_0", "smollm2-135m-q4_0", files.q4_0),
    ]


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
        self._sup: Supervisor | None = None
        self._owner = os.getpid()  # a forked copy of this object must not stop the servers
        self._lock = threading.RLock()  # re-entrant: a signal handler may stop mid-start

    # ---------------------------------------------------------------- public

    @property
    def running(self) -> bool:
        """True while every child is alive."""
        return bool(self._children) and all(c.server.alive() for c in self._children)

    @property
    def pids(self) -> list[int]:
        return [c.server.pid for c in self._children]

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
            install_exit_handlers()  # from the main thread only; a no-op elsewhere
            try:
                self.files = ensure_models(self.cache_dir, report)
            except ModelBuildError as exc:
                raise LocalPairError(str(exc)) from exc
            try:
                report("starting the llama.cpp servers", None)
                t0 = time.monotonic()
                specs = _lane_specs(self.files)
                self._sup = Supervisor(
                    [self._launch(s) for s in specs], stop_timeout=self.stop_timeout
                )
                try:
                    servers = self._sup.start_all()
                except ServerStartError as exc:
                    raise LocalPairError(str(exc)) from exc
                self._children = [_Child(sp, sv) for sp, sv in zip(specs, servers, strict=True)]
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
            self._children = []
            self.endpoints = []
            sup, self._sup = self._sup, None
            if sup is not None:
                sup.stop()

    def log_tail(self, name: str, max_bytes: int = 4000) -> str:
        """The end of a running child's stderr (llama.cpp's log)."""
        for c in self._children:
            if c.spec.name == name:
                return c.server.tail(max_bytes)
        return ""

    def __enter__(self) -> LocalPair:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- internals

    def _launch(self, spec: LaneSpec) -> Launch:
        serve_spec = ServeSpec(
            name=spec.name,
            model=str(spec.path),
            host=self.host,
            port=0,
            role=spec.role,
            quantization=spec.quantization,
            max_model_len=self.kv_tokens,
            served_model_name=spec.model_id,
            extra_args=[
                "--parallel",
                str(self.parallel),
                "--threads",
                str(self.threads),
                "--parent-pid",
                str(os.getpid()),
            ],
        )
        argv = LLAMA_CPP.launch_argv(serve_spec, SERVE_PROGRAM)
        return Launch(spec.name, argv, stdout_pipe=True, death_signal=signal.SIGKILL)

    def _died(self, c: _Child) -> LocalPairError:
        rc = c.server.proc.poll()
        tail = c.server.tail(2000).strip() or "(no output)"
        return LocalPairError(
            f"the {c.spec.name} server ({c.spec.path.name}) exited with status {rc} while "
            f"starting; its log ends with:\n{tail}"
        )

    def _timeout(self, c: _Child, what: str) -> LocalPairError:
        tail = c.server.tail(2000).strip() or "(no output)"
        return LocalPairError(
            f"the {c.spec.name} server did not {what} within {self.start_timeout:.0f} s; "
            f"its log ends with:\n{tail}"
        )

    def _wait_listening(self, deadline: float) -> None:
        """Read each child's one JSON line: its URL."""
        pending = {c.server.proc.stdout.fileno(): c for c in self._children if c.server.proc.stdout}
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._timeout(next(iter(pending.values())), "start listening")
            ready, _, _ = select.select(list(pending), [], [], min(left, 0.5))
            for fd in ready:
                c = pending[fd]
                chunk = os.read(fd, 4096)
                if not chunk:
                    c.server.proc.wait(timeout=5)
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
                if not c.server.alive() and fd not in ready:
                    raise self._died(c)

    def _wait_healthy(self, deadline: float) -> None:
        """Poll ``/health`` until 200, then read ``/props`` for the endpoint's facts."""
        for c in self._children:
            left = max(0.0, deadline - time.monotonic())
            try:
                c.server.wait_healthy(f"{c.url}/health", left, poll_s=0.05)
            except ServerStartError:
                raise (
                    self._died(c) if not c.server.alive() else self._timeout(c, "answer /health")
                ) from None
        with httpx.Client(trust_env=False, timeout=5.0) as http:
            for c in self._children:
                try:
                    props = http.get(f"{c.url}/props").json()
                except (httpx.HTTPError, ValueError):
                    continue
                c.props = props if isinstance(props, dict) else {}

    def _endpoint(self, c: _Child) -> Endpoint:
        assert c.url is not None
        facts = facts_from_props(c.props)
        return Endpoint(
            name=c.spec.name,
            base_url=c.url,
            model=c.spec.model_id,
            role=c.spec.role,
            backend=LLAMA_CPP.name,
            server_version=facts["server_version"],
            max_context=facts["max_context"],
            quantization=c.spec.quantization,
            pid=c.server.pid,
            status="ok",
            slots=facts["slots"] or self.parallel,
            model_path=str(c.spec.path),
        )
