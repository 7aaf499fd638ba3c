"""How far the top-k KL estimate is from the full-vocabulary KL, on the local pair.

llama.cpp returns the whole vocabulary's probabilities when ``n_probs`` is its size
(SmolLM2: 49,152). For each prompt the reference (BF16) decodes greedily, one position at
a time; at every position BOTH servers are asked for the full distribution on the same
context (the prompt + the reference's tokens so far), so every position is comparable
(teacher forcing by hand). From each pair of full distributions:

* ``full``: the exact KL(reference ‖ candidate) (quantlab.agreement.kl.kl_full);
* for k in --ks: the top-k estimate quantlab uses (kl_topk, "union + other") and the
  coarsened lower bound (kl_lower_bound), from the k first entries of each side.

Results are appended to --out (JSON lines, one per position) as they come, so a long run
can be stopped and summarized (--summarize). Each full-vocabulary answer is ~4.7 MB of
JSON that the server spends ~0.5-2.5 s building: a few thousand positions take long.
Requests go one at a time (one core busy). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from quantlab.agreement.kl import kl_full, kl_lower_bound, kl_topk  # noqa: E402

PROMPTS = [
    "What is the capital of France? Answer in one sentence.",
    "Write a short poem about the sea.",
    "Explain photosynthesis to a ten-year-old.",
    "What is 17 times 23? Show your steps.",
    "List three uses of a paperclip.",
    "Write a Python function that reverses a string.",
    "Why is the sky blue?",
    "Give me a recipe for pancakes.",
    "Summarize the plot of Romeo and Juliet in three sentences.",
    "What are the planets of the solar system?",
    "Translate 'good morning, how are you?' into French.",
    "Describe a cat to someone who has never seen one.",
    "What causes the seasons on Earth?",
    "Write a haiku about autumn leaves.",
    "How do I make a cup of tea?",
    "What is the difference between weather and climate?",
    "Tell me a fun fact about octopuses.",
    "What is machine learning, in two sentences?",
    "Write a polite email declining a meeting invitation.",
    "Name five fruits that are red.",
    "How does a bicycle stay upright?",
    "What is the boiling point of water in Fahrenheit?",
    "Explain what a prime number is, with examples.",
    "Write a limerick about a dog named Rex.",
]


def full_dist(client: httpx.Client, ids: list[int], vocab: int) -> tuple[int, np.ndarray, bool]:
    """(chosen id, logprobs over the whole vocabulary, stopped at EOS) for one position.

    llama.cpp sends no probabilities for a token that ends inside a UTF-8 character until
    the character is complete: then more tokens are asked for and the first is kept."""
    obj: dict[str, Any] = {}
    for n_predict in (1, 4, 8):
        body = {"prompt": ids, "n_predict": n_predict, "n_probs": vocab, "temperature": 0.0}
        body |= {"cache_prompt": True, "samplers": ["top_k"], "top_k": 1}
        r = client.post("/completion", content=orjson.dumps(body))
        r.raise_for_status()
        obj = orjson.loads(r.content)
        if obj.get("completion_probabilities"):
            break
    else:
        raise RuntimeError(f"no probabilities after 8 tokens: {str(obj)[:200]}")
    pos = obj["completion_probabilities"][0]
    lp = np.full(vocab, -np.inf)
    tops = pos["top_logprobs"]
    lp[np.fromiter((t["id"] for t in tops), dtype=np.int64, count=len(tops))] = np.fromiter(
        (t["logprob"] for t in tops), dtype=np.float64, count=len(tops)
    )
    eos = obj.get("stop_type") == "eos" and len(obj["completion_probabilities"]) == 1
    return int(pos["id"]), lp, eos


def topk(lp: np.ndarray, k: int) -> dict[int, float]:
    idx = np.argpartition(-lp, k)[:k]
    idx = idx[np.argsort(-lp[idx])]
    return {int(i): float(lp[i]) for i in idx}


def measure(a: argparse.Namespace) -> None:
    ref = httpx.Client(base_url=a.ref, timeout=120)
    cand = httpx.Client(base_url=a.cand, timeout=120)
    out = Path(a.out)
    done = sum(1 for _ in out.open()) if out.exists() else 0
    start_prompt = 0
    if done:
        rows = [orjson.loads(x) for x in out.read_bytes().splitlines()]
        start_prompt = max(r["prompt"] for r in rows) + 1
    t_end = time.monotonic() + a.max_seconds
    with out.open("a") as f:
        for pi in range(start_prompt, len(PROMPTS) * 100):
            if done >= a.positions or time.monotonic() > t_end:
                break
            text = PROMPTS[pi % len(PROMPTS)]
            if pi >= len(PROMPTS):
                text = f"{text} (variant {pi // len(PROMPTS)}: answer differently)"
            tmpl = ref.post(
                "/apply-template", json={"messages": [{"role": "user", "content": text}]}
            )
            prompt = tmpl.json()["prompt"]
            tok = ref.post("/tokenize", json={"content": prompt, "parse_special": True})
            ids: list[int] = tok.json()["tokens"]
            for step in range(a.max_answer):
                if done >= a.positions or time.monotonic() > t_end:
                    break
                t0 = time.perf_counter()
                rid, p, eos = full_dist(ref, ids, a.vocab)
                _, q, _ = full_dist(cand, ids, a.vocab)
                row: dict[str, Any] = {"prompt": pi, "step": step, "full": kl_full(p, q)}
                row["top1_same"] = int(np.argmax(p)) == int(np.argmax(q))
                row["ref_tail_gt1e3"] = float(np.sum(np.exp(np.sort(p)[:-1000])))
                for k in a.ks:
                    pk, qk = topk(p, k), topk(q, k)
                    row[f"k{k}"] = kl_topk(pk, qk)
                    row[f"lb{k}"] = kl_lower_bound(pk, qk)
                row["s"] = round(time.perf_counter() - t0, 3)
                f.write(json.dumps(row) + "\n")
                f.flush()
                done += 1
                if eos:
                    break
                ids.append(rid)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation: does the estimate order positions as the exact KL does?"""
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def summarize(path: Path, ks: list[int]) -> dict[str, Any]:
    rows = [orjson.loads(x) for x in path.read_bytes().splitlines()]
    full = np.array([r["full"] for r in rows])
    res: dict[str, Any] = {
        "positions": len(rows),
        "prompts": len({r["prompt"] for r in rows}),
        "full_mean_kl": round(float(full.mean()), 5),
        "full_p99_kl": round(float(np.quantile(full, 0.99)), 4),
        "same_top1_pct": round(100 * sum(r["top1_same"] for r in rows) / len(rows), 2),
        "seconds_per_position_median": statistics.median(r["s"] for r in rows),
    }
    for k in ks:
        for name, col in (("topk", f"k{k}"), ("lower_bound", f"lb{k}")):
            est = np.array([r[col] for r in rows])
            err = est - full
            big = full > 1e-3
            rel = np.abs(err[big]) / full[big] if big.any() else np.array([math.nan])
            res[f"k{k}_{name}"] = {
                "mean_kl": round(float(est.mean()), 5),
                "mean_kl_rel_error_pct": round(
                    100 * float((est.mean() - full.mean()) / full.mean()), 2
                ),
                "p99_kl": round(float(np.quantile(est, 0.99)), 4),
                "abs_error_median": float(f"{np.median(np.abs(err)):.3g}"),
                "abs_error_p99": float(f"{np.quantile(np.abs(err), 0.99):.3g}"),
                "rel_error_median_pct_where_kl_gt_1e-3": round(100 * float(np.median(rel)), 2),
                "underestimates_pct": round(100 * float(np.mean(err < -1e-9)), 1),
                "spearman_with_full": round(_spearman(est, full), 4),
            }
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", help="reference llama.cpp URL (default: start the local pair)")
    ap.add_argument("--cand", help="candidate llama.cpp URL")
    ap.add_argument("--positions", type=int, default=3000)
    ap.add_argument("--max-answer", type=int, default=160, help="tokens per prompt at most")
    ap.add_argument("--max-seconds", type=float, default=3600)
    ap.add_argument("--vocab", type=int, default=49152)
    ap.add_argument("--ks", type=int, nargs="+", default=[5, 20, 100])
    ap.add_argument("--out", default="kl_topk_error.jsonl")
    ap.add_argument("--summarize", action="store_true", help="only summarize --out")
    a = ap.parse_args()
    if not a.summarize:
        if a.ref and a.cand:
            measure(a)
        else:
            from quantlab.localpair import LocalPair

            with LocalPair() as pair:
                a.ref, a.cand = (e.base_url for e in pair.endpoints)
                measure(a)
    print(json.dumps(summarize(Path(a.out), a.ks)))


if __name__ == "__main__":
    main()
