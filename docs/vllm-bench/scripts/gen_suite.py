"""Write quantlab's capacity suite from ``vllm bench serve``'s own random dataset.

The prompts come from vLLM's ``RandomDataset`` with the same tokenizer, input length and
range ratio as the ``vllm bench serve`` runs (another seed, so no prompt is shared), so both
tools send prompts of exactly the same token count through the same chat template. The
sampling fields match what ``vllm bench serve --temperature 0 --top-p 1`` sends: no seed.

    python gen_suite.py TOKENIZER OUT.json [--cases 64] [--seed 77]
"""

import argparse
import json

from vllm.benchmarks.datasets import RandomDataset
from vllm.tokenizers import get_tokenizer

ap = argparse.ArgumentParser()
ap.add_argument("tokenizer")
ap.add_argument("out")
ap.add_argument("--cases", type=int, default=64)
ap.add_argument("--seed", type=int, default=77)
ap.add_argument("--input-len", type=int, default=256)
ap.add_argument("--output-len", type=int, default=128)
a = ap.parse_args()
tok = get_tokenizer(a.tokenizer)
samples = RandomDataset(random_seed=a.seed).sample(
    tokenizer=tok, num_requests=a.cases, input_len=a.input_len, output_len=a.output_len,
    range_ratio=0.0,
)  # fmt: skip
suite = {
    "schema": "quantlab.suite/1",
    "name": "capacity-bench",
    "description": f"vllm bench serve's random workload: {a.input_len} prompt tokens "
    f"(vLLM's RandomDataset, seed {a.seed}), {a.output_len} output tokens with ignore_eos",
    "kind": "capacity",
    "params": {"temperature": 0.0, "top_p": 1.0, "max_tokens": a.output_len, "seed": None},
    "cases": [
        {"id": f"r{i}", "messages": [{"role": "user", "content": s.prompt}], "group": "load"}
        for i, s in enumerate(samples)
    ],
    "settings": {"levels": [1, 8, 16, 64], "rounds": 6, "min_requests": 24},
}
with open(a.out, "w") as f:
    json.dump(suite, f, indent=1)
lens = [s.prompt_len for s in samples]
print(f"{a.out}: {len(samples)} prompts, prompt tokens {min(lens)}-{max(lens)}")
