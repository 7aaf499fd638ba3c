"""Start-up time of the local pair and each lane's speed on this machine; one JSON object.

- ``startup_s``: LocalPair.start() with the models already built (spawn both servers ->
  both answer /health), median of ``--starts`` runs;
- ``<lane>_decode_tok_s`` / ``<lane>_prompt_tok_s``: llama.cpp's own timings for a
  128-token answer (EOS ignored, so every lane decodes the same count), the lane alone,
  median of ``--runs``;
- ``both_at_once_<lane>_decode_tok_s``: the same request sent to both lanes at once, as
  the chat does (the two servers then share the CPU cores);
- ``build_s``: the first build's time, as recorded in the manifest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from quantlab.localpair import LocalPair, ensure_models
from quantlab.records import Endpoint

PROMPT = "Write a long story about a dragon who learns to bake bread."
TOKENS = 128


def _timings(ep: Endpoint) -> dict[str, Any]:
    body = {
        "model": ep.model,
        "messages": [{"role": "user", "content": PROMPT}],
        "temperature": 0.0,
        "max_tokens": TOKENS,
        "ignore_eos": True,
        "cache_prompt": False,
    }
    r = httpx.post(ep.base_url + "/v1/chat/completions", json=body, timeout=300, trust_env=False)
    r.raise_for_status()
    return r.json()["timings"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    files = ensure_models()
    manifest = json.loads(files.manifest.read_text())
    starts: list[float] = []
    for _ in range(args.starts):
        pair = LocalPair()
        pair.start()
        assert pair.startup_s is not None
        starts.append(pair.startup_s)
        pair.stop()

    out: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "threads_per_server": LocalPair().threads,
        "build_s": manifest.get("build_seconds"),
        "startup_s": round(statistics.median(starts), 2),
        "startup_s_all": [round(s, 2) for s in starts],
    }
    with LocalPair() as pair:
        for ep in pair.endpoints:
            _timings(ep)  # warm-up
            runs = [_timings(ep) for _ in range(args.runs)]
            decode = statistics.median(t["predicted_per_second"] for t in runs)
            prompt = statistics.median(t["prompt_per_second"] for t in runs)
            out[f"{ep.name}_decode_tok_s"] = round(decode, 1)
            out[f"{ep.name}_prompt_tok_s"] = round(prompt, 1)
        with ThreadPoolExecutor(len(pair.endpoints)) as pool:
            both: dict[str, list[float]] = {e.name: [] for e in pair.endpoints}
            for _ in range(args.runs):
                results = list(pool.map(_timings, pair.endpoints))
                for ep, t in zip(pair.endpoints, results, strict=True):
                    both[ep.name].append(t["predicted_per_second"])
        for name, values in both.items():
            out[f"both_at_once_{name}_decode_tok_s"] = round(statistics.median(values), 1)
    out["load_average_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
