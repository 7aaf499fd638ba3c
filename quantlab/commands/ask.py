"""``quantlab ask PROMPT``: one prompt to every endpoint at once, answers side by side.

The same exchange pipeline as the chat screen and the runner (send, detect, save), so its
numbers and findings mean the same. Every ask is logged, as ``llm`` logs every prompt: to a
new session file in the sessions folder (``sessions_dir`` in quantlab.toml, default
./sessions), or appended to ``--session FILE``; one stderr line says where; ``--no-save``
keeps nothing. ``--json``
prints one object for scripts: ``{"wall_ms", "lanes": [{"name", "model", "text",
"finish_reason", "usage", "ttft_ms", "itl_ms", "e2e_ms", "tpot_ms", "ttfc_ms", "last_byte_ms",
"output_tokens", "tokens_per_s", "cut_off", "notes", "error"}]}`` (the exact text: the
columns show control characters as escapes, see quantlab/textsafe.py). Exit status 0
when every lane answered, 1 when any failed or the log could not be saved, 2 for
bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import textwrap
import unicodedata
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from quantlab.agreement.compare import agreement_line
from quantlab.client import LaneClient
from quantlab.config import ConfigError, client_limits, load_config, resolve_endpoints
from quantlab.fanout import Conversation, lane_results
from quantlab.lanes import reference_lane
from quantlab.limits import ClientLimits
from quantlab.machine import machine_facts
from quantlab.pipeline import send_exchange
from quantlab.records import Endpoint, Exchange, LaneResult, SamplingParams
from quantlab.session import SessionStore, default_session_path
from quantlab.textsafe import json_safe, safe_line, safe_text

GAP = "   "
MIN_COLUMN = 28  # narrower than this, lanes are stacked instead


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("prompt", help="the prompt to send ('-' reads it from standard input)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of columns")
    p.add_argument("--temperature", type=float, help="sampling temperature (default: config, 0)")
    p.add_argument("--max-tokens", type=int, help="most tokens per answer (default: config, 256)")
    p.add_argument("--seed", type=int, help="sampling seed (default: config, 0)")
    p.add_argument("--system", metavar="TEXT", help="system prompt")
    p.add_argument(
        "--no-save",
        action="store_true",
        help="do not log this ask (default: a new session file in the sessions folder, "
        "or --session PATH)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="seconds a lane may take for its whole answer (same as --total-timeout)",
    )


def _params(args: argparse.Namespace, base: SamplingParams) -> SamplingParams:
    p = replace(base)
    if args.temperature is not None:
        if args.temperature < 0:
            raise ConfigError("--temperature must be 0 or more")
        p.temperature = args.temperature
    if args.max_tokens is not None:
        if args.max_tokens < 1:
            raise ConfigError("--max-tokens must be 1 or more")
        p.max_tokens = args.max_tokens
    if args.seed is not None:
        p.seed = args.seed
    if args.system is not None:
        p.system_prompt = args.system or None
    return p


class _Progress:
    """Local-pair start-up progress on stderr (stdout stays one JSON object); the display
    is the local pair's own, loaded only when the pair is actually started."""

    def __init__(self) -> None:
        self._display: Any = None

    def __call__(self, message: str, fraction: float | None = None) -> None:
        if self._display is None:
            from quantlab.localpair import TextProgress

            self._display = TextProgress()
        self._display(message, fraction)

    def close(self) -> None:
        if self._display is not None:
            self._display.close()


async def ask(
    endpoints: list[Endpoint],
    prompt: str,
    params: SamplingParams,
    limits: ClientLimits | float | None = None,
    *,
    session: _Sink | None = None,
) -> Exchange:
    """Discover every endpoint, then send the prompt once through the exchange pipeline
    (detectors included); with ``session``, the exchange is appended to that file.
    ``limits`` as a number is the total timeout (the older form)."""
    if not isinstance(limits, ClientLimits):
        limits = ClientLimits() if limits is None else ClientLimits(total_s=float(limits))
    clients = [LaneClient(ep, limits=limits) for ep in endpoints]
    discover_s = min(5.0, limits.total_s or 5.0, limits.stall_s)
    store: SessionStore | None = None
    try:
        await asyncio.gather(*(c.discover(timeout=discover_s) for c in clients))
        if session is not None:
            store = await asyncio.to_thread(session.open, endpoints)
        messages = Conversation([c.name for c in clients]).messages_for(prompt, params)
        return await send_exchange(
            clients,
            messages,
            params,
            prompt=prompt,
            source="ask",
            reference=reference_lane(endpoints),
            store=store,
            write=session.write if session is not None else None,
        )
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
        if store is not None and session is not None:
            await asyncio.to_thread(session.close, store)


def run(args: argparse.Namespace) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        print("quantlab ask: the prompt is empty", file=sys.stderr)
        return 2
    progress = _Progress()
    try:
        config = load_config(args.config)
        params = _params(args, config.sampling)
        limits = client_limits(args, config, total_flag="timeout")
        sink = _sink(args, config.sessions_dir)
        with resolve_endpoints(args, config, progress=progress) as setup:
            progress.close()
            exchange = asyncio.run(ask(setup.endpoints, prompt, params, limits, session=sink))
            endpoints = setup.endpoints
    except ConfigError as exc:
        progress.close()
        print(f"quantlab ask: {exc}", file=sys.stderr)
        return 2
    saved = sink.ok if sink is not None else True
    if sink is not None and sink.ok:
        print(f"quantlab ask: logged to {sink.path}", file=sys.stderr)
    if args.json:
        out = {"wall_ms": exchange.wall_ms, "lanes": lane_results(exchange)}
        sys.stdout.write(json_safe(orjson.dumps(out).decode()) + "\n")
    else:
        width = shutil.get_terminal_size((100, 24)).columns
        sys.stdout.write(render(exchange, endpoints, width))
    sys.stdout.flush()
    return 0 if saved and all(r.ok for r in exchange.results.values()) else 1


def _sink(args: argparse.Namespace, sessions_dir: Path) -> _Sink | None:
    """Where this ask is logged: ``--session``, else a new file in the sessions folder."""
    if args.no_save:
        if args.session:
            raise ConfigError("--no-save and --session contradict each other; give one")
        return None
    return _Sink(str(args.session) if args.session else str(default_session_path(sessions_dir)))


class _Sink:
    """The session file ``ask --session`` appends to. Every failure (cannot open, a write
    or the close refused, e.g. a full disk) is said in one sentence on stderr and clears
    ``ok``: the answers are printed anyway, and the exit status says the save failed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.ok = True

    def _failed(self, exc: BaseException, what: str = "could not save to") -> None:
        self.ok = False
        print(f"quantlab ask: {what} {self.path}: {exc}", file=sys.stderr)

    def open(self, endpoints: list[Endpoint]) -> SessionStore | None:
        try:
            return SessionStore.open(self.path, endpoints=endpoints, machine=machine_facts())
        except Exception as exc:
            self._failed(exc)
            return None

    async def write(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            await asyncio.to_thread(fn, *args)
        except Exception as exc:
            self._failed(exc)

    def close(self, store: SessionStore) -> None:
        try:
            store.close()
        except Exception as exc:  # the exchange is in the journal; the snapshot is not
            self._failed(exc, "saved the exchange in the journal, but could not close")


# ------------------------------------------------------------------ text output


def _width(s: str) -> int:
    """Terminal cells: East Asian wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def _fit(s: str, cells: int) -> str:
    """Cut to ``cells`` terminal cells and pad to exactly that width."""
    out, used = [], 0
    for c in s:
        w = 2 if unicodedata.east_asian_width(c) in "WF" else 1
        if used + w > cells:
            break
        out.append(c)
        used += w
    return "".join(out) + " " * (cells - used)


def _wrap(text: str, cells: int) -> list[str]:
    lines: list[str] = []
    for para in text.expandtabs(4).splitlines() or [""]:
        lines.extend(textwrap.wrap(para, max(8, cells), replace_whitespace=False) or [""])
    return lines


def _ms(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:.0f} ms" if v < 10_000 else f"{v / 1000:.1f} s"


def lane_block(r: LaneResult, ep: Endpoint | None, cells: int) -> list[str]:
    """One lane's column: header, answer, metrics, error."""
    t = r.timing
    model = r.model or (ep.model if ep else None) or "?"
    role = f" ({ep.role})" if ep else ""
    lines = [f"{r.lane}{role}", safe_line(model), "─" * cells]
    lines += _wrap(safe_text(r.text), cells) if r.text else ["(no text)"]
    lines.append("─" * cells)
    tps = "–" if t.tokens_per_s is None else f"{t.tokens_per_s:.1f}"
    tokens = "–" if t.output_tokens is None else str(t.output_tokens)
    if t.tokens_counted and t.output_tokens is not None:
        tokens += " (counted)"
    lines += _wrap(f"TTFT {_ms(t.ttft_ms)} · {tps} tok/s · {tokens} tokens", cells)
    lines += _wrap(f"finish {r.finish_reason or '–'} · e2e {_ms(t.e2e_ms)}", cells)
    if r.cut_off:
        lines += _wrap(r.cut_off.upper()[:1] + r.cut_off[1:], cells)
    for note in r.notes:
        lines += _wrap(f"note: {safe_line(note)}", cells)
    if agree := agreement_line(r.agreement):
        lines += _wrap(agree, cells)
    if r.error is not None:
        lines += _wrap(f"ERROR {safe_line(str(r.error))}", cells)
    return lines


def render(exchange: Exchange, endpoints: list[Endpoint], width: int) -> str:
    """Lanes side by side in ``width`` columns, or stacked when they would not fit."""
    by_name = {e.name: e for e in endpoints}
    results = list(exchange.results.values())
    n = max(1, len(results))
    col = (width - len(GAP) * (n - 1)) // n
    out: list[str] = []
    if col >= MIN_COLUMN and n > 1:
        blocks = [lane_block(r, by_name.get(r.lane), col) for r in results]
        height = max(len(b) for b in blocks)
        for i in range(height):
            row = [_fit(b[i] if i < len(b) else "", col) for b in blocks]
            out.append(GAP.join(row).rstrip())
    else:
        cells = max(MIN_COLUMN, width)
        for r in results:
            out += [*lane_block(r, by_name.get(r.lane), cells), ""]
    failed = [r.lane for r in results if not r.ok]
    tail = f"wall {_ms(exchange.wall_ms)} (all lanes at once)"
    if failed:
        tail += f" · failed: {', '.join(failed)}"
    out.append(tail)
    return "\n".join(out) + "\n"
