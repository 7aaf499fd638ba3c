"""The one exchange pipeline: send to every lane, run the detectors, save.

The chat screen, ``quantlab ask`` and the suite runner all call :func:`send_exchange`, so
an exchange saved by any of them has the same shape: the same messages, the same
detector findings (divergence against the reference lane), the same id lane by lane and
whole. What differs between callers is passed in: what to show as text streams
(``on_text``), what to do when a lane ends (``on_lane_done``), whether each lane is saved
the moment it ends (``save_lanes``, the chat) or only the whole exchange (``ask``, the
runner), and how a write runs (``write``: the runner serialises its writes, the chat shows
a failed write instead of raising), and whether an exchange stopped mid-answer is kept
(``keep_stopped``: the chat keeps what a person stopped with Esc; a cancelled suite run
does not save half-answered cases).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from quantlab.agreement.live import LiveExchange
from quantlab.client import LaneClient, with_system_prompt
from quantlab.fanout import ExchangeStopped, OnLaneDone, OnText, fanout
from quantlab.records import Case, Exchange, LaneResult, SamplingParams


class ExchangeStore(Protocol):
    """What the pipeline needs of a session store (:class:`quantlab.session.SessionStore`)."""

    def append_exchange(self, exchange: Exchange) -> None: ...

    def save_lane(
        self, exchange: Exchange, lane: str, result: LaneResult | None = None
    ) -> None: ...


#: Runs one store write, ``await write(fn, *args)``; the default runs it in a thread.
Write = Callable[..., Awaitable[None]]


async def _in_thread(fn: Callable[..., Any], *args: Any) -> None:
    await asyncio.to_thread(fn, *args)


#: Answers longer than this (characters) are judged in a worker thread: the detectors take
#: ~0.1 s on a 200,000-character answer, a freeze of the TUI's loop if run on it (the
#: thread gives the loop a turn every few milliseconds); shorter ones stay on the loop.
LONG_ANSWER_CHARS = 20_000


async def _maybe_in_thread(size: int, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    if size > LONG_ANSWER_CHARS:
        return await asyncio.to_thread(fn, *args, **kw)
    return fn(*args, **kw)


def warm_up() -> None:
    """Import what the first judged answer needs (the detectors: numpy, rapidfuzz).

    They are imported late so that a TUI's first frame does not wait ~70 ms for them; an
    app calls this in a thread once it has painted, so the first answer does not wait
    either. Harmless to call twice (the import system caches).
    """
    import quantlab.detectors  # noqa: F401


async def send_exchange(
    clients: Sequence[LaneClient],
    messages: Mapping[str, list[dict[str, str]]],
    params: SamplingParams,
    *,
    prompt: str,
    source: str,
    reference: str | None,
    case: Case | None = None,
    suite: str | None = None,
    meta: Mapping[str, Any] | None = None,
    on_text: OnText | None = None,
    on_lane_done: OnLaneDone | None = None,
    extra_body: dict[str, Any] | None = None,
    store: ExchangeStore | None = None,
    save_lanes: bool = False,
    write: Write | None = None,
    keep_stopped: bool = False,
    on_streams_ended: Callable[[], None] | None = None,
    live: LiveExchange | None = None,
) -> Exchange:
    """Fan ``messages`` out to every lane, judge each answer, save the exchange.

    ``on_streams_ended`` runs once, as soon as every lane's stream has ended and before
    any of the judging and saving that follows: the runner frees the request's slot
    there, so "N in flight" means N requests at the servers, not N being judged or
    written (with the slot held to the end, 64 in flight averaged only 50 on vLLM).

    As each lane ends it gets a first verdict (divergence only once the reference lane's
    text is in), then ``on_lane_done`` runs, then (with ``save_lanes``) the lane is saved.
    When all lanes are done every lane is judged again with the reference's text and the
    whole exchange is saved to ``store``. A detector bug is kept in
    ``meta["detector_error"]`` and never loses the answers. ``reference`` is the reference
    lane's name (:func:`quantlab.lanes.reference_lane`); a reference that is not among the
    clients falls back to the first lane, as :func:`quantlab.detectors.detect_exchange`
    does. ``live``: see :func:`quantlab.fanout.fanout` (token agreement while streaming).

    Cancelled, it raises :class:`quantlab.fanout.ExchangeStopped` (a ``CancelledError``)
    whose exchange holds the finished lanes and the stopped ones' partial text; with
    ``keep_stopped`` that exchange is first judged (finished lanes only) and saved whole,
    so the session has the exchange the person saw.
    """
    run_write = write or _in_thread
    # The record saved lane by lane: fanout builds the same messages (system prompt first)
    # and its exchange takes this id and start time when it returns.
    draft = Exchange(
        prompt=prompt,
        params=params,
        messages={n: with_system_prompt(list(m), params) for n, m in messages.items()},
        source=source,
        suite=suite,
        case_id=case.id if case is not None else None,
        meta=dict(meta or {}),
    )
    names = [c.name for c in clients]
    ref = reference if reference in names else (names[0] if names else None)
    ref_text: dict[str, str] = {}
    first_prompt = (case.prompt if case else "") or prompt
    max_tokens = case.params.max_tokens if case and case.params else params.max_tokens

    ended: set[str] = set()

    async def lane_done(lane: str, result: LaneResult) -> None:
        ended.add(lane)
        if on_streams_ended is not None and len(ended) == len(names):
            on_streams_ended()
        if result.ok:
            from quantlab.detectors import detect  # late: see warm_up

            result.findings = await _maybe_in_thread(
                len(result.text),
                detect,
                result.text,
                case=case,
                reference=ref_text.get(ref) if ref is not None and lane != ref else None,
                finish_reason=result.finish_reason,
                lane=lane,
                prompt=first_prompt,
                max_tokens=max_tokens,
                cut_off=result.cut_off,
            )
            if lane == ref:
                ref_text[lane] = result.text
        if on_lane_done is not None:
            ret = on_lane_done(lane, result)
            if inspect.isawaitable(ret):
                await ret
        if store is not None and save_lanes:
            await run_write(store.save_lane, draft, lane, result)

    async def finish(exchange: Exchange) -> None:
        exchange.id, exchange.started_at = draft.id, draft.started_at
        exchange.suite, exchange.case_id = draft.suite, draft.case_id
        exchange.meta.update(draft.meta)
        from quantlab.detectors import detect_exchange  # late: see warm_up

        try:  # stopped lanes are not judged (not ok); finished ones are
            longest = max((len(r.text) for r in exchange.results.values()), default=0)
            await _maybe_in_thread(
                longest, detect_exchange, exchange, case=case, reference_lane=ref
            )
        except Exception as exc:  # a detector bug must not lose the answers themselves
            exchange.meta["detector_error"] = repr(exc)
        if store is not None:
            await run_write(store.append_exchange, exchange)

    try:
        exchange = await fanout(
            clients,
            messages,
            params,
            prompt=prompt,
            on_text=on_text,
            source=source,
            on_lane_done=lane_done,
            extra_body=extra_body,
            live=live,
        )
    except ExchangeStopped as stopped:
        if keep_stopped:
            # The cancellation was delivered; this one write still runs (a second cancel
            # would interrupt the wait, not the write already in its thread).
            await finish(stopped.exchange)
        raise
    await finish(exchange)
    return exchange
