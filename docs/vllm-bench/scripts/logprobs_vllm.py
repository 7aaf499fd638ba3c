"""What top-k log-probabilities and teacher forcing cost on real vLLM (issue 11).

(a) Decode cost: each endpoint decodes --tokens tokens (ignore_eos, greedy) with
    top_logprobs off, 5 and 20, interleaved, --repeats times, one request at a time; then
    8 at once, off and 20. Per setting: quantlab's decode rate (tokens/s over the chunks),
    TPOT as vLLM defines it, and the client's CPU per chunk (``time.thread_time``).
(b) Teacher forcing: for each prompt, the reference's answer (top-20 logprobs), then what
    scoring it costs: the two ``/tokenize`` calls and one ``/v1/completions`` with
    ``prompt_logprobs: 20`` on the reference and on the candidate, timed; and the
    agreement it gives (KL, top-1) next to the shared-prefix one.

    python logprobs_vllm.py --endpoint NAME=URL ... --ref URL --cand URL > out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from quantlab.agreement import teacher
from quantlab.agreement.compare import shared_prefix, teacher_forced
from quantlab.agreement.logprobs import LazyDists
from quantlab.client import LaneClient
from quantlab.records import Endpoint, SamplingParams

KEYS = ("positions", "mean_kl", "top1_rate", "diverged_at")
PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]
PROMPTS = [
    "What is the capital of Australia? Answer in one sentence.",
    "Explain what a hash table is to a new programmer.",
    "List five prime numbers greater than 100.",
    "Translate 'the weather is nice today' into French and German.",
    "Write a haiku about autumn rain.",
    "Why is the sky blue? Two sentences.",
    "Give three tips for writing clear commit messages.",
    "What is 17 times 23? Show the steps.",
    "Summarize the plot of Romeo and Juliet in three sentences.",
    "Write a Python function that reverses a string.",
]


async def _one(client: LaneClient, k: int | None, tokens: int) -> dict[str, float]:
    params = SamplingParams(max_tokens=tokens, top_logprobs=k, seed=None)
    t0 = time.thread_time()
    r = await client.chat(PROMPT, params, extra_body={"ignore_eos": True})
    cpu = time.thread_time() - t0
    assert r.error is None, r.error
    t = r.timing
    n = t.output_tokens or 0
    tpot = (t.e2e_ms - t.ttft_ms) / (n - 1) if n > 1 and t.e2e_ms and t.ttft_ms else 0.0
    return {
        "tok_s": t.tokens_per_s or 0.0,
        "tpot_ms": tpot,
        "cpu_us_per_chunk": cpu / max(1, len(t.itl_ms) + 1) * 1e6,
    }


async def decode_cost(ep: Endpoint, tokens: int, repeats: int) -> dict[str, Any]:
    client = LaneClient(ep)
    try:
        await client.discover()
        rows: dict[str, list[dict[str, float]]] = {}
        await _one(client, None, 16)  # warm
        for _ in range(repeats):
            for k in (None, 5, 20):
                rows.setdefault(f"k{k or 0}", []).append(await _one(client, k, tokens))
        out: dict[str, Any] = {
            key: {m: round(statistics.median(r[m] for r in rs), 2) for m in rs[0]}
            for key, rs in rows.items()
        }
        for key in ("k5", "k20"):
            out[f"{key}_decode_vs_off"] = round(out[key]["tok_s"] / out["k0"]["tok_s"], 3)
            out[f"{key}_cpu_vs_off"] = round(
                out[key]["cpu_us_per_chunk"] / out["k0"]["cpu_us_per_chunk"], 3
            )
        conc: dict[str, list[float]] = {}
        for _ in range(max(1, repeats // 2)):
            for k in (None, 20):
                t0 = time.perf_counter()
                res = await asyncio.gather(*(_one(client, k, tokens) for _ in range(8)))
                wall = time.perf_counter() - t0
                conc.setdefault(f"k{k or 0}", []).append(8 * tokens / wall)
                del res
        out["c8_output_tok_s"] = {k: round(statistics.median(v), 1) for k, v in conc.items()}
        out["c8_k20_vs_off"] = round(
            out["c8_output_tok_s"]["k20"] / out["c8_output_tok_s"]["k0"], 3
        )
        return out
    finally:
        await client.aclose()


async def teacher_cost(ref_ep: Endpoint, cand_ep: Endpoint, tokens: int) -> dict[str, Any]:
    ref, cand = LaneClient(ref_ep), LaneClient(cand_ep)
    rows = []
    try:
        await ref.discover()
        await cand.discover()
        params = SamplingParams(max_tokens=tokens, top_logprobs=20)
        for p in PROMPTS:
            msgs = [{"role": "user", "content": p}]
            r_ans, c_ans = await asyncio.gather(ref.chat(msgs, params), cand.chat(msgs, params))
            assert r_ans.ok and c_ans.ok, (r_ans.error, c_ans.error)
            t0 = time.perf_counter()
            ids, start = await teacher.answer_ids(ref, msgs, r_ans.text)
            t1 = time.perf_counter()
            ref_d = await teacher.score(ref, ids, start, 20)
            t2 = time.perf_counter()
            cids, cstart = await teacher.answer_ids(cand, msgs, r_ans.text)
            cand_d = await teacher.score(cand, ids, start, 20)
            t3 = time.perf_counter()
            tf = teacher_forced(ref_d, cand_d, reference=ref_ep.name, k=20).to_dict()
            sp = shared_prefix(
                LazyDists(r_ans.logprobs or []), LazyDists(c_ans.logprobs or []),
                reference=ref_ep.name, k=20,
            ).to_dict()  # fmt: skip
            rows.append(
                {
                    "prompt": p,
                    "answer_tokens": len(ids) - start,
                    "same_tokenization": (cids, cstart) == (ids, start),
                    "tokenize_ms": round((t1 - t0) * 1000, 1),
                    "score_ref_ms": round((t2 - t1) * 1000, 1),
                    "tokenize_and_score_cand_ms": round((t3 - t2) * 1000, 1),
                    "answer_e2e_ms": round(r_ans.timing.e2e_ms or 0, 1),
                    "teacher_forced": {k: tf.get(k) for k in KEYS},
                    "shared_prefix": {k: sp.get(k) for k in KEYS},
                }
            )
    finally:
        await ref.aclose()
        await cand.aclose()
    whole = [r["tokenize_ms"] + r["score_ref_ms"] + r["tokenize_and_score_cand_ms"] for r in rows]
    return {
        "exchanges": rows,
        "teacher_ms_median": round(statistics.median(whole), 1),
        "answer_e2e_ms_median": round(statistics.median(r["answer_e2e_ms"] for r in rows), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", action="append", default=[], help="NAME=URL for (a)")
    ap.add_argument("--ref", help="reference URL for (b)")
    ap.add_argument("--cand", help="candidate URL for (b)")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    out: dict[str, Any] = {"tokens": a.tokens, "repeats": a.repeats, "decode": {}}
    for spec in a.endpoint:
        name, url = spec.split("=", 1)
        out["decode"][name] = asyncio.run(decode_cost(Endpoint(name, url), a.tokens, a.repeats))
        print(json.dumps({name: out["decode"][name]}), flush=True)
    if a.ref and a.cand:
        eps = Endpoint("bf16", a.ref, role="reference"), Endpoint("fp8", a.cand)
        out["teacher"] = asyncio.run(teacher_cost(*eps, tokens=128))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
