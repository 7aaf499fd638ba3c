"""Fill each candidate lane's ``agreement`` once an exchange is complete.

Called by the fan-out (the one path every prompt takes), after all lanes are done. The
method per lane: teacher-forced when the reference and the candidate are both vLLM and
the reference answered (the whole answer is compared), otherwise shared-prefix from the
streamed ``top_logprobs``. A teacher-forced attempt that fails falls back to the shared
prefix and says why in the note. The raw per-chunk logprobs are dropped afterwards: the
session keeps the per-token results only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from quantlab.agreement import teacher
from quantlab.agreement.compare import Agreement, shared_prefix, teacher_forced
from quantlab.agreement.live import LiveExchange
from quantlab.agreement.logprobs import LazyDists, TokenDist
from quantlab.backends import for_endpoint
from quantlab.client import LaneClient
from quantlab.records import Exchange
from quantlab.release import discard


def reference_lane(clients: Sequence[LaneClient]) -> str | None:
    """The lane whose endpoint has role "reference", else the first lane."""
    for c in clients:
        if c.endpoint.role == "reference":
            return c.name
    return clients[0].name if clients else None


async def score_exchange(
    clients: Sequence[LaneClient],
    exchange: Exchange,
    *,
    reference: str | None = None,
    live: LiveExchange | None = None,
) -> None:
    """Set ``agreement`` on every candidate lane of ``exchange``. Never raises: a server's
    refusal goes in the lane's note, a failure of ours in ``meta["agreement_error"]``.
    ``live``: the tracker that watched the streams; the positions it parsed are not
    parsed again."""
    k = exchange.params.top_logprobs or 0
    ref_name = reference or reference_lane(clients)
    results = exchange.results
    try:
        if not k or ref_name not in results or len(results) < 2:
            return
        ref = results[ref_name]
        by_name = {c.name: c for c in clients}
        if live is not None:
            live.freeze()  # every stream has ended: the final scoring takes over from here

        def dists(lane: str, chunks: Any) -> tuple[LazyDists, bool]:
            """The lane's positions, and whether they start from the live tracker's."""
            got = live.dists(lane, chunks) if live is not None else None
            return (got, True) if got is not None else (LazyDists(chunks or []), False)

        ref_dists, ref_live = dists(ref_name, ref.logprobs)
        parsed = [ref_dists]  # freed in the background once every comparison is done
        tf = await _teacher_all(by_name, exchange, ref_name, k)
        for lane, r in results.items():
            if lane == ref_name:
                continue
            got = tf.get(lane)
            if isinstance(got, Agreement):
                r.agreement = got.to_dict()
                continue
            cand, cand_live = dists(lane, r.logprobs)
            parsed.append(cand)
            so_far = None  # the live comparison, when it ran on these very positions
            if live is not None and ref_live and cand_live:
                so_far = live.so_far(lane, reference=ref_name, k=k)
            # In a thread: parsing and comparing top-k lists costs ~60 us a position, 2-3 s
            # on the event loop for a 40,000-token answer (a TUI frozen that long). The
            # live tracker is frozen first, so nothing else touches these positions.
            ag = await asyncio.to_thread(
                shared_prefix, ref_dists, cand, reference=ref_name, k=k, so_far=so_far
            )
            notes = [n for n in (got, ag.note) if n]
            if not ref.ok or not r.ok:
                notes.append("a lane failed: compared up to where it stopped")
            ag.note = "; ".join(notes) or None
            r.agreement = ag.to_dict()
        # Not in `finally`: after a cancellation a comparison thread may still read them.
        for d in parsed:
            d.free()
        # The raw chunks too (a live tracker's are its owner's to free: LiveExchange.free)
        owned = {id(f.chunks) for f in live.feeds.values()} if live is not None else set()
        discard(
            *(
                r.logprobs.chunks
                for r in results.values()
                if r.logprobs is not None and id(r.logprobs.chunks) not in owned
            )
        )
    except Exception as exc:  # a bug here must not lose the answers themselves
        exchange.meta["agreement_error"] = repr(exc)
    finally:
        for r in results.values():
            r.logprobs = None


async def _teacher_all(
    by_name: dict[str, LaneClient], exchange: Exchange, ref_name: str, k: int
) -> dict[str, Agreement | str]:
    """Teacher-forced agreement for every candidate whose server scores prompts (vLLM);
    a string says why not."""
    ref_client = by_name.get(ref_name)
    ref = exchange.results[ref_name]

    def scores(client: LaneClient) -> bool:
        return for_endpoint(client.endpoint).scores_prompts

    lanes = [n for n in exchange.results if n != ref_name and n in by_name and scores(by_name[n])]
    if not lanes or ref_client is None or not scores(ref_client):
        return {}
    if not ref.ok or not ref.text:
        return dict.fromkeys(lanes, "teacher forcing needs the reference's complete answer")
    messages = exchange.messages.get(ref_name) or []
    out: dict[str, Agreement | str] = {}
    try:
        ids, start = await teacher.answer_ids(ref_client, messages, ref.text)
        answer_len = len(ids) - start
        scored_ids = ids[: start + teacher.MAX_POSITIONS]
        ref_scored: list[TokenDist] = await teacher.score(ref_client, scored_ids, start, k)
    except teacher.TeacherError as exc:
        return dict.fromkeys(lanes, f"teacher forcing failed on the reference: {exc}")

    async def one(lane: str) -> None:
        client = by_name[lane]
        try:
            cand_ids, cand_start = await teacher.answer_ids(client, messages, ref.text)
            if (cand_ids, cand_start) != (ids, start):
                out[lane] = "teacher forcing skipped: the servers tokenize differently"
                return
            scored = await teacher.score(client, scored_ids, start, k)
        except teacher.TeacherError as exc:
            out[lane] = f"teacher forcing failed: {exc}"
            return
        ag = await asyncio.to_thread(teacher_forced, ref_scored, scored, reference=ref_name, k=k)
        discard(scored)  # millions of objects for a long answer: freed off the event loop
        if answer_len > teacher.MAX_POSITIONS:
            ag.note = (
                f"teacher-forced over the first {teacher.MAX_POSITIONS:,} of {answer_len:,} tokens"
            )
        out[lane] = ag

    await asyncio.gather(*(one(n) for n in lanes))
    discard(ref_scored)
    return out
