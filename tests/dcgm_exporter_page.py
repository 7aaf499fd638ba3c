"""A dcgm-exporter ``/metrics`` page as the exporter writes it with its default counters
(etc/default-counters.csv of NVIDIA/dcgm-exporter: clocks, temperatures, power and energy,
PCIe, utilizations, XID errors, framebuffer, NVLink, vGPU licence, remapped rows), each GPU's
series labelled ``gpu``, ``UUID``, ``pci_bus_id``, ``device``, ``modelName``, ``Hostname``
and ``DCGM_FI_DRIVER_VERSION``, and a loopback server that serves it.

Like the real exporter: a field a card has no value for is DCGM's blank marker (memory
temperature on many cards: 9223372036854775794, DCGM_INT64_NOT_SUPPORTED), integers are
printed as integers, and HELP/TYPE come before each field's samples.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: (field, type, help) in default-counters.csv order.
DEFAULT_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz)."),
    ("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz)."),
    ("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C)."),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
    (
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "counter",
        "Total energy consumption since boot (in mJ).",
    ),
    ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries."),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %)."),
    ("DCGM_FI_DEV_ENC_UTIL", "gauge", "Encoder utilization (in %)."),
    ("DCGM_FI_DEV_DEC_UTIL", "gauge", "Decoder utilization (in %)."),
    ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered."),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB)."),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."),
    (
        "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
        "counter",
        "Total number of NVLink bandwidth counters for all lanes",
    ),
    ("DCGM_FI_DEV_VGPU_LICENSE_STATUS", "gauge", "vGPU License status"),
    (
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
        "counter",
        "Number of remapped rows for uncorrectable errors",
    ),
    (
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
        "counter",
        "Number of remapped rows for correctable errors",
    ),
    ("DCGM_FI_DEV_ROW_REMAP_FAILURE", "gauge", "Whether remapping of rows has failed"),
)
NOT_SUPPORTED = 9223372036854775794  # DCGM_INT64_BLANK + 2


@dataclass
class ExporterGpu:
    util: int = 87
    fb_used: int = 61_440
    fb_free: int = 19_603
    power_w: float = 612.345
    temp: int = 63
    mem_temp: int | None = None  # None: DCGM's "not supported" marker, as on many cards
    sm_mhz: int = 1980
    mem_mhz: int = 2619


@dataclass
class ExporterPage:
    hostname: str = "gpu-node-7"
    model: str = "NVIDIA H100 80GB HBM3"
    driver: str = "550.54.15"
    gpus: list[ExporterGpu] = field(default_factory=lambda: [ExporterGpu() for _ in range(4)])
    #: Fields left off the page (a custom counters file without them).
    without: set[str] = field(default_factory=set)

    def _labels(self, i: int) -> str:
        uuid = f"GPU-{i:08x}-5d1f-9c2e-{i * 7 + 3:04x}-4b7a0c9e{i:04x}"
        return (
            f'gpu="{i}",UUID="{uuid}",pci_bus_id="00000000:{0x18 + i * 0x10:02X}:00.0",'
            f'device="nvidia{i}",modelName="{self.model}",Hostname="{self.hostname}",'
            f'DCGM_FI_DRIVER_VERSION="{self.driver}"'
        )

    def _value(self, name: str, i: int, g: ExporterGpu) -> str:
        values: dict[str, object] = {
            "DCGM_FI_DEV_SM_CLOCK": g.sm_mhz,
            "DCGM_FI_DEV_MEM_CLOCK": g.mem_mhz,
            "DCGM_FI_DEV_MEMORY_TEMP": NOT_SUPPORTED if g.mem_temp is None else g.mem_temp,
            "DCGM_FI_DEV_GPU_TEMP": g.temp,
            "DCGM_FI_DEV_POWER_USAGE": f"{g.power_w:.6f}",
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": 81_234_567_890 + i * 1_000_000,
            "DCGM_FI_DEV_GPU_UTIL": g.util,
            "DCGM_FI_DEV_MEM_COPY_UTIL": max(0, g.util - 40),
            "DCGM_FI_DEV_FB_FREE": g.fb_free,
            "DCGM_FI_DEV_FB_USED": g.fb_used,
        }
        return str(values.get(name, 0))

    def text(self) -> str:
        out = []
        for name, kind, help_text in DEFAULT_COUNTERS:
            if name in self.without:
                continue
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            for i, g in enumerate(self.gpus):
                out.append(f"{name}{{{self._labels(i)}}} {self._value(name, i, g)}")
        return "\n".join(out) + "\n"


class _Handler(BaseHTTPRequestHandler):
    page: ExporterPage

    def do_GET(self) -> None:
        if self.path != "/metrics":
            self.send_error(404)
            return
        body = self.server.page.text().encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serve_exporter(page: ExporterPage) -> Iterator[tuple[str, ThreadingHTTPServer]]:
    """(metrics URL, server) on a free loopback port; ``server.page`` can be changed live."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.page = page  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/metrics", httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
