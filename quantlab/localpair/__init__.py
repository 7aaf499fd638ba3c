"""The embedded local pair: SmolLM2-135M-Instruct in BF16 (reference) and Q4_0 (candidate),
each served by a real llama.cpp server (the ``xllamacpp`` wheel) in a child process.

``ensure_models`` builds the two GGUF files once into the user cache; ``LocalPair`` starts
and supervises the servers and hands back their ``Endpoint`` records.

Names are imported on first use, so that a server child (``python -m
quantlab.localpair.serve``) does not pay for numpy, gguf and httpx at start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quantlab.localpair.models import (
        ModelBuildError,
        PairFiles,
        Progress,
        SourceInfo,
        default_cache_dir,
        ensure_models,
    )
    from quantlab.localpair.progress import TextProgress
    from quantlab.localpair.supervisor import LocalPair, LocalPairError

_WHERE = {
    "ModelBuildError": "models",
    "PairFiles": "models",
    "Progress": "models",
    "SourceInfo": "models",
    "default_cache_dir": "models",
    "ensure_models": "models",
    "TextProgress": "progress",
    "LocalPair": "supervisor",
    "LocalPairError": "supervisor",
}

__all__ = [
    "LocalPair",
    "LocalPairError",
    "ModelBuildError",
    "PairFiles",
    "Progress",
    "SourceInfo",
    "TextProgress",
    "default_cache_dir",
    "ensure_models",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
