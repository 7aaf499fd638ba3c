"""vLLM: how to recognise it, count with its tokenizer, bust its cache and start it.

Read from vLLM 0.26's sources: ``/v1/models`` cards say ``owned_by: "vllm"`` and carry
``max_model_len``; ``/version`` is ``{"version": "0.26.0"}``; ``POST /tokenize`` (at the
root, not under ``/v1``) takes ``{"model", "prompt"}`` or ``{"model", "messages",
"add_generation_prompt"}`` and answers ``{"count", "max_model_len", "tokens",
"token_strs"}`` — but only for a body sent as ``Content-Type: application/json``: its
``validate_json_request`` dependency answers anything else with a 400. A per-request
``cache_salt`` keeps a request out of the prefix cache.

Launching: ``--gpu-memory-utilization`` is a fraction of the *whole* GPU, so the servers'
fractions must sum below 1, and two servers profiling free memory at once disturb each
other (vLLM issues #14376, #17979): they start one after the other. ``--dtype`` is left
to the model (``auto``) unless asked: older releases refuse bfloat16 with AWQ. vLLM 0.26
has no GGUF loader, so a ``.gguf`` file cannot be served by it.

On several GPUs a server uses ``tensor × pipeline × data`` parallel GPUs
(``--tensor-parallel-size``/``-tp``, ``--pipeline-parallel-size``/``-pp``,
``--data-parallel-size``/``-dp``), the first that many of its ``CUDA_VISIBLE_DEVICES``,
and takes its ``--gpu-memory-utilization`` on each of them.
"""

from __future__ import annotations

import importlib.util
import shlex
import shutil
import sys
from collections.abc import Sequence
from typing import Any

from quantlab.backends.base import (
    Messages,
    MetricNames,
    PostJson,
    Probe,
    ServeSpec,
    positive_int,
    token_count,
    version_of,
)
from quantlab.records import Endpoint

#: Sum of the servers' fractions of the GPU must stay below this (CUDA contexts, other
#: processes and fragmentation need the rest).
MAX_FRACTION_SUM = 0.95


class VllmLaunchError(ValueError):
    """A launch request that cannot work (fractions, no vLLM here, a GGUF file)."""


class Vllm:
    name = "vllm"
    metric_prefix = "vllm:"
    metrics = MetricNames(
        kv_cache=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        running=("vllm:num_requests_running",),
        waiting=("vllm:num_requests_waiting",),
        prompt_tokens=("vllm:prompt_tokens_total",),
        generation_tokens=("vllm:generation_tokens_total",),
        preemptions=("vllm:num_preemptions_total", "vllm:num_preemptions"),
    )
    process_words: tuple[str, ...] = ("vllm",)
    scores_prompts = True

    def matches(self, probe: Probe) -> bool:
        return probe.card.get("owned_by") == "vllm" or "max_model_len" in probe.card

    def apply_facts(self, ep: Endpoint, probe: Probe) -> None:
        ep.max_context = positive_int(probe.card.get("max_model_len"))
        ep.server_version = version_of(probe) or ep.server_version

    async def count_tokens(
        self, post: PostJson, model: str | None, messages: Messages | None, text: str | None
    ) -> int | None:
        body: dict[str, Any]
        if messages is not None:
            # The prompt a chat request really sends: template plus the assistant's turn.
            body = {"messages": messages, "add_generation_prompt": True}
        else:
            body = {"prompt": text}
        if model:
            body["model"] = model
        ans = await post("/tokenize", body)
        return token_count(ans.get("count") if isinstance(ans, dict) else None)

    def cold_cache_fields(self, uid: str) -> tuple[dict[str, Any] | None, str]:
        return {"cache_salt": uid}, "cache_salt"

    def context_note(self, ep: Endpoint) -> str:
        return ""

    def launch_argv(self, spec: ServeSpec, program: Sequence[str]) -> list[str]:
        """``vllm serve MODEL`` with every flag explicit, so the log says what ran."""
        if spec.model.lower().endswith(".gguf"):
            raise VllmLaunchError(
                f"{spec.name}: {spec.model} is a GGUF file; vLLM 0.26 has no GGUF loader "
                "(serve a Hugging Face folder or repository instead)"
            )
        args = [*program, "serve", spec.model, "--host", spec.host, "--port", str(spec.port)]
        if spec.gpu_memory_utilization is not None:
            args += ["--gpu-memory-utilization", f"{spec.gpu_memory_utilization:.2f}"]
        if spec.quantization:
            args += ["--quantization", spec.quantization]
        args += ["--dtype", spec.dtype or "auto"]
        if spec.max_model_len:
            args += ["--max-model-len", str(spec.max_model_len)]
        if spec.tensor_parallel_size is not None:
            args += ["--tensor-parallel-size", str(spec.tensor_parallel_size)]
        args += ["--served-model-name", spec.served_model_name or spec.name]
        return args + list(spec.extra_args)


VLLM = Vllm()


def check_fractions(fractions: Sequence[float], names: Sequence[str] | None = None) -> None:
    """Refuse fractions that cannot all fit on one GPU: each in (0, 1], sum below 0.95.
    ``names`` (the servers') label the fractions in the message."""
    labels = list(names) if names is not None else [""] * len(fractions)
    for f, label in zip(fractions, labels, strict=True):
        if not 0 < f <= 1:
            who = f"{label}: " if label else ""
            raise VllmLaunchError(f"{who}--gpu-memory-utilization {f} is not a fraction in (0, 1]")
    total = sum(fractions)
    if total >= MAX_FRACTION_SUM:
        shown = " + ".join(
            f"{label} {f:g}" if label else f"{f:g}"
            for f, label in zip(fractions, labels, strict=True)
        )
        raise VllmLaunchError(
            f"the servers' --gpu-memory-utilization fractions sum to {total:.2f} ({shown}): "
            f"each is a fraction of the WHOLE GPU, so together they must stay below "
            f"{MAX_FRACTION_SUM} (e.g. 0.45 and 0.40)"
        )


def default_fractions(n: int) -> list[float]:
    """Equal shares of 0.85 of the GPU for ``n`` servers (two: 0.45 and 0.40)."""
    if n == 2:
        return [0.45, 0.40]
    share = int(0.85 / max(n, 1) * 100 + 1e-6) / 100
    return [share] * n


#: vLLM's parallel-size flags (long, short), by the size they set.
_PARALLEL_FLAGS = {
    "--tensor-parallel-size": "tp",
    "-tp": "tp",
    "--pipeline-parallel-size": "pp",
    "-pp": "pp",
    "--data-parallel-size": "dp",
    "-dp": "dp",
}


def parallel_sizes(args: Sequence[str]) -> dict[str, int]:
    """The ``tp`` / ``pp`` / ``dp`` sizes a vLLM argument list sets, in the forms vLLM's
    parser takes (``--tensor-parallel-size 4``, ``-tp=4``, ``--tensor_parallel_size 4``);
    the last one given wins, as it does in vLLM."""
    sizes: dict[str, int] = {}
    i = 0
    while i < len(args):
        flag, eq, value = args[i].partition("=")
        if flag.startswith("--"):
            flag = "--" + flag[2:].replace("_", "-")
        key = _PARALLEL_FLAGS.get(flag)
        i += 1
        if key is None:
            continue
        if not eq:
            value = args[i] if i < len(args) else ""
            i += 1
        try:
            size = int(value)
        except ValueError:
            size = 0
        if size < 1:
            raise VllmLaunchError(f"{flag} {value!r} is not a positive whole number")
        sizes[key] = size
    return sizes


def find_vllm(explicit: str | None = None) -> list[str]:
    """The command that runs vLLM's CLI: an explicit one (split like a shell would, never
    run by one), ``vllm`` on PATH, or the installed module."""
    if explicit:
        return shlex.split(explicit)
    exe = shutil.which("vllm")
    if exe:
        return [exe]
    try:
        if importlib.util.find_spec("vllm") is not None:
            return [sys.executable, "-m", "vllm.entrypoints.cli.main"]
    except (ImportError, ValueError):
        pass
    raise VllmLaunchError(
        "vLLM is not installed here: `pip install 'quantlab[vllm]'` on a GPU machine, or pass "
        "--vllm-bin PATH"
    )
