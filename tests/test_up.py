"""`quantlab up`: fractions, command lines, N servers, sequential start, a dying server,
signals, no orphans, no shell.

vLLM cannot run on a machine without a GPU, so the supervised program here is
tests/data/fake_vllm.py, which speaks the one thing `up` relies on: /health."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from quantlab.backends.vllm import VllmLaunchError, check_fractions
from quantlab.commands.up import specs
from quantlab.servers import ServerStartError
from quantlab.servers.supervisor import Launch, Supervisor

FAKE = [sys.executable, str(Path(__file__).parent / "data" / "fake_vllm.py")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_ports(n: int) -> int:
    """A base port with ``n`` free ports from it (``quantlab up`` gives +1 a server).
    The ephemeral range is where other tests' servers bind, so search below it."""
    for base in range(20000, 30000, 7):
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no run of free ports")


def test_fractions_must_fit_on_one_gpu() -> None:
    check_fractions([0.45, 0.40])
    with pytest.raises(VllmLaunchError, match="WHOLE GPU"):
        check_fractions([0.9, 0.9])
    with pytest.raises(VllmLaunchError, match="WHOLE GPU"):
        check_fractions([0.3, 0.3, 0.4])  # three servers: the sum counts, not each
    with pytest.raises(VllmLaunchError, match="not a fraction"):
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


def _launch(name: str, model: str, port: int, log_dir: Path) -> Launch:
    argv = [*FAKE, "serve", model, "--host", "127.0.0.1", "--port", str(port)]
    return Launch(name, argv, f"http://127.0.0.1:{port}/health", log_dir / f"{name}.log")


def test_servers_start_one_after_the_other_and_stop(tmp_path: Path) -> None:
    launches = [
        _launch("bf16", "m", _free_port(), tmp_path),
        _launch("awq", "m-awq", _free_port(), tmp_path),
        _launch("gptq", "m-gptq", _free_port(), tmp_path),
    ]
    sup = Supervisor(launches)
    events: list[str] = []
    servers = sup.start_sequential(30, say=events.append, poll_s=0.1)
    try:
        assert [s.name for s in servers] == ["bf16", "awq", "gptq"]
        # sequential: each server was only started once the one before was ready
        assert [e.split()[0] for e in events] == [
            "starting", "bf16", "starting", "awq", "starting", "gptq"
        ]  # fmt: skip
        pids = [s.pid for s in servers]
    finally:
        sup.stop()
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)
    assert "fake vllm serving m " in (tmp_path / "bf16.log").read_text()


def test_a_server_that_dies_is_reported_with_its_log(tmp_path: Path) -> None:
    launches = [
        _launch("bf16", "m", _free_port(), tmp_path),
        _launch("awq", "crash", _free_port(), tmp_path),
    ]
    sup = Supervisor(launches)
    first: list[psutil.Process] = []
    with pytest.raises(ServerStartError, match="CUDA out of memory") as err:
        sup.start_sequential(
            30, say=lambda m: first.extend(psutil.Process(s.pid) for s in sup.servers), poll_s=0.1
        )
    assert "'awq' exited with status 1" in str(err.value)
    assert sup.servers == []
    _, alive = psutil.wait_procs(first, timeout=5)
    assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == [], "the healthy one too"


def _up(*flags: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "quantlab", "up", *flags, "--dry-run"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_one_command_line_takes_a_reference_and_any_number_of_candidates() -> None:
    lines = _up(
        "--max-model-len", "8192", "--vllm-arg", "--enforce-eager",
        "--ref", "bf16=Qwen/Qwen2.5-1.5B-Instruct", "--mem", "0.3",
        "--cand", "awq=Qwen/Qwen2.5-1.5B-Instruct-AWQ", "--quantization", "awq",
        "--dtype", "float16", "--mem", "0.25",
        "--cand", "fp8kv=Qwen/Qwen2.5-1.5B-Instruct", "--quantization", "fp8",
        "--vllm-arg", "--kv-cache-dtype fp8", "--port", "9100",
    )  # fmt: skip
    assert len(lines) == 3
    ref, awq, fp8 = lines
    assert "serve Qwen/Qwen2.5-1.5B-Instruct --host 127.0.0.1 --port 8000" in ref
    assert "--gpu-memory-utilization 0.30 --dtype auto" in ref and "--quantization" not in ref
    assert "--port 8001 --gpu-memory-utilization 0.25 --quantization awq --dtype float16" in awq
    assert "--port 9100" in fp8 and "--quantization fp8 --dtype auto" in fp8
    assert fp8.endswith("--enforce-eager --kv-cache-dtype fp8")
    assert all("--max-model-len 8192" in x and "--enforce-eager" in x for x in lines)
    assert "--kv-cache-dtype" not in ref + awq, "a candidate's flag is its own"
    # no server is forced to bfloat16; the rest of the GPU is shared out when not given
    assert not any("bfloat16" in x for x in lines)
    assert "--gpu-memory-utilization 0.30" in fp8  # 0.85 - 0.55


def test_pass_through_flags_are_taken_the_way_users_type_them() -> None:
    for form in (["--vllm-arg", "--enforce-eager"], ["--vllm-arg=--enforce-eager"]):
        lines = _up("--ref", "m", "--cand", "q", *form)
        assert lines[1].endswith("--served-model-name cand1 --enforce-eager")
        assert "--enforce-eager" not in lines[0]


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--ref", "a", "--cand", "b", "--mem", "0.6", "--cand", "c", "--mem", "0.5"], "WHOLE GPU"),
        (["--ref", "a"], "at least one --cand"),
        (["--cand", "b"], "exactly one --ref"),
        (["--ref", "x=a", "--cand", "x=b"], "names must differ"),
        (["--ref", "a", "--cand", "b", "--port", "8000"], "two servers on one port"),
        (["--ref", "smollm2-q4_0.gguf", "--cand", "b"], "no GGUF loader"),
        (["--bf16", "a"], "needs both"),
    ],
)
def test_bad_server_lists_are_one_clear_line(flags: list[str], words: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "quantlab", "up", *flags, "--dry-run"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and words in out.stderr and "Traceback" not in out.stderr


def test_a_model_name_or_flag_cannot_inject_a_command(tmp_path: Path) -> None:
    """Servers start from argument lists: shell syntax in a model name or a flag reaches
    the server as one literal argument and runs nothing."""
    marker = tmp_path / "pwned"
    model = f"m; touch {marker} $(touch {marker}) `touch {marker}`"
    flag = f"--x=$(touch {marker})"
    ns = _namespace(["--ref", model, "--cand", "q", "--vllm-arg", shlex.quote(flag)])
    spec = specs(ns)[0]
    from quantlab.backends import VLLM

    argv = VLLM.launch_argv(spec, FAKE)
    port = _free_port()
    argv[argv.index("--port") + 1] = str(port)
    sup = Supervisor([Launch("ref", argv, f"http://127.0.0.1:{port}/health", tmp_path / "r.log")])
    try:
        sup.start_sequential(30, poll_s=0.1)
    finally:
        sup.stop()
    log = (tmp_path / "r.log").read_text()
    assert f"fake vllm serving {model} on {port}" in log  # one argument, as typed
    assert not marker.exists()
    assert spec.host == "127.0.0.1"  # loopback unless --host says otherwise


def _namespace(flags: list[str]) -> object:
    from quantlab.cli import build_parser, join_pass_through, pass_through_options

    return build_parser().parse_args(["up", *join_pass_through(flags, pass_through_options())])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_stops_every_server_and_exits_with_its_status(
    tmp_path: Path, sig: signal.Signals
) -> None:
    port = _free_ports(3)
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "quantlab", "up", "--port", str(port),
            "--ref", "m", "--cand", "q1", "--cand", "q2",
            "--vllm-bin", " ".join(FAKE), "--log-dir", str(tmp_path),
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ready"), line + proc.stderr.read()
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) == 3
        proc.send_signal(sig)
        assert proc.wait(15) == 128 + sig
        _, alive = psutil.wait_procs(children, timeout=10)
        assert [c for c in alive if c.status() != psutil.STATUS_ZOMBIE] == []
    finally:
        if proc.poll() is None:
            proc.kill()


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
