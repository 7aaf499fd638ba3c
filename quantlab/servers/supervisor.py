"""Start several servers (one after the other, or all at once), wait until each is
healthy with progress, and stop all of them on any way out.

vLLM servers must start one after the other (two profiling free GPU memory at once
disturb each other); the local llama.cpp pair starts both at once (CPU, seconds). Either
way a server that dies or never gets healthy stops the ones already up, and the error
carries its log tail.
"""

from __future__ import annotations

import os
import shlex
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from quantlab.servers.process import ServerProcess, ServerStartError


@dataclass(slots=True)
class Launch:
    """One server to start: its name, exact argv, health URL (None: the caller waits in
    its own way, e.g. for a URL the child announces), log file, and what to add to
    quantlab's environment for it (``CUDA_VISIBLE_DEVICES``…; nothing: inherit it)."""

    name: str
    argv: list[str]
    health_url: str | None = None
    log_path: Path | None = None
    stdout_pipe: bool = False
    death_signal: int | None = None
    env: dict[str, str] = field(default_factory=dict)

    def shown(self) -> str:
        """The launch as a shell would take it: the environment it adds, then the argv."""
        pairs = [f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items())]
        return " ".join([*pairs, shlex.join(self.argv)])


Say = Callable[[str], None]


def _waiting(tell: Callable[[str], None], name: str) -> Callable[[float], None]:
    """Says how long ``name`` has been waited for."""
    return lambda waited: tell(f"{name}: waiting for /health ({waited:.0f} s)")


def _every(period: float, show: Callable[[float], None]) -> Callable[[float], None]:
    """A progress callback that passes on one call per ``period`` seconds waited."""
    last = [0.0]

    def tick(waited: float) -> None:
        if waited - last[0] >= period:
            last[0] = waited
            show(waited)

    return tick


class Supervisor:
    """Owns a set of :class:`ServerProcess`; ``stop()`` (or leaving ``with``) ends them."""

    def __init__(self, launches: Sequence[Launch], *, stop_timeout: float = 20.0) -> None:
        self.launches = list(launches)
        self.stop_timeout = stop_timeout
        self.servers: list[ServerProcess] = []

    def spawn(self, launch: Launch) -> ServerProcess:
        server = ServerProcess(
            launch.name,
            launch.argv,
            log_path=launch.log_path,
            stdout_pipe=launch.stdout_pipe,
            death_signal=signal.SIGTERM if launch.death_signal is None else launch.death_signal,
            env={**os.environ, **launch.env} if launch.env else None,
            stop_timeout=self.stop_timeout,
        )
        self.servers.append(server)
        return server

    def start_sequential(
        self, health_timeout: float, *, say: Say | None = None, poll_s: float = 1.0
    ) -> list[ServerProcess]:
        """Each server healthy before the next starts. Progress: "starting NAME: argv",
        "NAME: waiting for /health (N s)" every ~10 s, "NAME ready at URL (pid P)"."""
        tell = say or (lambda _m: None)
        try:
            for launch in self.launches:
                tell(f"starting {launch.name}: {launch.shown()}")
                server = self.spawn(launch)
                if launch.health_url is None:
                    continue
                server.wait_healthy(
                    launch.health_url,
                    health_timeout,
                    poll_s=poll_s,
                    on_wait=_every(10.0, _waiting(tell, launch.name)),
                )
                base = launch.health_url.rsplit("/health", 1)[0]
                tell(f"{launch.name} ready at {base} (pid {server.pid})")
        except BaseException:
            self.stop()
            raise
        return self.servers

    def start_all(self) -> list[ServerProcess]:
        """Spawn every server at once (the caller waits for them); on failure stop all."""
        try:
            for launch in self.launches:
                self.spawn(launch)
        except BaseException:
            self.stop()
            raise
        return self.servers

    def first_dead(self) -> ServerProcess | None:
        return next((s for s in self.servers if not s.alive()), None)

    def stop(self) -> None:
        """SIGTERM every server at once, then wait for each (SIGKILL after the timeout)."""
        servers, self.servers = list(self.servers), []
        for server in reversed(servers):
            server.signal_stop()
        for server in reversed(servers):
            server.stop()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["Launch", "ServerStartError", "Supervisor"]
