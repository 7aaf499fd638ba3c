"""The NVML boundary: every NVML call goes through one module object that tests replace
with a fake (same function names and error classes), and each failure becomes a short
reason a person can read instead of a traceback.

Why one boundary: NVML can be missing (no driver, no library, a laptop without an NVIDIA
GPU), a metric can be Not Supported on one card and fine on the next, and a GPU can fall
off the bus mid-run. All of these are facts to show per metric, never crashes.
"""

from __future__ import annotations

import threading
from types import ModuleType
from typing import Any

_module: Any = None
_lock = threading.Lock()


def set_nvml(module: Any) -> None:
    """Use ``module`` (e.g. a fake for tests) instead of ``pynvml`` from now on."""
    global _module
    with _lock:
        _module = module


def nvml() -> Any:
    """The NVML module in use (``pynvml`` from nvidia-ml-py unless replaced), or None."""
    global _module
    with _lock:
        if _module is None:
            try:
                import pynvml
            except ImportError:
                return None
            _module = pynvml
        return _module


def reason(exc: BaseException, module: ModuleType | Any = None) -> str:
    """A short human reason for an NVML error, by error class name (works for the real
    library and for fakes that name their classes the same way)."""
    name = type(exc).__name__
    table = {
        "NVMLError_NotSupported": "n/a (not supported on this GPU)",
        "NVMLError_GpuIsLost": "GPU lost (fell off the bus)",
        "NVMLError_LibraryNotFound": "NVML library not found (no NVIDIA driver installed?)",
        "NVMLError_DriverNotLoaded": "no NVIDIA driver loaded",
        "NVMLError_NoPermission": "no permission",
        "NVMLError_Uninitialized": "NVML not initialized",
        "NVMLError_Unknown": "unknown NVML error",
        "NVMLError_NotFound": "not found",
        "NVMLError_FunctionNotFound": "not in this driver's NVML",
        "NVMLError_Timeout": "timed out",
    }
    if name in table:
        return table[name]
    text = str(exc).strip()
    return text or name


def is_lost(exc: BaseException) -> bool:
    """A GPU that fell off the bus (or went away): stop asking it anything."""
    return type(exc).__name__ in ("NVMLError_GpuIsLost", "NVMLError_GpuNotFound")


def is_not_supported(exc: BaseException) -> bool:
    return type(exc).__name__ in ("NVMLError_NotSupported", "NVMLError_FunctionNotFound")


def text(value: object) -> str:
    """NVML strings are bytes in old bindings, str in new ones."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
