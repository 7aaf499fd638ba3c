"""Which lane's server owns a GPU process: answers "how much does the AWQ server really
take next to BF16?".

Match order: the pid quantlab started (``Endpoint.pid``) or any of its descendants (vLLM's
GPU memory belongs to its ``VLLM::EngineCore`` child); else a command line on the GPU pid's
parent chain that serves the endpoint's port (``vllm serve … --port N``,
``llama-server --port N``, quantlab's own local-pair child); else "other".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

import psutil

from quantlab.backends import PROCESS_WORDS
from quantlab.records import Endpoint

_SERVER_WORDS = PROCESS_WORDS


def _port(endpoint: Endpoint) -> int | None:
    try:
        return urlsplit(endpoint.base_url).port
    except ValueError:
        return None


def _serves_port(cmdline: list[str], port: int) -> bool:
    joined = " ".join(cmdline)
    if not any(w in joined for w in _SERVER_WORDS):
        return False
    return re.search(rf"--port[ =]{port}\b", joined) is not None


class ProcessMapper:
    """Maps GPU pids to lane names; results are cached per pid (a pid's owner does not
    change while it lives)."""

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self.endpoints = list(endpoints)
        self._cache: dict[int, str] = {}
        self._names: dict[int, str] = {}

    def _by_started_pid(self, pid: int) -> str | None:
        """The nearest of ``pid`` and its ancestors that is a started server: a server's
        engine child maps to that server, not to quantlab above both servers."""
        started = {ep.pid: ep.name for ep in self.endpoints if ep.pid is not None}
        if not started:
            return None
        if pid in started:
            return started[pid]
        try:
            for parent in psutil.Process(pid).parents():
                if parent.pid in started:
                    return started[parent.pid]
        except psutil.Error:
            return None
        return None

    def _by_cmdline(self, pid: int) -> str | None:
        ports = [(ep.name, _port(ep)) for ep in self.endpoints]
        try:
            chain = [psutil.Process(pid)]
            chain += chain[0].parents()[:6]
        except psutil.Error:
            return None
        for proc in chain:
            try:
                cmd = proc.cmdline()
            except psutil.Error:
                continue
            for name, port in ports:
                if port is not None and _serves_port(cmd, port):
                    return name
        return None

    def lane_of(self, pid: int) -> str:
        """The lane whose server owns ``pid``, or "other"."""
        if pid in self._cache:
            return self._cache[pid]
        lane = self._by_started_pid(pid) or self._by_cmdline(pid) or "other"
        self._cache[pid] = lane
        return lane

    def name_of(self, pid: int) -> str:
        """A short name for the process table: vLLM's engine shows its title
        (``VLLM::EngineCore``), else the executable; "?" for a pid this host cannot see
        (a container's own pid namespace)."""
        if pid not in self._names:
            try:
                self._names[pid] = psutil.Process(pid).name() or "?"
            except psutil.Error:
                self._names[pid] = "?"
        return self._names[pid]


def gpu_lanes(
    gpus: Sequence[tuple[int, Sequence[int]]], lane_of: dict[int, str]
) -> dict[int, list[str]]:
    """GPU index -> the lanes whose processes hold it, servers first and "other" last: a
    tensor-parallel server shows on every GPU its workers hold. ``gpus`` is (index, pids)."""
    out: dict[int, list[str]] = {}
    for index, pids in gpus:
        lanes = {lane_of.get(pid, "other") for pid in pids}
        out[index] = sorted(lanes, key=lambda lane: (lane == "other", lane))
    return out
