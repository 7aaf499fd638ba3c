"""``quantlab ask PROMPT``: one prompt to every endpoint at once, answers side by side.

The same fan-out and client as the chat screen, so its numbers mean the same. ``--json``
prints one object for scripts: ``{"wall_ms", "lanes": [{"name", "model", "text",
"finish_reason", "usage", "ttft_ms", "itl_ms", "e2e_ms", "output_tokens", "tokens_per_s",
"error"}]}``. Exit status 0 when every lane answered, 1 when any failed, 2 for bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import textwrap
import unicodedata
from dataclasses import replace
from typing import Any

import orjson

from quantlab.agreement.compare import agreement_line
from quantlab.client import LaneClient
from quantlab.config import ConfigError, load_config, resolve_endpoints
from quantlab.fanout import Conversation, fanout, lane_results
from quantlab.machine import machine_facts
from quantlab.records import Endpoint, Exchange, LaneResult, SamplingParams

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
        "--timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="seconds a lane may take for its whole answer before it fails (default 300)",
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
    endpoints: list[Endpoint], prompt: str, params: SamplingParams, timeout: float
) -> Exchange:
    """Discover every endpoint, then fan the prompt out once."""
    clients = [LaneClient(ep, read_timeout=timeout, total_timeout=timeout) for ep in endpoints]
    try:
        await asyncio.gather(*(c.discover(timeout=min(5.0, timeout)) for c in clients))
        messages = Conversation([c.name for c in clients]).messages_for(prompt, params)
        return await fanout(clients, messages, params, prompt=prompt, source="ask")
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


def run(args: argparse.Namespace) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        print("quantlab ask: the prompt is empty", file=sys.stderr)
        return 2
    if not args.timeout > 0:
        print("quantlab ask: --timeout must be above 0", file=sys.stderr)
        return 2
    progress = _Progress()
    try:
        config = load_config(args.config)
        params = _params(args, config.sampling)
        with resolve_endpoints(args, config, progress=progress) as setup:
            progress.close()
            exchange = asyncio.run(ask(setup.endpoints, prompt, params, args.timeout))
            endpoints = setup.endpoints
    except ConfigError as exc:
        progress.close()
        print(f"quantlab ask: {exc}", file=sys.stderr)
        return 2
    if args.session:
        _save(args.session, endpoints, exchange)
    if args.json:
        out = {"wall_ms": exchange.wall_ms, "lanes": lane_results(exchange)}
        sys.stdout.write(orjson.dumps(out).decode() + "\n")
    else:
        width = shutil.get_terminal_size((100, 24)).columns
        sys.stdout.write(render(exchange, endpoints, width))
    sys.stdout.flush()
    return 0 if all(r.ok for r in exchange.results.values()) else 1


def _save(path: str, endpoints: list[Endpoint], exchange: Exchange) -> None:
    """Append the exchange to a session file (the session store owns the format)."""
    try:
        from quantlab.session import SessionStore
    except ImportError:
        print("quantlab ask: session files are not available yet; not saved", file=sys.stderr)
        return
    try:
        store = SessionStore.open(path, endpoints=endpoints, machine=machine_facts())
        try:
            store.append_exchange(exchange)
        finally:
            store.close()
    except Exception as exc:  # the answers are printed anyway: say why nothing was saved
        print(f"quantlab ask: could not save to {path}: {exc}", file=sys.stderr)


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
    lines = [f"{r.lane}{role}", model, "─" * cells]
    lines += _wrap(r.text, cells) if r.text else ["(no text)"]
    lines.append("─" * cells)
    tps = "–" if t.tokens_per_s is None else f"{t.tokens_per_s:.1f}"
    tokens = "–" if t.output_tokens is None else str(t.output_tokens)
    if t.tokens_counted and t.output_tokens is not None:
        tokens += " (counted)"
    lines += _wrap(f"TTFT {_ms(t.ttft_ms)} · {tps} tok/s · {tokens} tokens", cells)
    lines += _wrap(f"finish {r.finish_reason or '–'} · e2e {_ms(t.e2e_ms)}", cells)
    if agree := agreement_line(r.agreement):
        lines += _wrap(agree, cells)
    if r.error is not None:
        lines += _wrap(f"ERROR {r.error}", cells)
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
