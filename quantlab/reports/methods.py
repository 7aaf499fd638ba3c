"""What each quantization method is, in one correct line, for reports and the risk brief.

The descriptions follow the papers (see docs in research/quant_eval.md): GPTQ is "GPT
Quantization" with second-order error compensation, not "gradient" anything; AWQ protects
the channels that *activations* mark as salient, not the largest weights.
"""

from __future__ import annotations

import re

from quantlab.records import Endpoint

#: method key -> one-line description.
METHODS: dict[str, str] = {
    "bf16": "BF16: unquantized bfloat16 weights (the reference precision).",
    "f16": "F16: unquantized float16 weights.",
    "gptq": (
        "GPTQ (Frantar et al. 2022): one-shot post-training weight quantization, layer by "
        "layer, that uses approximate second-order (Hessian) information from calibration "
        "data to compensate each rounding error in the weights not yet quantized; sensitive "
        "to the calibration set, group size, act-order and damping."
    ),
    "awq": (
        "AWQ (Lin et al. 2023): activation-aware weight quantization; the ~1 % of weight "
        "channels that activation magnitudes on calibration data mark as salient are scaled "
        "up before quantizing so they lose less; no backpropagation or reconstruction, so it "
        "overfits the calibration set less."
    ),
    "fp8": (
        "FP8: 8-bit floating-point weights (and activations in W8A8 schemes) with per-tensor "
        "or per-channel scales; reported practically lossless on Llama 3.1 (Kurtic et al. "
        "2024)."
    ),
    "int8": (
        "INT8 W8A8: 8-bit integer weights and activations (e.g. SmoothQuant-style scaling); "
        "about 1–3 % loss when tuned well (Kurtic et al. 2024)."
    ),
    "bitsandbytes": (
        "bitsandbytes: quantized at load time (NF4 4-bit or LLM.int8 8-bit), no calibration data."
    ),
    "q4_0": (
        "GGUF Q4_0: block-wise 4-bit round-to-nearest, one scale per block of 32 weights, no "
        "calibration data."
    ),
    "q4_1": (
        "GGUF Q4_1: block-wise 4-bit round-to-nearest with a scale and a minimum per block of "
        "32 weights, no calibration data."
    ),
    "q8_0": ("GGUF Q8_0: block-wise 8-bit round-to-nearest, one scale per block of 32 weights."),
    "q5_0": "GGUF Q5_0: block-wise 5-bit round-to-nearest, one scale per block of 32 weights.",
    "k-quant": (
        "GGUF k-quant (Q2_K…Q6_K): super-blocks of 256 weights split into sub-blocks with "
        "their own quantized scales (and minimums); the _S/_M/_L mixes keep some tensors at "
        "higher precision."
    ),
}

# Order matters: the first pattern found names the method.
_PATTERNS: tuple[tuple[str, str], ...] = (
    ("gptq", r"gptq"),
    ("awq", r"awq"),
    ("fp8", r"fp8|float8|w8a8[-_]?fp8"),
    ("int8", r"w8a8|int8|smoothquant"),
    ("bitsandbytes", r"bitsandbytes|bnb|nf4"),
    ("k-quant", r"q[2-6]_k(_[sml])?"),
    ("q4_0", r"q4_0"),
    ("q4_1", r"q4_1"),
    ("q5_0", r"q5_0"),
    ("q8_0", r"q8_0"),
    ("bf16", r"bf16|bfloat16"),
    ("f16", r"(?<![a-z])f16|fp16|float16"),
)


def method_of(endpoint: Endpoint | None, name: str = "", model: str | None = None) -> str | None:
    """The method key for a lane, from what the server said (``quantization``), else its
    model id or file, else its lane name; None when nothing says."""
    candidates: list[str] = []
    if endpoint is not None:
        candidates += [endpoint.quantization or "", endpoint.model or "", endpoint.model_path or ""]
    candidates += [model or "", name]
    for text in candidates:
        low = text.lower()
        if not low:
            continue
        for key, pattern in _PATTERNS:
            if re.search(pattern, low):
                return key
    return None


def describe(method: str | None) -> str | None:
    """The one-line description of a method key (None for an unknown or missing one)."""
    return METHODS.get(method) if method else None
