"""Record what a vLLM server really sends, byte for byte, for the conformance tests.

Run against live servers (the GPU machine); each recording is one JSON file: the request
(method, path, headers, JSON body) and the response (status, headers in order, the body as
it came, and the sizes of the network chunks it came in). ``tests/replay.py`` serves them
back and ``tests/test_vllm_recordings.py`` checks quantlab against them.

    python tests/data/record_vllm.py --out DIR bf16=http://127.0.0.1:8000 fp8=http://…:8001

Only raw httpx here (no quantlab code) for the wire recordings, so a quantlab bug cannot
shape what is recorded. ``--quantlab`` adds ``quantlab_traffic.json`` per lane: the exact
requests quantlab's own client sends for discovery, token counting and one chat, with the
answers, through a recording transport (to see what differs when quantlab fails where curl
works).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

SHORT_PROMPT = "What is the capital of France? Answer in one short sentence."
NON_ASCII_PROMPT = (
    "Répète exactement, sans rien ajouter : « Grüße aus Köln — 東京は晴れ 😀 ½ ≠ ∞ ». "
    "Repeat that line exactly."
)
EMOJI_PROMPT = "Repeat exactly: Grüße aus Köln, 東京, 😀"
#: ~8K tokens of plain English (each sentence is 12-14 tokens on SmolLM2's tokenizer).
FILLER = "The quiet harbour town keeps its old stone lighthouse painted white and blue. "


def _text_or_b64(raw: bytes) -> dict[str, str]:
    try:
        return {"body": raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {"body_b64": base64.b64encode(raw).decode("ascii")}


async def record(
    http: httpx.AsyncClient,
    name: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    ctype: bool = True,
) -> dict[str, Any]:
    """One request; the response exactly as it came (status, ordered headers, raw body).
    ``ctype=False`` sends a JSON body without a content-type header, as quantlab did."""
    hdrs = {"content-type": "application/json"} if body is not None and ctype else {}
    content = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
    req = http.build_request(method, path, content=content, headers=hdrs)
    t0 = time.perf_counter()
    resp = await http.send(req, stream=True)
    chunks: list[int] = []
    arrivals: list[float] = []
    raw = bytearray()
    try:
        async for piece in resp.aiter_raw():
            chunks.append(len(piece))
            arrivals.append(round((time.perf_counter() - t0) * 1000, 3))
            raw += piece
    finally:
        await resp.aclose()
    return {
        "name": name,
        "request": {
            "method": method,
            "path": path,
            "headers": {k: v for k, v in req.headers.items() if k.lower() != "host"},
            "json": body,
        },
        "response": {
            "status": resp.status_code,
            "http_version": resp.http_version,
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in resp.headers.raw],
            "chunks": chunks,
            "arrivals_ms": arrivals,
            **_text_or_b64(bytes(raw)),
        },
    }


def chat(model: str, prompt: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0.0,
        "top_p": 1.0,
        "seed": 0,
        "max_tokens": 48,
        "stream": True,
    }
    body.update(fields)
    return body


def long_messages(model: str, words: int) -> list[dict[str, str]]:
    """A multi-turn conversation of about ``words`` words (system, user/assistant pairs)."""
    msgs = [{"role": "system", "content": "You are a careful assistant."}]
    per = FILLER * 8
    n = max(1, words // (len(per.split()) * 2))
    for i in range(n):
        msgs.append({"role": "user", "content": f"Part {i}. {per}"})
        msgs.append({"role": "assistant", "content": f"Noted part {i}. {per}"})
    msgs.append({"role": "user", "content": "What colour is the lighthouse?"})
    return msgs


async def record_lane(lane: str, url: str, out: Path, with_quantlab: bool) -> list[str]:
    """Every recording for one server into ``out/lane``; returns the names written."""
    d = out / lane
    d.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=120.0, limits=limits) as http:

        async def save(rec: dict[str, Any]) -> None:
            rec["lane"] = lane
            (d / f"{rec['name']}.json").write_text(
                json.dumps(rec, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
            )
            names.append(rec["name"])
            st = rec["response"]["status"]
            print(f"  {lane}/{rec['name']}: {st}, {sum(rec['response']['chunks'])} B", flush=True)

        models = await record(http, "models", "GET", "/v1/models")
        await save(models)
        model = json.loads(models["response"]["body"])["data"][0]["id"]
        for name, path in (("version", "/version"), ("health", "/health")):
            await save(await record(http, name, "GET", path))
        await save(await record(http, "metrics_idle", "GET", "/metrics"))

        u = {"include_usage": True}
        cases: list[tuple[str, dict[str, Any]]] = [
            ("stream_usage", chat(model, SHORT_PROMPT, stream_options=u)),
            ("stream_no_usage", chat(model, SHORT_PROMPT)),
            (
                "stream_continuous_usage",
                chat(
                    model,
                    SHORT_PROMPT,
                    stream_options={"include_usage": True, "continuous_usage_stats": True},
                ),
            ),
            ("stream_length", chat(model, SHORT_PROMPT, max_tokens=8, stream_options=u)),
            (
                "stream_logprobs",
                chat(
                    model,
                    SHORT_PROMPT,
                    max_tokens=12,
                    logprobs=True,
                    top_logprobs=2,
                    stream_options=u,
                ),
            ),
            ("stream_non_ascii", chat(model, NON_ASCII_PROMPT, max_tokens=64, stream_options=u)),
            ("stream_emoji", chat(model, EMOJI_PROMPT, max_tokens=32, stream_options=u)),
            ("whole", chat(model, SHORT_PROMPT, stream=False)),
            ("err_unknown_model", chat("no-such-model", SHORT_PROMPT, stream_options=u)),
            ("err_bad_param", chat(model, SHORT_PROMPT, temperature=-1.0, stream_options=u)),
            (
                "err_context_prompt",
                chat(model, FILLER * 800, max_tokens=16, stream_options=u),
            ),
            ("err_context_max_tokens", chat(model, SHORT_PROMPT, max_tokens=100_000)),
        ]
        for name, body in cases:
            await save(await record(http, name, "POST", "/v1/chat/completions", body))

        short_msgs = [{"role": "user", "content": SHORT_PROMPT}]
        tok = [
            ("tokenize_prompt_short", {"model": model, "prompt": SHORT_PROMPT}),
            ("tokenize_messages_short", {"model": model, "messages": short_msgs}),
            ("tokenize_prompt_8k", {"model": model, "prompt": FILLER * 560}),
            ("tokenize_messages_8k", {"model": model, "messages": long_messages(model, 6656)}),
            ("tokenize_over_context", {"model": model, "prompt": FILLER * 800}),
            ("tokenize_no_model", {"messages": short_msgs}),
        ]
        for name, body in tok:
            await save(await record(http, name, "POST", "/tokenize", body))
        # quantlab's own request shape: no content-type header (httpx content= bytes).
        rec = await record(
            http, "tokenize_messages_no_ctype", "POST", "/tokenize",
            {"model": model, "messages": short_msgs}, ctype=False,
        )  # fmt: skip
        await save(rec)

        # Busy: 32 long answers in flight, then /metrics while they run.
        busy_body = chat(model, SHORT_PROMPT, max_tokens=1024, ignore_eos=True, stream_options=u)

        async def drain() -> None:
            async with http.stream("POST", "/v1/chat/completions", json=busy_body) as r:
                async for _ in r.aiter_raw():
                    pass

        tasks = [asyncio.create_task(drain()) for _ in range(32)]
        await asyncio.sleep(1.5)
        await save(await record(http, "metrics_busy", "GET", "/metrics"))
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(1.0)
        await save(await record(http, "metrics_after", "GET", "/metrics"))

    if with_quantlab:
        await quantlab_traffic(lane, url, d)
    return names


async def quantlab_traffic(lane: str, url: str, d: Path) -> None:
    """quantlab's own client against the server, every request and answer recorded."""
    from quantlab.client import LaneClient
    from quantlab.records import Endpoint, SamplingParams

    log: list[dict[str, Any]] = []

    class Recording(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.AsyncHTTPTransport()

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            resp = await self.inner.handle_async_request(request)
            raw = b"".join([p async for p in resp.stream])
            await resp.aclose()
            log.append(
                {
                    "method": request.method,
                    "url": str(request.url),
                    "request_headers": dict(request.headers),
                    "request_body": request.content.decode("utf-8", "replace"),
                    "status": resp.status_code,
                    "response_headers": dict(resp.headers),
                    "response_body": raw.decode("utf-8", "replace")[:4000],
                }
            )
            return httpx.Response(resp.status_code, headers=resp.headers, content=raw)

    client = LaneClient(Endpoint(name=lane, base_url=url), transport=Recording())
    result: dict[str, Any] = {}
    try:
        ep = await client.discover()
        result["discover"] = {
            "status": ep.status,
            "detail": ep.status_detail,
            "backend": ep.backend,
            "model": ep.model,
            "max_context": ep.max_context,
            "server_version": ep.server_version,
        }
        short = [{"role": "user", "content": SHORT_PROMPT}]
        result["count_messages_short"] = await client.count_tokens(messages=short)
        result["count_text_short"] = await client.count_tokens(text=SHORT_PROMPT)
        result["count_messages_8k"] = await client.count_tokens(messages=long_messages("", 6656))
        try:
            from quantlab.longctx import GeneratorSpec, build_length
            from quantlab.suites import find_suite

            suite = find_suite("long-context")
            spec = GeneratorSpec.from_settings(suite.settings)

            async def counter(msgs: list[dict[str, str]]) -> int | None:
                return await client.count_tokens(messages=msgs)

            built = await build_length(spec, 0, counter, "lc-1k")
            result["long_context_1k"] = {
                "source": built.count_source,
                "tokens": built.tokens,
                "note": built.note,
            }
        except Exception as exc:  # the builder's API may have moved: say so, go on
            result["long_context_1k"] = {"error": repr(exc)}
        res = await client.chat(short, SamplingParams(max_tokens=24))
        result["chat"] = {
            "text": res.text,
            "finish_reason": res.finish_reason,
            "usage": res.usage,
            "error": None if res.error is None else str(res.error),
            "timing": res.timing.to_dict(),
        }
    finally:
        await client.aclose()
    out = {"lane": lane, "result": result, "traffic": log}
    (d / "quantlab_traffic.json").write_text(
        json.dumps(out, ensure_ascii=False, indent=1, default=str) + "\n", encoding="utf-8"
    )
    print(f"  {lane}/quantlab_traffic: {json.dumps(result, default=str)[:600]}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lanes", nargs="+", metavar="NAME=URL")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--quantlab", action="store_true", help="also record quantlab's own traffic")
    a = ap.parse_args(argv)
    ok = True
    for spec in a.lanes:
        lane, _, url = spec.partition("=")
        try:
            asyncio.run(record_lane(lane, url, a.out, a.quantlab))
        except Exception as exc:  # one lane's failure must not lose the others
            print(f"{lane}: recording failed: {exc!r}", file=sys.stderr, flush=True)
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
