"""llama.cpp's server: recognised by ``/props``; its own tokenize and template routes.

``/props`` has ``default_generation_settings.n_ctx`` (the context one request may use),
``total_slots``, ``build_info`` and ``model_path``; ``/v1/models`` cards say ``owned_by:
"llamacpp"`` with a ``meta`` (``n_ctx_train``, ``ftype``). Token counting is two calls:
``POST /apply-template {"messages"}`` → ``{"prompt"}``, then ``POST /tokenize
{"content"}`` → ``{"tokens": [...]}``. ``cache_prompt: false`` keeps a request out of the
slot's prompt cache. With several slots and no unified KV cache each slot has its share of
the context, hence "per slot" in the notes. Metrics (``--metrics``) are ``llamacpp:*``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from quantlab.backends.base import (
    Messages,
    MetricNames,
    PostJson,
    Probe,
    ServeSpec,
    positive_int,
    text_or_none,
)
from quantlab.records import Endpoint


def llama_build(v: Any) -> str | None:
    """llama.cpp's build, or None for the placeholder of a build without git facts
    ("b0-unknown", as xllamacpp's wheels report): no version beats a made-up one."""
    s = text_or_none(v)
    return None if s is None or s.startswith("b0-") or s.lower() == "unknown" else s


def facts_from_props(props: Any) -> dict[str, Any]:
    """The endpoint facts ``/props`` holds (used by discovery and by the local pair)."""
    props = props if isinstance(props, dict) else {}
    dgs = props.get("default_generation_settings")
    dgs = dgs if isinstance(dgs, dict) else {}
    return {
        "max_context": positive_int(dgs.get("n_ctx")),
        "server_version": llama_build(props.get("build_info")),
        "quantization": text_or_none(props.get("model_ftype")),
        "slots": positive_int(props.get("total_slots")),
        "model_path": text_or_none(props.get("model_path")),
    }


async def count_with_template(
    post: PostJson, messages: Messages | None, text: str | None
) -> int | None:
    """llama.cpp's way: apply the chat template, then tokenize the prompt."""
    if messages is not None:
        templ = await post("/apply-template", {"messages": messages})
        text = templ.get("prompt") if isinstance(templ, dict) else None
        if not isinstance(text, str):
            return None
    ans = await post("/tokenize", {"content": text})
    tokens = ans.get("tokens") if isinstance(ans, dict) else None
    return len(tokens) if isinstance(tokens, list) else None


class LlamaCpp:
    name = "llama.cpp"
    metric_prefix = "llamacpp:"
    metrics = MetricNames(
        kv_cache=("llamacpp:kv_cache_usage_ratio",),
        running=("llamacpp:requests_processing",),
        waiting=("llamacpp:requests_deferred",),
        prompt_tokens=("llamacpp:prompt_tokens_total",),
        generation_tokens=("llamacpp:tokens_predicted_total",),
    )
    process_words: tuple[str, ...] = ("llama-server", "llama_cpp", "quantlab.localpair.serve")
    scores_prompts = False

    def matches(self, probe: Probe) -> bool:
        props = probe.props
        in_props = isinstance(props, dict) and (
            "default_generation_settings" in props or "total_slots" in props
        )
        return in_props or probe.card.get("owned_by") == "llamacpp"

    def apply_facts(self, ep: Endpoint, probe: Probe) -> None:
        facts = facts_from_props(probe.props)
        meta = probe.card.get("meta")
        meta = meta if isinstance(meta, dict) else {}
        ep.max_context = (
            facts["max_context"]
            or positive_int(meta.get("n_ctx"))
            or positive_int(meta.get("n_ctx_train"))
        )
        ep.server_version = facts["server_version"] or ep.server_version
        ep.quantization = text_or_none(meta.get("ftype")) or facts["quantization"]
        ep.slots = facts["slots"]
        ep.model_path = facts["model_path"]

    async def count_tokens(
        self, post: PostJson, model: str | None, messages: Messages | None, text: str | None
    ) -> int | None:
        return await count_with_template(post, messages, text)

    def cold_cache_fields(self, uid: str) -> tuple[dict[str, Any] | None, str]:
        return {"cache_prompt": False}, "cache_prompt=false"

    def context_note(self, ep: Endpoint) -> str:
        return " per slot" if (ep.slots or 1) > 1 else ""

    def launch_argv(self, spec: ServeSpec, program: Sequence[str]) -> list[str]:
        """``python -m quantlab.localpair.serve`` (the xllamacpp wheel) for ``spec``;
        ``max_model_len`` is its KV cache (``--ctx``), ``extra_args`` the rest."""
        args = [*program, "--model", spec.model, "--host", spec.host, "--port", str(spec.port)]
        if spec.max_model_len:
            args += ["--ctx", str(spec.max_model_len)]
        args += ["--name", spec.served_model_name or spec.name]
        return args + list(spec.extra_args)


LLAMA_CPP = LlamaCpp()
