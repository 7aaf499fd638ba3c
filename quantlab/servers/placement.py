"""Which GPUs each server ``quantlab up`` starts runs on, and whether their memory fits.

Indexes count the GPUs quantlab itself sees. With ``CUDA_VISIBLE_DEVICES`` unset they are
the machine's GPUs as NVML and nvidia-smi number them (the server also gets
``CUDA_DEVICE_ORDER=PCI_BUS_ID``, so CUDA numbers them the same way; CUDA's default order
is fastest first). With it set they are positions in that list: ``--gpus 0,1`` under
``CUDA_VISIBLE_DEVICES=4,5,6,7`` gives the server ``CUDA_VISIBLE_DEVICES=4,5``, as inside
a scheduler's allocation. A server without ``--gpus`` inherits quantlab's environment and
is counted on the first visible GPU (the first ``tp × pp × dp`` if its vLLM flags ask
for more), which is where vLLM puts it.

vLLM takes ``--gpu-memory-utilization`` of every GPU its workers use, so the fractions
must fit per GPU: servers on disjoint lists may each take 0.9; two sharing GPU 3 must
stay below 0.95 together there.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from quantlab.backends.vllm import VllmLaunchError, check_fractions, default_fractions
from quantlab.telemetry import nvml as nv

#: What a sensible machine can hold; a typo like ``0-99999`` is refused, not expanded.
MAX_GPU_INDEX = 1023
_ITEM = re.compile(r"(\d+)(?:-(\d+))?")
#: Fractions of a GPU that servers without ``--mem`` share (the rest: CUDA contexts…).
DEFAULT_SHARE = 0.85


class PlacementError(ValueError):
    """A GPU list or a memory split that cannot work; the message says which server."""


def parse_gpus(text: str) -> list[int]:
    """``0,1,2,3``, ``0-3``, ``0-1,4,6-7`` → the indexes, in the order given; refuses an
    empty list, a bad item, a backwards range and an index listed twice."""
    if not text.strip():
        raise PlacementError("--gpus needs a list such as 0,1 or 0-3")
    out: list[int] = []
    for raw in text.split(","):
        m = _ITEM.fullmatch(raw.strip())
        if m is None:
            raise PlacementError(
                f"--gpus {text}: {raw.strip()!r} is not a GPU index or a range such as 0-3"
            )
        lo = int(m[1])
        hi = int(m[2]) if m[2] is not None else lo
        if hi < lo:
            raise PlacementError(f"--gpus {text}: the range {lo}-{hi} runs backwards")
        if hi > MAX_GPU_INDEX:
            raise PlacementError(f"--gpus {text}: {hi} is not a GPU index")
        out.extend(range(lo, hi + 1))
    twice = sorted({i for i in out if out.count(i) > 1})
    if twice:
        listed = ", ".join(map(str, twice))
        raise PlacementError(
            f"--gpus {text}: GPU {listed} is listed twice (one server, one GPU each)"
        )
    return out


def nvml_gpu_count() -> int | None:
    """How many GPUs NVML sees, or None when it cannot say (no library, no driver)."""
    m = nv.nvml()
    if m is None:
        return None
    try:
        m.nvmlInit()
    except Exception:
        return None
    try:
        return int(m.nvmlDeviceGetCount())
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            m.nvmlShutdown()


@dataclass(frozen=True, slots=True)
class Visible:
    """The GPUs ``--gpus`` may name: quantlab's ``CUDA_VISIBLE_DEVICES`` entries (None:
    unset), how many (None: unknown), and where that came from, for messages."""

    entries: list[str] | None
    count: int | None
    source: str

    @classmethod
    def here(cls, environ: Mapping[str, str]) -> Visible:
        raw = environ.get("CUDA_VISIBLE_DEVICES")
        if raw is None:
            count = nvml_gpu_count()
            return cls(None, count, f"NVML sees {count}")
        entries: list[str] = []
        for entry in (e.strip() for e in raw.split(",")):
            if not entry or entry.startswith("-"):
                break  # CUDA stops at the first invalid entry ("-1" hides every GPU)
            entries.append(entry)
        return cls(
            entries, len(entries), f"CUDA_VISIBLE_DEVICES={raw} shows quantlab {len(entries)}"
        )

    def check(self, text: str, gpus: Sequence[int]) -> None:
        """Refuse indexes past the GPUs there are (nothing to check when unknown)."""
        if self.count is None:
            return
        missing = [i for i in gpus if i >= self.count]
        if not missing:
            return
        there = f"0-{self.count - 1}" if self.count > 1 else "0" if self.count else "none"
        raise PlacementError(
            f"--gpus {text} names GPU {', '.join(map(str, missing))}, but the GPUs "
            f"here are {there} ({self.source})"
        )

    def env_for(self, gpus: Sequence[int], environ: Mapping[str, str]) -> dict[str, str]:
        """What to add to a server's environment to put it on ``gpus``."""
        if self.entries is None:
            env = {"CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus))}
            if "CUDA_DEVICE_ORDER" not in environ:
                env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # the numbering nvidia-smi shows
            return env
        return {"CUDA_VISIBLE_DEVICES": ",".join(self.entries[i] for i in gpus)}


def nvml_indexes(env: Mapping[str, str]) -> list[int] | None:
    """The GPU indexes a server's ``CUDA_VISIBLE_DEVICES`` names, when they are numbers
    (UUIDs and MIG names: None), for the Telemetry tab."""
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return None
    parts = raw.split(",")
    return [int(p) for p in parts] if all(p.isdigit() for p in parts) else None


def _share_one_gpu(index: int, names: list[str], given: list[float | None]) -> list[float]:
    """Fractions for the servers on one GPU: the given ones, and what the others leave of
    0.85 in equal parts (all unset: 0.45/0.40 for two, equal shares for more)."""
    if all(f is None for f in given):
        return default_fractions(len(given))
    missing = [n for n, f in zip(names, given, strict=True) if f is None]
    left = DEFAULT_SHARE - sum(f for f in given if f is not None)
    share = int(left / max(len(missing), 1) * 100 + 1e-6) / 100
    if missing and share <= 0:
        raise PlacementError(
            f"GPU {index}: no memory left for {', '.join(missing)} (no --mem): give each one"
        )
    return [share if f is None else f for f in given]


def _on_each_gpu(placed: Sequence[Sequence[int]]) -> dict[int, list[int]]:
    """GPU index → the servers (positions) placed on it."""
    on: dict[int, list[int]] = {}
    for k, gpus in enumerate(placed):
        for g in gpus:
            on.setdefault(g, []).append(k)
    return dict(sorted(on.items()))


def check_per_gpu(
    names: Sequence[str], fractions: Sequence[float], placed: Sequence[Sequence[int]]
) -> None:
    """Refuse fractions that do not fit on some GPU; the message names it and its servers."""
    for name, f in zip(names, fractions, strict=True):
        if not 0 < f <= 1:
            raise PlacementError(
                f"{name}: --gpu-memory-utilization {f:g} is not a fraction in (0, 1]"
            )
    for g, ks in _on_each_gpu(placed).items():
        try:
            check_fractions([fractions[k] for k in ks], [names[k] for k in ks])
        except VllmLaunchError as exc:
            raise PlacementError(
                f"GPU {g}: {exc}; or put them on different GPUs (--gpus)"
            ) from None


def fill_fractions(
    names: Sequence[str], given: Sequence[float | None], placed: Sequence[Sequence[int]]
) -> list[float]:
    """Every server's fraction: the given ones (checked first, per GPU), and for the rest
    the smallest share any of its GPUs leaves it."""
    known = [k for k, f in enumerate(given) if f is not None]
    check_per_gpu(
        [names[k] for k in known],
        [given[k] or 0.0 for k in known],
        [placed[k] for k in known],
    )
    out: list[float | None] = list(given)
    for g, ks in _on_each_gpu(placed).items():
        shares = _share_one_gpu(g, [names[k] for k in ks], [given[k] for k in ks])
        for k, share in zip(ks, shares, strict=True):
            if given[k] is None:
                current = out[k]
                out[k] = share if current is None else min(current, share)
    filled = [f if f is not None else DEFAULT_SHARE for f in out]
    check_per_gpu(names, filled, placed)
    return filled
