"""An 8B-Llama-shaped model folder for ``vllm serve --load-format dummy`` (random weights).

The point is a GPU-bound server: a 135M model's decode step is mostly vLLM's own CPU work,
so two runs of ``vllm bench serve`` differ by tens of percent and no client can be shown to
agree with it within 5 %. Random weights make garbage text, which a fixed-length
benchmark (``ignore_eos``) does not mind. Llama-3-8B's shape, with SmolLM2's tokenizer
(49,152 tokens) copied from SRC so that both tools count the same tokens.

    python dummy_model.py SRC DST
"""

import json
import shutil
import sys
from pathlib import Path

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
for f in src.iterdir():
    if f.is_file() and f.name != "config.json" and not f.name.endswith(".safetensors"):
        shutil.copy(f, dst / f.name)
tok = json.loads((src / "config.json").read_text())
config = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 49152,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "bos_token_id": tok.get("bos_token_id", 1),
    "eos_token_id": tok.get("eos_token_id", 2),
}
(dst / "config.json").write_text(json.dumps(config, indent=1))
print("model folder:", dst, sorted(p.name for p in dst.iterdir()))
