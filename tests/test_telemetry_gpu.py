"""On a real NVIDIA GPU (skipped without one): sample while a torch matmul loop loads the
GPU; utilization rises and the loop's memory is attributed to its pid and lane."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from quantlab.records import Endpoint
from quantlab.telemetry.processes import ProcessMapper
from quantlab.telemetry.sampler import GpuSampler

pytestmark = pytest.mark.gpu

LOAD = """
import torch, time, sys
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
print("ready", flush=True)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    c = a @ b
torch.cuda.synchronize()
"""


def _gpu_sampler() -> GpuSampler:
    s = GpuSampler(hz=10)
    if s.snapshot().unavailable:
        pytest.skip(s.snapshot().unavailable or "no GPU")
    try:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("torch sees no CUDA device")
    except ImportError:
        pytest.skip("torch is not installed")
    return s


def test_utilization_rises_and_memory_is_attributed() -> None:
    sampler = _gpu_sampler()
    for _ in range(5):
        sampler.sample_once()
        time.sleep(0.1)
    idle = sampler.snapshot().gpus[0].latest["util_pct"]
    proc = subprocess.Popen([sys.executable, "-c", LOAD, "12"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        mapper = ProcessMapper([Endpoint("load", "http://127.0.0.1:1", pid=proc.pid)])
        busy: list[float] = []
        sm_active: list[float] = []
        seen_mib = None
        for _ in range(40):
            sampler.sample_once()
            sampler.slow_once()  # GPM (Hopper+) once a second
            g = sampler.snapshot().gpus[0]
            if g.latest["util_pct"] is not None:
                busy.append(g.latest["util_pct"])
            if "sm_active" in g.gpm:
                sm_active.append(g.gpm["sm_active"])
            for p in g.processes:
                if p.pid == proc.pid:
                    seen_mib = p.gpu_mem_mib
                    assert mapper.lane_of(p.pid) == "load"
            time.sleep(0.1)
        print(f"idle util {idle} %, under load max {max(busy)} %, process {seen_mib} MiB")
        print(f"power {g.latest['power_w']} W, SM {g.latest['sm_mhz']} MHz, {g.throttle}")
        print(f"GPM: {'SM active ' + str(sm_active) if sm_active else 'not available'} {g.gpm}")
        print(f"warnings: {g.warnings}, errors: {g.errors}")
        assert max(busy) >= 80, busy
        assert seen_mib is not None and seen_mib > 256
        if sm_active:  # where the card has GPM, a matmul loop keeps most SMs busy
            assert max(sm_active) >= 50, sm_active
    finally:
        proc.kill()
        proc.wait()
        sampler.stop()
