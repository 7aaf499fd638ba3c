"""Any other OpenAI-compatible server: only what the OpenAI API itself promises.

Context length from a card's ``max_model_len`` or ``context_length`` when there is one;
token counting tries vLLM's ``/tokenize`` form, then llama.cpp's (many servers copy one);
no cache-busting field (the unique prefix alone does it); no metric names of its own.
quantlab does not start such servers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from quantlab.backends.base import (
    Messages,
    MetricNames,
    NotLaunchable,
    PostJson,
    Probe,
    ServeSpec,
    positive_int,
    version_of,
)
from quantlab.backends.llamacpp import count_with_template
from quantlab.backends.vllm import VLLM
from quantlab.records import Endpoint


class OpenAICompatible:
    name = "other"
    metric_prefix = ""
    metrics = MetricNames()
    process_words: tuple[str, ...] = ("sglang",)
    scores_prompts = False

    def matches(self, probe: Probe) -> bool:
        return True  # the fallback: asked last

    def apply_facts(self, ep: Endpoint, probe: Probe) -> None:
        card = probe.card
        ep.max_context = positive_int(card.get("max_model_len")) or positive_int(
            card.get("context_length")
        )
        ep.server_version = version_of(probe) or ep.server_version

    async def count_tokens(
        self, post: PostJson, model: str | None, messages: Messages | None, text: str | None
    ) -> int | None:
        count = await VLLM.count_tokens(post, model, messages, text)
        if count is None:
            count = await count_with_template(post, messages, text)
        return count

    def cold_cache_fields(self, uid: str) -> tuple[dict[str, Any] | None, str]:
        return None, ""

    def context_note(self, ep: Endpoint) -> str:
        return ""

    def launch_argv(self, spec: ServeSpec, program: Sequence[str]) -> list[str]:
        raise NotLaunchable(f"{spec.name}: quantlab starts vLLM and llama.cpp servers only")


OPENAI = OpenAICompatible()
