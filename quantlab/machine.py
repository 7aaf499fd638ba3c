"""Facts about the machine a session ran on, recorded once per session.

A latency or capacity figure means little without the hardware next to it: the report
prints these facts beside the numbers. Cheap to gather (no sampling), never raises: a
missing GPU or NVML library is itself a fact ("no NVIDIA GPU: <reason>").
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import sys
from typing import Any

import psutil

import quantlab


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def gpu_facts() -> tuple[list[dict[str, Any]], str | None]:
    """Static facts per GPU through NVML, or ([], why not)."""
    try:
        import pynvml
    except ImportError as exc:  # nvidia-ml-py is a dependency, but be honest if absent
        return [], f"nvidia-ml-py not importable ({exc})"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return [], f"NVML unavailable: {exc}"
    try:
        gpus: list[dict[str, Any]] = []
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            fact: dict[str, Any] = {"index": i, "name": _text(pynvml.nvmlDeviceGetName(h))}
            try:
                fact["memory_total_mib"] = pynvml.nvmlDeviceGetMemoryInfo(h).total // 2**20
            except pynvml.NVMLError as exc:
                fact["memory_total_mib"] = None
                fact["memory_error"] = str(exc)
            try:
                fact["power_limit_w"] = pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000
            except pynvml.NVMLError:
                fact["power_limit_w"] = None
            fact["driver"] = driver
            gpus.append(fact)
        return gpus, None if gpus else "NVML sees no GPU"
    except pynvml.NVMLError as exc:
        return [], f"NVML error: {exc}"
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


def machine_facts() -> dict[str, Any]:
    """Host, OS, CPU, RAM, Python, quantlab version and GPUs, as a JSON-ready dict."""
    gpus, gpu_note = gpu_facts()
    return {
        "host": socket.gethostname(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": sys.version.split()[0],
        "quantlab": quantlab.__version__,
        "gpus": gpus,
        "gpu_note": gpu_note,
    }
