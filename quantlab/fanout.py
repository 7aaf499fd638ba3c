"""Send one prompt to every lane at once, and keep each lane's own conversation.

This is the single code path for prompts: the chat screen, ``quantlab ask`` and the suite
runner all call :func:`fanout`, so a number measured in one means the same in the others.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from quantlab.agreement.exchange import score_exchange
from quantlab.agreement.live import LiveExchange
from quantlab.client import STOPPED_MESSAGE, LaneClient, LaneStopped, with_system_prompt
from quantlab.records import Exchange, LaneError, LaneResult, SamplingParams

#: Called with (lane name, text delta) as each lane's text arrives.
OnText = Callable[[str, str], None]
#: Called with (lane name, result) as soon as that lane is finished; may be async.
OnLaneDone = Callable[[str, LaneResult], Awaitable[None] | None]


class ExchangeStopped(asyncio.CancelledError):
    """:func:`fanout` was cancelled; ``exchange`` holds every lane as far as it came: the
    lanes that had finished as they are, the others with their partial text and
    ``error.kind == "cancelled"`` (:attr:`LaneResult.stopped`), and ``meta["stopped"]``
    True. A ``CancelledError``: it cancels the caller's task as a plain one does."""

    def __init__(self, exchange: Exchange) -> None:
        stopped = [n for n, r in exchange.results.items() if r.stopped]
        super().__init__(f"exchange stopped; lanes not finished: {', '.join(stopped) or '-'}")
        self.exchange = exchange


async def fanout(
    clients: Sequence[LaneClient],
    messages: Mapping[str, list[dict[str, str]]],
    params: SamplingParams,
    *,
    prompt: str,
    on_text: OnText | None = None,
    source: str = "chat",
    on_lane_done: OnLaneDone | None = None,
    extra_body: dict[str, Any] | None = None,
    live: LiveExchange | None = None,
) -> Exchange:
    """Stream ``messages[lane]`` to every lane concurrently; return the whole exchange.

    All requests are started together (one task per lane) so the lanes race fairly and
    the wall time is the slowest lane's, not the sum. A lane that fails gets a
    :class:`LaneError` on its result and never stops the others. ``on_lane_done`` lets
    the caller save each lane the moment it completes; if it raises, the error is kept
    in ``exchange.meta["on_lane_done_errors"]`` and the other lanes go on. ``extra_body``
    adds fields to every lane's request (e.g. ``{"logprobs": True}``). ``live``: each lane's
    raw logprobs go into its feed as they come, for a caller that shows agreement while
    the lanes stream (its parsing is reused by the final scoring).
    Cancelling the call cancels every lane (their responses are closed) and raises
    :class:`ExchangeStopped`, which carries the exchange as far as it came.
    """
    names = [c.name for c in clients]
    if len(set(names)) != len(names):
        raise ValueError(f"lane names must be unique: {names}")
    missing = [n for n in names if n not in messages]
    if missing:
        raise ValueError(f"no messages for lane(s): {', '.join(missing)}")
    exchange = Exchange(
        prompt=prompt,
        params=params,
        messages={n: with_system_prompt(messages[n], params) for n in names},
        source=source,
    )
    done: dict[str, LaneResult] = {}
    stopped: dict[str, LaneResult] = {}
    callback_errors: list[str] = []

    async def run_lane(client: LaneClient) -> None:
        lane = client.name
        cb: Callable[[str], None] | None = None
        if on_text is not None:

            def cb(delta: str, _lane: str = lane) -> None:
                on_text(_lane, delta)

        feed = live.feeds.get(lane) if live is not None else None
        try:
            result = await client.chat(
                exchange.messages[lane],
                params,
                on_text=cb,
                extra_body=extra_body,
                logprobs_into=None if feed is None else feed.chunks,
            )
        except LaneStopped as exc:
            stopped[lane] = exc.result
            raise
        except Exception as exc:  # a bug (ours or a callback's) must not sink other lanes
            result = LaneResult(lane=lane, model=client.endpoint.model)
            result.error = LaneError("protocol", f"client failure: {exc!r}")
        done[lane] = result
        if on_lane_done is not None:
            try:
                ret = on_lane_done(lane, result)
                if inspect.isawaitable(ret):
                    await ret
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                callback_errors.append(f"{lane}: {exc!r}")

    t0 = time.perf_counter_ns()
    tasks = [asyncio.create_task(run_lane(c), name=f"lane:{c.name}") for c in clients]
    cancelled = False
    try:
        await asyncio.gather(*tasks)
    except asyncio.CancelledError:
        cancelled = True
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
        if any(not t.done() for t in tasks):
            await asyncio.gather(*tasks, return_exceptions=True)
    exchange.wall_ms = round((time.perf_counter_ns() - t0) / 1e6, 3)
    if cancelled:
        # A lane that ended keeps its result; one cut short keeps its text so far; one
        # cancelled before its request went out has an empty stopped result.
        for n, c in zip(names, clients, strict=True):
            exchange.results[n] = done.get(n) or stopped.get(n) or _not_started(n, c)
        exchange.meta["stopped"] = True
        if callback_errors:
            exchange.meta["on_lane_done_errors"] = callback_errors
        raise ExchangeStopped(exchange) from None
    exchange.results = {n: done[n] for n in names}
    await score_exchange(clients, exchange, live=live)  # token-level agreement with the reference
    if callback_errors:
        exchange.meta["on_lane_done_errors"] = callback_errors
    return exchange


def _not_started(lane: str, client: LaneClient) -> LaneResult:
    result = LaneResult(lane=lane, model=client.endpoint.model)
    result.error = LaneError("cancelled", STOPPED_MESSAGE)
    return result


class Conversation:
    """Per-lane multi-turn histories: each lane sees its own earlier answers.

    Histories hold user and assistant turns only; the system prompt is put first at each
    send from the current params, so changing it applies to the next prompt.
    """

    def __init__(self, lanes: Iterable[str | LaneClient]) -> None:
        self.lanes: list[str] = [x if isinstance(x, str) else x.name for x in lanes]
        self.histories: dict[str, list[dict[str, str]]] = {n: [] for n in self.lanes}

    @classmethod
    def from_exchanges(
        cls, lanes: Iterable[str | LaneClient], exchanges: Iterable[Exchange]
    ) -> Conversation:
        """Rebuild the histories from a reopened session's exchanges, in order. An
        exchange a later one regenerated (``meta["regenerated_from"]``) is left out, as it
        was when the person pressed retry."""
        conv = cls(lanes)
        exchanges = list(exchanges)
        replaced = {ex.meta.get("regenerated_from") for ex in exchanges}
        for ex in exchanges:
            if ex.id not in replaced:
                conv.record(ex)
        return conv

    def messages_for(self, prompt: str, params: SamplingParams) -> dict[str, list[dict[str, str]]]:
        """The message list each lane is sent for a new user ``prompt``."""
        head = [{"role": "system", "content": params.system_prompt}] if params.system_prompt else []
        user = {"role": "user", "content": prompt}
        return {n: [*head, *self.histories[n], user] for n in self.lanes}

    def record(self, exchange: Exchange) -> None:
        """Append the user turn and each lane's answer. A lane that failed keeps its
        history unchanged (no dangling user turn), so its next prompt is well-formed.
        A stopped exchange (``meta["stopped"]``) is left out on every lane: the lanes were
        cut at different points, and a comparison needs every lane sent the same turns."""
        if exchange.meta.get("stopped"):
            return
        for lane in self.lanes:
            result = exchange.results.get(lane)
            if result is None or not result.ok:
                continue
            self.histories[lane].append({"role": "user", "content": exchange.prompt})
            self.histories[lane].append({"role": "assistant", "content": result.text})

    def forget(self, exchange: Exchange) -> bool:
        """Take back ``exchange``'s turn where it is the last one recorded (a regenerate
        sends its prompt again after the same earlier turns). True if any lane had it."""
        if exchange.meta.get("stopped"):  # never recorded (see record)
            return False
        took = False
        for lane in self.lanes:
            result = exchange.results.get(lane)
            history = self.histories[lane]
            if result is None or not result.ok or len(history) < 2:
                continue
            if history[-2:] == [
                {"role": "user", "content": exchange.prompt},
                {"role": "assistant", "content": result.text},
            ]:
                del history[-2:]
                took = True
        return took

    def reset(self) -> None:
        """Start a new conversation on every lane."""
        for lane in self.lanes:
            self.histories[lane] = []

    @property
    def turns(self) -> dict[str, int]:
        """Completed user turns per lane (lanes can differ after a failure)."""
        return {n: len(h) // 2 for n, h in self.histories.items()}


def lane_results(exchange: Exchange) -> list[dict[str, Any]]:
    """Flat per-lane rows (the ``quantlab ask --json`` lane shape), in lane order."""
    rows = []
    for name, r in exchange.results.items():
        t = r.timing
        rows.append(
            {
                "name": name,
                "model": r.model,
                "text": r.text,
                "finish_reason": r.finish_reason,
                "usage": r.usage,
                "ttft_ms": t.ttft_ms,
                "itl_ms": t.itl_ms,
                "e2e_ms": t.e2e_ms,
                "tpot_ms": t.tpot_ms,
                "ttfc_ms": t.ttfc_ms,
                "last_byte_ms": t.last_byte_ms,
                "output_tokens": t.output_tokens,
                "tokens_per_s": t.tokens_per_s,
                "cut_off": r.cut_off,
                "notes": list(r.notes),
                "error": None if r.error is None else str(r.error),
                "agreement": r.agreement,
            }
        )
    return rows
