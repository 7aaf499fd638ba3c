"""What asking for top-k log-probabilities costs: client CPU per chunk and decode speed.

(a) Client CPU per chunk (the goal: within 1.5x of the same stream without logprobs).
    A stand-in server (tests/standin.py, vLLM's chat chunk and logprobs format, in its own
    process) streams --chunks content chunks as fast as it can; LaneClient.chat reads
    them with top_logprobs off, 5 and 20 (``time.thread_time()`` of the client thread over
    the request, / chunks; median of --repeats, interleaved). Both framings: one HTTP
    chunk per event (uvicorn/vLLM) and events packed into large HTTP chunks. Also the
    agreement computed afterwards (parse + shared-prefix KL), per token, and the floor:
    ``transport_only``, the same requests read through httpx (the client's reads) with
    every byte dropped unparsed, so what the bytes cost before quantlab touches them.
(b) The local pair (real llama.cpp): each lane decodes --tokens tokens (EOS ignored) with
    top_logprobs off and 20, one lane at a time; llama.cpp's own decode rate
    (``timings.predicted_per_second``), the client's tokens/s and client CPU per chunk,
    median of --pair-repeats.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from quantlab.agreement.compare import shared_prefix  # noqa: E402
from quantlab.agreement.logprobs import chunks_to_dists  # noqa: E402
from quantlab.client import LaneClient  # noqa: E402
from quantlab.records import Endpoint, SamplingParams  # noqa: E402

MESSAGES = [{"role": "user", "content": "Write a long story about a dragon who bakes bread."}]
KS = (None, 5, 20)


async def _transport_cpu(url: str, chunks: int, repeats: int) -> dict[str, Any]:
    """CPU per chunk of httpx alone: the body quantlab sends, the response's bytes read
    the way the client reads them (``resp.stream``) and dropped."""
    client = LaneClient(Endpoint("bench", url, model="standin/Qwen2.5-0.5B-Instruct"))
    per: dict[str, list[float]] = {"None": [], "20": []}
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    try:
        http = client._http
        for rep in range(repeats + 1):
            for k in (None, 20):
                params = SamplingParams(max_tokens=chunks + 10, top_logprobs=k)
                body = orjson.dumps(client.build_body(MESSAGES, params))
                gc.collect()
                t0 = time.thread_time()
                req = http.build_request("POST", "/v1/chat/completions", content=body,
                                         headers=headers)  # fmt: skip
                resp = await http.send(req, stream=True)
                async for _ in cast("AsyncIterator[bytes]", resp.stream):
                    pass
                await resp.aclose()
                if rep:  # the first round warms up
                    per[str(k)].append((time.thread_time() - t0) / chunks * 1e6)
    finally:
        await client.aclose()
    med = {k: statistics.median(v) for k, v in per.items()}
    return {
        "us_per_chunk_off": round(med["None"], 3),
        "us_per_chunk_k20": round(med["20"], 3),
        "k20_vs_off": round(med["20"] / med["None"], 3),
    }


async def _standin_cpu(url: str, chunks: int, repeats: int) -> dict[str, Any]:
    client = LaneClient(Endpoint("bench", url, model="standin/Qwen2.5-0.5B-Instruct"))
    per: dict[str, list[float]] = {str(k): [] for k in KS}
    agree_us: list[float] = []
    try:
        for k in KS:  # warm-up
            await client.chat(MESSAGES, SamplingParams(max_tokens=chunks + 10, top_logprobs=k))
        for _ in range(repeats):
            for k in KS:
                gc.collect()
                t0 = time.thread_time()
                r = await client.chat(
                    MESSAGES, SamplingParams(max_tokens=chunks + 10, top_logprobs=k)
                )
                per[str(k)].append((time.thread_time() - t0) / chunks * 1e6)
                assert r.error is None, r.error
                if k == 20:
                    assert r.logprobs is not None and len(r.logprobs) == chunks
                    t1 = time.thread_time()
                    d = chunks_to_dists(r.logprobs)
                    shared_prefix(d, d, reference="bench", k=20)
                    agree_us.append((time.thread_time() - t1) / chunks * 1e6)
    finally:
        await client.aclose()
    med = {k: round(statistics.median(v), 3) for k, v in per.items()}
    return {
        "us_per_chunk_off": med["None"],
        "us_per_chunk_k5": med["5"],
        "us_per_chunk_k20": med["20"],
        "k20_vs_off": round(med["20"] / med["None"], 3),
        "agreement_us_per_token_k20": round(statistics.median(agree_us), 3),
        "runs": {k: [round(x, 2) for x in v] for k, v in per.items()},
    }


def standin(chunks: int, repeats: int, bulk: bool) -> dict[str, Any]:
    cmd = [sys.executable, str(ROOT / "tests" / "standin.py"), "--tokens", str(chunks)]
    server = subprocess.Popen(
        [*cmd, *(["--bulk"] if bulk else [])], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        out = asyncio.run(_standin_cpu(url, chunks, repeats))
        out["transport_only"] = asyncio.run(_transport_cpu(url, chunks, repeats))
        return out
    finally:
        server.terminate()
        server.wait(timeout=10)


async def _pair(endpoints: list[Endpoint], tokens: int, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ep in endpoints:
        client = LaneClient(Endpoint.from_dict(ep.to_dict()))
        rows: dict[str, dict[str, list[float]]] = {}
        try:
            for _ in range(repeats):
                for k in (None, 20):
                    params = SamplingParams(max_tokens=tokens, top_logprobs=k)
                    extra = {"ignore_eos": True, "cache_prompt": False}
                    t0 = time.thread_time()
                    r = await client.chat(MESSAGES, params, extra_body=extra)
                    cpu = time.thread_time() - t0
                    assert r.error is None, r.error
                    row = rows.setdefault(str(k), {"server": [], "client": [], "cpu": []})
                    row["server"].append((r.server_timings or {}).get("predicted_per_second", 0))
                    row["client"].append(r.timing.tokens_per_s or 0)
                    row["cpu"].append(cpu / max(1, len(r.timing.itl_ms) + 1) * 1e6)
        finally:
            await client.aclose()
        med = {k: {m: statistics.median(v) for m, v in row.items()} for k, row in rows.items()}
        out[ep.name] = {
            "server_tok_s_off": round(med["None"]["server"], 2),
            "server_tok_s_k20": round(med["20"]["server"], 2),
            "client_tok_s_off": round(med["None"]["client"], 2),
            "client_tok_s_k20": round(med["20"]["client"], 2),
            "client_us_per_chunk_off": round(med["None"]["cpu"], 1),
            "client_us_per_chunk_k20": round(med["20"]["cpu"], 1),
            "server_speed_k20_vs_off": round(med["20"]["server"] / med["None"]["server"], 3),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=96, help="tokens per answer on the pair")
    ap.add_argument("--pair-repeats", type=int, default=3)
    ap.add_argument("--ref", help="reference URL of a running pair (default: start one)")
    ap.add_argument("--cand", help="candidate URL of a running pair")
    ap.add_argument("--no-pair", action="store_true")
    a = ap.parse_args()
    framed = standin(a.chunks, a.repeats, bulk=False)
    bulk = standin(a.chunks, a.repeats, bulk=True)
    out: dict[str, Any] = {
        "goal_k20_vs_off_max": 1.5,
        "per_event_frames": framed,
        "bulk_frames": bulk,
        "goal_met": framed["k20_vs_off"] <= 1.5 and bulk["k20_vs_off"] <= 1.5,
    }
    if not a.no_pair:
        if a.ref and a.cand:
            eps = [Endpoint("bf16", a.ref, role="reference"), Endpoint("q4_0", a.cand)]
            out["local_pair"] = asyncio.run(_pair(eps, a.tokens, a.pair_repeats))
        else:
            from quantlab.localpair import LocalPair

            with LocalPair() as pair:
                out["local_pair"] = asyncio.run(_pair(pair.endpoints, a.tokens, a.pair_repeats))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
