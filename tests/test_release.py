"""quantlab.release: big results are freed by a background thread, slice by slice."""

from __future__ import annotations

import threading
import weakref

from quantlab.agreement.live import LiveExchange
from quantlab.agreement.logprobs import LazyDists, TokenDist
from quantlab.release import discard, drained


class Item:
    """A weak-referenceable stand-in for a parsed position."""


def test_discard_frees_every_item_and_only_what_it_was_given() -> None:
    big = [Item() for _ in range(5000)]
    refs = [weakref.ref(x) for x in big[::500]]
    kept = [Item() for _ in range(10)]
    discard(big, [], None)
    drained()
    assert big == [] and all(r() is None for r in refs)
    assert len(kept) == 10


def test_frees_in_another_thread() -> None:
    freed_in: list[str] = []

    class Noted:
        def __del__(self) -> None:
            freed_in.append(threading.current_thread().name)

    items = [Noted() for _ in range(3)]
    discard(items)
    drained()
    assert freed_in == ["quantlab-discard"] * 3


def test_lazy_dists_and_live_exchange_let_their_positions_go() -> None:
    dist = TokenDist("a", "a", -0.1, {"a": -0.1})
    lazy = LazyDists([], parsed=[dist, dist])
    assert len(lazy) == 2
    lazy.free()
    live = LiveExchange(["ref", "cand"], reference="ref", k=1)
    live.feeds["ref"].dists.extend([dist] * 3)
    live.feeds["ref"].chunks.extend([b"{}"] * 3)
    live.free()
    drained()
    assert len(lazy) == 0 and not live.feeds["ref"].dists and not live.feeds["ref"].chunks
    assert live.update() == []  # frozen: nothing more is parsed
