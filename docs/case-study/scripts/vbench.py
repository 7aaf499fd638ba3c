"""``vllm bench serve`` at several concurrency levels in one process: vLLM's own benchmark
code (``vllm.benchmarks.serve.main``, what the CLI calls), its import paid once.

    python vbench.py LABEL:CONCURRENCY:PROMPTS:SEED … -- <vllm bench serve arguments>

Each run saves ``LABEL-cCONCURRENCY.json`` (give ``--save-result --result-dir DIR``).
"""

from __future__ import annotations

import sys

from vllm.benchmarks.serve import add_cli_args, main
from vllm.utils.argparse_utils import FlexibleArgumentParser

cut = sys.argv.index("--")
for run in sys.argv[1:cut]:
    label, c, n, seed = run.split(":")
    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    args = parser.parse_args(
        [*sys.argv[cut + 1 :], "--max-concurrency", c, "--num-prompts", n, "--seed", seed,
         "--result-filename", f"{label}-c{c}.json"]
    )  # fmt: skip
    print(f"=== vllm bench serve {label}: concurrency {c}, {n} prompts, seed {seed}", flush=True)
    main(args)
