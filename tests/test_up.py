"""`quantlab up`: fractions, command lines, sequential start, a dying server, no orphans.

vLLM cannot run on a machine without a GPU, so the supervised program here is
tests/data/fake_vllm.py, which speaks the one thing `up` relies on: /health."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from quantlab.vllm_launch import LaunchError, ServerSpec, Supervisor, check_fractions

FAKE = [sys.executable, str(Path(__file__).parent / "data" / "fake_vllm.py")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fractions_must_fit_on_one_gpu() -> None:
    check_fractions([0.45, 0.40])
    with pytest.raises(LaunchError, match="WHOLE GPU"):
        check_fractions([0.9, 0.9])
    with pytest.raises(LaunchError, match="not a fraction"):
        check_fractions([0.0, 0.5])


def test_dry_run_prints_both_commands() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "quantlab",
            "up",
            "--bf16",
            "Qwen/Qwen2.5-1.5B-Instruct",
            "--quant",
            "Qwen/Qwen2.5-1.5B-Instruct-AWQ",
            "--quant-name",
            "awq",
            "--quantization",
            "awq",
            "--max-model-len",
            "16384",
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(out) == 2
    assert "serve Qwen/Qwen2.5-1.5B-Instruct --host 127.0.0.1 --port 8000" in out[0]
    assert "--gpu-memory-utilization 0.45" in out[0] and "--quantization" not in out[0]
    assert "--port 8001 --gpu-memory-utilization 0.40 --quantization awq" in out[1]
    assert "--served-model-name awq" in out[1] and "--max-model-len 16384" in out[1]


def test_servers_start_one_after_the_other_and_stop(tmp_path: Path) -> None:
    specs = [
        ServerSpec("bf16", "m", _free_port(), 0.45, role="reference"),
        ServerSpec("awq", "m-awq", _free_port(), 0.40, quantization="awq"),
    ]
    sup = Supervisor(specs, FAKE, tmp_path)
    events: list[str] = []
    endpoints = sup.start(30, on_event=events.append)
    try:
        assert [e.name for e in endpoints] == ["bf16", "awq"]
        assert endpoints[0].role == "reference" and endpoints[1].quantization == "awq"
        # sequential: the second server was only started once the first was ready
        assert [e.split()[0] for e in events] == ["starting", "bf16", "starting", "awq"]
        pids = [s.proc.pid for s in sup.servers]
    finally:
        sup.stop()
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)
    assert "fake vllm serving m" in (tmp_path / "bf16.log").read_text()


def test_a_server_that_dies_is_reported_with_its_log(tmp_path: Path) -> None:
    specs = [
        ServerSpec("bf16", "m", _free_port(), 0.45, role="reference"),
        ServerSpec("awq", "crash", _free_port(), 0.40),
    ]
    sup = Supervisor(specs, FAKE, tmp_path)
    with pytest.raises(LaunchError, match="CUDA out of memory") as err:
        sup.start(30)
    assert "'awq' exited with status 1" in str(err.value)
    assert not sup.servers[0].alive(), "the healthy server is stopped too"


def test_kill_9_of_quantlab_up_leaves_no_server(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "quantlab",
            "up",
            "--bf16",
            "m",
            "--quant",
            "q",
            "--port",
            str(port),
            "--vllm-bin",
            " ".join(FAKE),
            "--log-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "ready. In another terminal:" once both are healthy
        assert line.startswith("ready"), line + proc.stderr.read()
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) == 2
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(c.is_running() for c in children):
            time.sleep(0.1)
        alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert alive == []
    finally:
        if proc.poll() is None:
            proc.kill()
