"""Shared-prefix agreement while the lanes still stream, updated in O(new positions).

The client appends each chunk's raw logprobs to a list the caller hands it
(``LaneClient.chat(logprobs_into=…)``): no work per chunk beyond what it already does.
Whoever shows the numbers calls :meth:`LiveExchange.update` on its own clock (the chat
screen: its 30 Hz flush tick): that parses only the chunks added since the last call and
extends each candidate's comparison with :func:`~quantlab.agreement.compare.extend_shared`,
the rule the final comparison uses, so at the end the live result *is* the shared-prefix
one. Parsing stops where it cannot matter: a candidate that diverged is not parsed
further, nor is the reference once no candidate is still comparing. The final scoring
(exchange.py) continues from the positions parsed and compared here instead of doing
them again, so the live row costs the client next to nothing in all
(benchmarks/live_agreement_cost.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from itertools import islice
from typing import Any

from quantlab.agreement.compare import SHARED_PREFIX, Agreement, extend_shared
from quantlab.agreement.logprobs import LazyDists, TokenDist, chunk_dists
from quantlab.release import discard


class LiveAgreement:
    """One candidate against the reference, extended as both lanes' positions come.
    Running sums keep the line O(1); ``agreement`` holds every compared position."""

    __slots__ = ("agreement", "kl_sum", "top1_count")

    def __init__(self, *, reference: str, k: int) -> None:
        self.agreement = Agreement(SHARED_PREFIX, reference, k)
        self.kl_sum = 0.0
        self.top1_count = 0

    @property
    def positions(self) -> int:
        return len(self.agreement.kl)

    @property
    def open(self) -> bool:
        """Still comparing: no divergence yet."""
        return self.agreement.diverged_at is None

    def extend(self, ref: Sequence[TokenDist], cand: Sequence[TokenDist]) -> int:
        """Compare the positions both lanes have that are not compared yet (``ref`` and
        ``cand``: each lane's positions so far, from the start). Returns how many."""
        ag = self.agreement
        start = len(ag.kl)
        end = min(len(ref), len(cand))
        if end <= start or ag.diverged_at is not None:
            return 0
        # Slices, not islice: islice walks from index 0, which made every tick cost the
        # whole answer so far (benchmarks/ui_lag.py: lag growing with the answer's length).
        added = extend_shared(ag, zip(ref[start:end], cand[start:end], strict=True))
        for x in ag.kl[start:]:  # one at a time: the same sum as sum(ag.kl), to the bit
            self.kl_sum += x
        self.top1_count += sum(ag.top1[start:])
        return added

    @property
    def mean_kl(self) -> float | None:
        return self.kl_sum / self.positions if self.positions else None

    @property
    def top1_rate(self) -> float | None:
        return self.top1_count / self.positions if self.positions else None

    def line(self) -> str | None:
        """``live KL 0.012 · top-1 99 % · 143 tok so far`` (or ``… · diverged at token
        41``); None before the first compared position."""
        n = self.positions
        if not n:
            return None
        head = f"live KL {self.kl_sum / n:.3f} · top-1 {100 * self.top1_count / n:.0f} %"
        at = self.agreement.diverged_at
        return f"{head} · {n} tok so far" if at is None else f"{head} · diverged at token {at}"


class LaneFeed:
    """One lane's raw per-chunk logprobs (``chunks``, filled by the client) and the
    positions parsed from them so far."""

    __slots__ = ("broken", "chunks", "dists", "parsed")

    def __init__(self) -> None:
        self.chunks: list[Any] = []
        self.dists: list[TokenDist] = []
        self.parsed = 0  # chunks parsed
        self.broken = False  # a raw chunk was not JSON: nothing after it is aligned

    def parse_new(self, limit: int | None = None) -> int:
        """Parse the chunks added since the last call (at most ``limit`` of them); returns
        the new positions."""
        before = len(self.dists)
        chunks = self.chunks
        end = len(chunks) if limit is None else min(len(chunks), self.parsed + limit)
        while not self.broken and self.parsed < end:
            got = chunk_dists(chunks[self.parsed])
            self.parsed += 1
            if got is None:
                self.broken = True
            else:
                self.dists.extend(got)
        return len(self.dists) - before

    def lazy(self) -> LazyDists:
        """Every position of the lane, starting from those parsed here."""
        rest = () if self.broken else islice(self.chunks, self.parsed, None)
        return LazyDists(rest, parsed=self.dists)


class LiveExchange:
    """The live agreement of every candidate lane of one exchange with ``reference``.

    Hand ``feeds[lane].chunks`` to the lane's client (fanout does, given this object);
    call :meth:`update` from one clock; read :meth:`line`. Single-threaded: the client and
    the caller share one event loop."""

    def __init__(self, lanes: Sequence[str], *, reference: str, k: int) -> None:
        self.reference = reference
        self.frozen = False
        self.feeds = {n: LaneFeed() for n in lanes}
        self.trackers = {
            n: LiveAgreement(reference=reference, k=k) for n in lanes if n != reference
        }

    def freeze(self) -> None:
        """No more updates: the streams have ended and the final scoring (which may run in
        a thread, reusing these positions) owns them now."""
        self.frozen = True

    def update(self, limit: int | None = None) -> list[str]:
        """Parse what came since the last call and extend the comparisons; the candidate
        lanes whose numbers changed. ``limit``: chunks parsed per lane at most, so one call
        costs a bounded time on a UI's loop; a fast stream then runs ahead of the live
        numbers (they say how many tokens they cover) and the final scoring does the rest."""
        if self.frozen:
            return []
        ref = self.feeds.get(self.reference)
        if ref is None:
            return []
        open_ = [n for n, t in self.trackers.items() if t.open]
        if not open_:
            return []
        ref.parse_new(limit)
        changed = []
        for lane in open_:
            feed = self.feeds[lane]
            feed.parse_new(limit)
            if self.trackers[lane].extend(ref.dists, feed.dists):
                changed.append(lane)
        return changed

    def free(self) -> None:
        """The exchange and its scoring are over: let the parsed positions go in the
        background (quantlab.release). Not while a scoring thread may still read them."""
        self.frozen = True
        for feed in self.feeds.values():
            discard(feed.dists, feed.chunks)  # the raw chunks: ~40 ms for 120,000 of them

    def line(self, lane: str) -> str | None:
        tracker = self.trackers.get(lane)
        return None if tracker is None else tracker.line()

    def so_far(self, lane: str, *, reference: str, k: int) -> Agreement | None:
        """A copy of the lane's comparison so far, for the final scoring to continue
        (``shared_prefix(…, so_far=…)``) when it compares with the same reference and k
        over this tracker's positions (see :meth:`dists`); else None."""
        t = self.trackers.get(lane)
        if t is None or reference != self.reference or t.agreement.k != k:
            return None
        return replace(t.agreement, kl=list(t.agreement.kl), top1=list(t.agreement.top1),
                       ref_rank=list(t.agreement.ref_rank))  # fmt: skip

    def dists(self, lane: str, chunks: Any) -> LazyDists | None:
        """The lane's positions for the final scoring, reusing what was parsed here, when
        ``chunks`` (its result's logprobs) are the ones this feed saw; else None."""
        feed = self.feeds.get(lane)
        if feed is None or getattr(chunks, "chunks", None) is not feed.chunks:
            return None
        return feed.lazy()
