"""Launch and supervise vLLM servers for a BF16-vs-quant comparison on one GPU.

Why this exists: two ``vllm serve`` processes on one GPU fail in ways that cost an
afternoon. ``--gpu-memory-utilization`` is a fraction of the *whole* GPU, so the two
fractions must sum below 1 (the default 0.9 makes the second server fail), and two servers
profiling free memory at the same time disturb each other (vLLM issues #14376, #17979), so
they must start one after the other. ``quantlab up`` encodes that: fractions that fit,
sequential start with ``/health`` polling, the log tail when a server dies, and no orphan
servers when quantlab exits (Ctrl+C, SIGTERM, SIGHUP, crash).
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from quantlab.records import Endpoint

#: Headroom left free on the GPU when the user gives no fractions (CUDA context, other
#: processes, fragmentation).
DEFAULT_FRACTIONS: tuple[float, float] = (0.45, 0.40)
LOG_TAIL_LINES = 40


class LaunchError(RuntimeError):
    """A server could not be started; the message says which and why (with its log tail)."""


@dataclass(slots=True)
class ServerSpec:
    """One ``vllm serve`` process to start."""

    name: str
    model: str
    port: int
    gpu_memory_utilization: float
    role: str = "candidate"
    quantization: str | None = None
    dtype: str | None = None
    max_model_len: int | None = None
    served_model_name: str | None = None
    extra_args: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"

    def argv(self, vllm_cmd: Sequence[str]) -> list[str]:
        """The exact command line; every flag explicit so the log says what ran."""
        args = [*vllm_cmd, "serve", self.model, "--host", self.host, "--port", str(self.port)]
        args += ["--gpu-memory-utilization", f"{self.gpu_memory_utilization:.2f}"]
        if self.quantization:
            args += ["--quantization", self.quantization]
        if self.dtype:
            args += ["--dtype", self.dtype]
        if self.max_model_len:
            args += ["--max-model-len", str(self.max_model_len)]
        args += ["--served-model-name", self.served_model_name or self.name]
        return args + list(self.extra_args)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


def check_fractions(fractions: Sequence[float]) -> None:
    """Refuse fractions that cannot both fit: each in (0, 1], sum below 0.95."""
    for f in fractions:
        if not 0 < f <= 1:
            raise LaunchError(f"--gpu-memory-utilization {f} is not a fraction in (0, 1]")
    total = sum(fractions)
    if total >= 0.95:
        raise LaunchError(
            f"the servers' --gpu-memory-utilization fractions sum to {total:.2f}: each is a "
            "fraction of the WHOLE GPU, so they must sum below ~0.95 (e.g. 0.45 and 0.40)"
        )


def find_vllm(explicit: str | None = None) -> list[str]:
    """The command that runs vLLM's CLI: an explicit one, ``vllm`` on PATH, or the module."""
    if explicit:
        return explicit.split()
    exe = shutil.which("vllm")
    if exe:
        return [exe]
    try:
        import importlib.util

        if importlib.util.find_spec("vllm") is not None:
            return [sys.executable, "-m", "vllm.entrypoints.cli.main"]
    except (ImportError, ValueError):
        pass
    raise LaunchError(
        "vLLM is not installed here: `pip install 'quantlab[vllm]'` on a GPU machine, or pass "
        "--vllm-bin PATH"
    )


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it when quantlab dies, even by
    kill -9, so a server never outlives its supervisor."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


class ServerProcess:
    """A running ``vllm serve`` child with a bounded in-memory log tail and a log file."""

    def __init__(self, spec: ServerSpec, vllm_cmd: Sequence[str], log_dir: Path) -> None:
        self.spec = spec
        self.log_path = log_dir / f"{spec.name}.log"
        self.tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("a", encoding="utf-8", errors="replace")
        self.proc = subprocess.Popen(
            spec.argv(vllm_cmd),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            preexec_fn=_die_with_parent,
        )
        self._reader = threading.Thread(target=self._pump, name=f"log-{spec.name}", daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.tail.append(line.rstrip("\n"))
            self._log.write(line)
            self._log.flush()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail_text(self) -> str:
        return "\n".join(self.tail)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; idempotent."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(timeout=2)
        self._log.close()

    def endpoint(self) -> Endpoint:
        s = self.spec
        return Endpoint(
            name=s.name,
            base_url=s.base_url,
            model=s.served_model_name or s.name,
            role="reference" if s.role == "reference" else "candidate",
            backend="vllm",
            quantization=s.quantization,
            max_context=s.max_model_len,
            pid=self.proc.pid,
        )


def wait_healthy(
    server: ServerProcess,
    timeout: float,
    *,
    poll_s: float = 1.0,
    on_wait: Callable[[float], None] | None = None,
) -> None:
    """Poll ``/health`` until 200; raise LaunchError with the log tail if the server dies
    or the timeout passes."""
    start = time.monotonic()
    url = server.spec.base_url + "/health"
    with httpx.Client(timeout=2.0) as http:
        while True:
            if not server.alive():
                raise LaunchError(
                    f"server {server.spec.name!r} exited with status {server.proc.returncode} "
                    f"while starting; last log lines ({server.log_path}):\n{server.tail_text()}"
                )
            try:
                if http.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            waited = time.monotonic() - start
            if waited > timeout:
                raise LaunchError(
                    f"server {server.spec.name!r} not healthy after {timeout:.0f} s "
                    f"(log: {server.log_path}); last lines:\n{server.tail_text()}"
                )
            if on_wait:
                on_wait(waited)
            time.sleep(poll_s)


class Supervisor:
    """Starts servers one after the other and stops all of them on any way out."""

    def __init__(self, specs: Sequence[ServerSpec], vllm_cmd: Sequence[str], log_dir: Path):
        self.specs = list(specs)
        self.vllm_cmd = list(vllm_cmd)
        self.log_dir = log_dir
        self.servers: list[ServerProcess] = []

    def start(
        self, health_timeout: float = 900.0, on_event: Callable[[str], None] | None = None
    ) -> list[Endpoint]:
        say = on_event or (lambda _msg: None)
        try:
            for spec in self.specs:
                say(f"starting {spec.name}: {' '.join(spec.argv(self.vllm_cmd))}")
                server = ServerProcess(spec, self.vllm_cmd, self.log_dir)
                self.servers.append(server)
                wait_healthy(server, health_timeout)
                say(f"{spec.name} ready at {spec.base_url} (pid {server.proc.pid})")
        except BaseException:
            self.stop()
            raise
        return [s.endpoint() for s in self.servers]

    def first_dead(self) -> ServerProcess | None:
        return next((s for s in self.servers if not s.alive()), None)

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def install_stop_handlers(stop: Callable[[], None]) -> None:
    """SIGTERM and SIGHUP (an SSH drop) stop the servers, then exit like the signal would."""

    def handler(signum: int, _frame: object) -> None:
        stop()
        os._exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)
