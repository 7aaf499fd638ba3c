"""Free large results off the event loop, a slice at a time.

A 40,000-token answer scored at top-20 leaves millions of small objects behind (a
:class:`~quantlab.agreement.logprobs.TokenDist` per position, each with its top-k dict).
When the last reference to such a list goes, CPython frees all of it in one C call that
holds the GIL throughout: 90 ms on the event loop (benchmarks/ui_lag.py, the end of an
exchange), or the same stall from a worker thread, since no other thread runs meanwhile.
:func:`discard` hands the lists to one background thread that empties them from the end
in slices, so the GIL can change hands between slices and the screen keeps drawing.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

#: Items freed per slice: a few hundred positions, ~1 ms of freeing.
SLICE = 256

_bin: queue.Queue[list[Any]] = queue.Queue()
_started = threading.Lock()
_thread: threading.Thread | None = None


def discard(*lists: list[Any] | None) -> None:
    """Empty ``lists`` (in place) in the background. The caller must drop its other
    references to their items; the lists themselves may be kept (they end up empty)."""
    global _thread
    for items in lists:
        if items:
            _bin.put(items)
    with _started:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_empty_forever, name="quantlab-discard", daemon=True)
            _thread.start()


def _empty_forever() -> None:
    while True:
        items = _bin.get()
        while items:
            del items[-SLICE:]
        del items
        _bin.task_done()


def drained() -> None:
    """Wait until everything handed to :func:`discard` is freed (tests, benchmarks)."""
    _bin.join()
