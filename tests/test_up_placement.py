"""`quantlab up --gpus`: each server's CUDA_VISIBLE_DEVICES and tensor parallel size, the
checks that run before anything starts (bad lists, user -tp that disagrees, fractions
that overflow a shared GPU, GPUs that are not there), and a real supervised start whose
fake vLLM servers report the GPUs they were given.

A fake NVML stands in for the GPU count (8 H100s), so the checks read the same on a
laptop and on a GPU box."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_nvml import FakeGpu, FakeNvml, NVMLError_LibraryNotFound
from test_up import FAKE, _free_ports, _namespace

from quantlab.backends import VLLM
from quantlab.backends.vllm import VllmLaunchError, parallel_sizes
from quantlab.commands.up import UpError, endpoint_of, specs
from quantlab.servers.placement import PlacementError, parse_gpus
from quantlab.telemetry import nvml as nv


@pytest.fixture
def eight_gpus(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNvml]:
    """quantlab's own environment names no GPUs; NVML sees eight."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    fake = FakeNvml([FakeGpu() for _ in range(8)])
    nv.set_nvml(fake)
    yield fake
    nv.set_nvml(None)


def _specs(*flags: str) -> list[Any]:
    return specs(_namespace(list(flags)))  # type: ignore[arg-type]


def _argv(spec: Any) -> list[str]:
    return VLLM.launch_argv(spec, ["vllm"])


def _value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_tp4_and_tp2_on_eight_gpus_get_their_devices_and_tp(eight_gpus: FakeNvml) -> None:
    ref, fp8 = _specs(
        "--ref", "M", "--gpus", "0-3",
        "--cand", "fp8=M", "--quantization", "fp8", "--gpus", "4,5",
        "--gpu-memory-utilization", "0.9",
    )  # fmt: skip
    assert ref.env == {"CUDA_VISIBLE_DEVICES": "0,1,2,3", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert fp8.env == {"CUDA_VISIBLE_DEVICES": "4,5", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    a, b = _argv(ref), _argv(fp8)
    assert _value(a, "--tensor-parallel-size") == "4"
    assert _value(b, "--tensor-parallel-size") == "2"
    # disjoint GPUs: each server may take most of its own GPUs
    assert _value(b, "--gpu-memory-utilization") == "0.90"
    assert _value(a, "--gpu-memory-utilization") == "0.85"
    assert endpoint_of(ref).gpus == [0, 1, 2, 3] and endpoint_of(fp8).gpus == [4, 5]


def test_a_server_without_gpus_inherits_the_environment(eight_gpus: FakeNvml) -> None:
    ref, cand = _specs("--ref", "m", "--cand", "q")
    assert ref.env == {} and cand.env == {}
    assert "--tensor-parallel-size" not in _argv(ref)
    assert endpoint_of(ref).gpus is None


def test_fractions_that_overflow_a_shared_gpu_are_refused_naming_it(eight_gpus: FakeNvml) -> None:
    with pytest.raises(UpError) as err:
        _specs(
            "--ref", "bf16=m", "--gpus", "0-3", "--mem", "0.6",
            "--cand", "fp8=m", "--gpus", "3,4", "--mem", "0.5",
        )  # fmt: skip
    msg = str(err.value)
    assert msg.startswith("GPU 3:"), msg
    assert "bf16 0.6 + fp8 0.5" in msg and "sum to 1.10" in msg


def test_a_server_without_gpus_counts_on_gpu_0(eight_gpus: FakeNvml) -> None:
    with pytest.raises(UpError, match=r"GPU 0: .*ref 0\.6 \+ cand1 0\.5"):
        _specs("--ref", "m", "--mem", "0.6", "--cand", "q", "--gpus", "0,1", "--mem", "0.5")


def test_an_overlap_that_fits_is_accepted(eight_gpus: FakeNvml) -> None:
    _, cand, other = _specs(
        "--ref", "m", "--gpus", "0,1", "--mem", "0.5",
        "--cand", "q", "--gpus", "1,2", "--mem", "0.4",
        "--cand", "r", "--gpus", "2",
    )  # fmt: skip
    assert _value(_argv(cand), "--gpu-memory-utilization") == "0.40"
    # r shares GPU 2 with q (0.4): it gets what q leaves of 0.85 there
    assert _value(_argv(other), "--gpu-memory-utilization") == "0.45"
    assert other.env["CUDA_VISIBLE_DEVICES"] == "2"


def test_tp_given_by_the_user_must_agree_with_the_list(eight_gpus: FakeNvml) -> None:
    with pytest.raises(UpError, match=r"ref: --gpus 0-3 holds 4 GPUs but --tensor-parallel-size 2"):
        _specs("--ref", "m", "--gpus", "0-3", "--vllm-arg", "-tp 2", "--cand", "q")
    # tp × pp = 4: accepted, and quantlab adds no second --tensor-parallel-size
    ref, _ = _specs(
        "--ref", "m", "--gpus", "0-3", "--vllm-arg", "--tensor-parallel-size=2 -pp 2",
        "--cand", "q",
    )  # fmt: skip
    assert ref.tensor_parallel_size is None
    assert sum(a.startswith("--tensor-parallel-size") for a in _argv(ref)) == 1
    # pp alone: quantlab fills tp in
    ref, _ = _specs("--ref", "m", "--gpus", "0-3", "--vllm-arg", "-pp 2", "--cand", "q")
    assert _value(_argv(ref), "--tensor-parallel-size") == "2"
    with pytest.raises(UpError, match="3 GPUs, not a multiple of --pipeline-parallel-size 2"):
        _specs("--ref", "m", "--gpus", "0-2", "--vllm-arg", "-pp 2", "--cand", "q")


def test_a_user_tp_without_gpus_counts_on_the_first_gpus(eight_gpus: FakeNvml) -> None:
    """vLLM puts a TP 2 server with no CUDA_VISIBLE_DEVICES on GPUs 0 and 1."""
    with pytest.raises(UpError, match=r"GPU 1: .*ref 0\.6 \+ cand1 0\.6"):
        _specs(
            "--ref", "m", "--vllm-arg", "-tp 2", "--mem", "0.6",
            "--cand", "q", "--gpus", "1", "--mem", "0.6",
        )  # fmt: skip


def test_gpus_that_are_not_there_are_refused_naming_the_ones_that_are(
    eight_gpus: FakeNvml,
) -> None:
    with pytest.raises(
        UpError,
        match=r"cand1: --gpus 6-9 names GPU 8, 9, but the GPUs here are 0-7 \(NVML sees 8\)",
    ):
        _specs("--ref", "m", "--cand", "q", "--gpus", "6-9")


def test_without_nvml_the_count_is_not_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    nv.set_nvml(FakeNvml(init_error=NVMLError_LibraryNotFound))
    try:
        _, cand = _specs("--ref", "m", "--cand", "q", "--gpus", "12,13")
    finally:
        nv.set_nvml(None)
    assert cand.env["CUDA_VISIBLE_DEVICES"] == "12,13"


def test_indexes_count_quantlabs_own_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside an allocation (CUDA_VISIBLE_DEVICES=4,5,6,7) --gpus 0,1 means its first two."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    ref, cand = _specs("--ref", "m", "--gpus", "0,1", "--cand", "q", "--gpus", "3")
    assert ref.env == {"CUDA_VISIBLE_DEVICES": "4,5"}  # their order, theirs to keep
    assert cand.env == {"CUDA_VISIBLE_DEVICES": "7"}
    assert endpoint_of(ref).gpus == [4, 5]
    with pytest.raises(
        UpError, match=r"GPUs here are 0-3 \(CUDA_VISIBLE_DEVICES=4,5,6,7 shows quantlab 4\)"
    ):
        _specs("--ref", "m", "--cand", "q", "--gpus", "3,4")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "needs a list"),
        (" , ", "not a GPU index"),
        ("0,,1", "not a GPU index"),
        ("a", "not a GPU index"),
        ("-1", "not a GPU index"),
        ("3-1", "runs backwards"),
        ("0-3,2", "GPU 2 is listed twice"),
        ("1,1", "GPU 1 is listed twice"),
        ("0-99999", "not a GPU index"),
    ],
)
def test_bad_gpu_lists_are_refused(text: str, words: str) -> None:
    with pytest.raises(PlacementError, match=words):
        parse_gpus(text)


def test_gpu_lists_take_indexes_and_ranges() -> None:
    assert parse_gpus("0-3") == [0, 1, 2, 3]
    assert parse_gpus("4,5") == [4, 5]
    assert parse_gpus(" 0-1, 6 ,3-4") == [0, 1, 6, 3, 4]


def test_parallel_sizes_are_read_in_every_form_vllm_takes() -> None:
    assert parallel_sizes(["--tensor-parallel-size", "4"]) == {"tp": 4}
    assert parallel_sizes(["-tp=2", "--pipeline_parallel_size", "2"]) == {"tp": 2, "pp": 2}
    assert parallel_sizes(["-dp", "2", "--enforce-eager", "-tp", "1"]) == {"dp": 2, "tp": 1}
    assert parallel_sizes(["--max-model-len", "4"]) == {}
    with pytest.raises(VllmLaunchError, match="positive whole number"):
        parallel_sizes(["-tp", "four"])
    with pytest.raises(VllmLaunchError, match="positive whole number"):
        parallel_sizes(["--tensor-parallel-size"])


def _up_cli(*flags: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quantlab", "up", *flags, "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
    )


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUDA_")}
    return {**env, **extra}


def test_dry_run_prints_each_servers_environment_and_argv() -> None:
    out = _up_cli(
        "--ref", "M", "--gpus", "0-3",
        "--cand", "fp8=M", "--quantization", "fp8", "--gpus", "4,5",
        "--gpu-memory-utilization", "0.9", "--cand", "plain=M",
        env=_env(CUDA_VISIBLE_DEVICES="0,1,2,3,4,5,6,7"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    ref, fp8, plain = out.stdout.splitlines()
    assert ref.startswith("CUDA_VISIBLE_DEVICES=0,1,2,3 vllm serve M ")
    assert ref.endswith("--tensor-parallel-size 4 --served-model-name ref")
    assert fp8.startswith("CUDA_VISIBLE_DEVICES=4,5 vllm serve M ")
    assert "--tensor-parallel-size 2" in fp8 and "--gpu-memory-utilization 0.90" in fp8
    assert plain.startswith("vllm serve M ") and "parallel" not in plain


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--ref", "a", "--gpus", "0,0", "--cand", "b"], "ref: --gpus 0,0: GPU 0 is listed twice"),
        (["--ref", "a", "--cand", "b", "--gpus", "x"], "cand1: --gpus x: 'x' is not a GPU"),
        (["--ref", "a", "--gpus", "0-3", "--vllm-arg", "-tp 8", "--cand", "b"], "uses 8"),
        (
            [
                "--ref",
                "a",
                "--gpus",
                "0-1",
                "--mem",
                "0.6",
                "--cand",
                "b",
                "--gpus",
                "1",
                "--mem",
                "0.6",
            ],
            "GPU 1: the servers' --gpu-memory-utilization fractions sum to 1.20 "
            "(ref 0.6 + cand1 0.6)",
        ),
        (["--ref", "a", "--cand", "b", "--gpus", "8"], "the GPUs here are 0-7"),
    ],
)
def test_bad_placements_are_one_clear_line_before_anything_starts(
    flags: list[str], words: str
) -> None:
    out = _up_cli(*flags, env=_env(CUDA_VISIBLE_DEVICES="0,1,2,3,4,5,6,7"))
    assert out.returncode == 2, out.stdout
    assert words in out.stderr and "Traceback" not in out.stderr
    assert out.stdout == ""


def test_the_supervised_servers_see_their_gpus(tmp_path: Path) -> None:
    """A real `quantlab up` (fake vLLM): each server's own process gets its
    CUDA_VISIBLE_DEVICES and tensor parallel size; the one without --gpus inherits."""
    port = _free_ports(3)
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "quantlab", "up", "--port", str(port),
            "--ref", "tp4=m", "--gpus", "0-3",
            "--cand", "tp2=q", "--gpus", "4,5", "--mem", "0.9",
            "--cand", "plain=r",
            "--vllm-bin", " ".join(FAKE), "--log-dir", str(tmp_path),
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(CUDA_VISIBLE_DEVICES="0,1,2,3,4,5,6,7"),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ready"), line + (proc.stderr.read() if proc.stderr else "")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    tp4, tp2, plain = ((tmp_path / f"{n}.log").read_text() for n in ("tp4", "tp2", "plain"))
    assert "CUDA_VISIBLE_DEVICES=0,1,2,3\n" in tp4 and "'--tensor-parallel-size', '4'" in tp4
    assert "CUDA_VISIBLE_DEVICES=4,5\n" in tp2 and "'--tensor-parallel-size', '2'" in tp2
    assert "CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7\n" in plain
    assert "--tensor-parallel-size" not in plain
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert "starting tp4: CUDA_VISIBLE_DEVICES=0,1,2,3 " in err
    assert "tp4 on GPU 0,1,2,3" in err and "tp2 on GPU 4,5" in err


def test_uuids_in_quantlabs_visible_devices_are_passed_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaa,GPU-bbb")
    _, cand = _specs("--ref", "m", "--cand", "q", "--gpus", "1")
    assert cand.env == {"CUDA_VISIBLE_DEVICES": "GPU-bbb"}
    assert endpoint_of(cand).gpus is None  # no index the Telemetry tab could match


@pytest.mark.parametrize("hidden", ["", "-1", "-1,0"])
def test_no_visible_gpu_refuses_any_list(monkeypatch: pytest.MonkeyPatch, hidden: str) -> None:
    """CUDA reads up to the first invalid entry: "-1" hides every GPU."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
    with pytest.raises(UpError, match="the GPUs here are none"):
        _specs("--ref", "m", "--cand", "q", "--gpus", "0")
