"""The real command's garbage-collector policy (tui.app._freeze_gc): everything alive at
start-up is frozen, the collector is on again, and full collections are rare (each one
scans what the answers built and stalls the screen for tens of milliseconds)."""

from __future__ import annotations

import gc

from tui.app import FULL_COLLECTION_EVERY, _freeze_gc


def test_after_start_up_the_collector_is_on_with_rare_full_collections() -> None:
    old, was_on = gc.get_threshold(), gc.isenabled()
    gc.disable()  # as quantlab.cli starts the TUI
    try:
        _freeze_gc()
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0
        young, middle, full = gc.get_threshold()
        assert (young, middle) == old[:2]  # cycles still die young
        assert full == FULL_COLLECTION_EVERY >= 100
    finally:
        gc.unfreeze()
        gc.set_threshold(*old)
        if not was_on:
            gc.disable()
