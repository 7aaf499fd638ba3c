"""The embedded local pair: SmolLM2-135M-Instruct in BF16 (reference) and Q4_0 (candidate),
each served by a real llama.cpp server (the ``xllamacpp`` wheel) in a child process.

``ensure_models`` builds the two GGUF files once into the user cache; ``LocalPair`` starts
and supervises the servers and hands back their ``Endpoint`` records.
"""

from quantlab.localpair.models import (
    ModelBuildError,
    PairFiles,
    Progress,
    SourceInfo,
    default_cache_dir,
    ensure_models,
)
from quantlab.localpair.progress import TextProgress
from quantlab.localpair.supervisor import (
    LocalPair,
    LocalPairError,
    install_signal_handlers,
    stop_all,
)

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
    "install_signal_handlers",
    "stop_all",
]
