"""Serving backends: detection from what real servers answer, each kind's own fields and
names, and the rule that no module outside quantlab/backends/ switches on a server's name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from quantlab.backends import (
    LLAMA_CPP,
    OPENAI,
    VLLM,
    NotLaunchable,
    Probe,
    ServeSpec,
    backend_named,
    detect,
    for_endpoint,
)
from quantlab.records import Endpoint

ROOT = Path(__file__).resolve().parent.parent

#: A card as vLLM 0.26 serves it on /v1/models, and its /version.
VLLM_CARD = {
    "id": "bf16",
    "object": "model",
    "created": 1764633600,
    "owned_by": "vllm",
    "root": "/root/models/smollm2-135m-instruct-bf16",
    "parent": None,
    "max_model_len": 8192,
    "permission": [],
}


def test_a_real_vllm_card_is_vllm_with_its_context_and_version() -> None:
    probe = Probe(card=VLLM_CARD, version={"version": "0.26.0"}, props=None)
    backend = detect(probe)
    assert backend is VLLM
    ep = Endpoint("bf16", "http://127.0.0.1:8000")
    backend.apply_facts(ep, probe)
    assert (ep.max_context, ep.server_version) == (8192, "0.26.0")


def test_llama_cpp_is_known_by_its_props_and_reports_slots() -> None:
    props = {
        "default_generation_settings": {"n_ctx": 8192},
        "total_slots": 4,
        "build_info": "b6000-abc",
        "model_path": "/m.gguf",
    }
    probe = Probe(card={"id": "m", "owned_by": "llamacpp", "meta": {"ftype": "Q4_0"}}, props=props)
    assert detect(probe) is LLAMA_CPP
    ep = Endpoint("q", "http://x")
    LLAMA_CPP.apply_facts(ep, probe)
    assert (ep.max_context, ep.slots, ep.quantization) == (8192, 4, "Q4_0")
    assert LLAMA_CPP.context_note(ep) == " per slot"


def test_anything_else_is_the_generic_openai_backend() -> None:
    probe = Probe(card={"id": "gpt", "owned_by": "someone", "context_length": 32768})
    assert detect(probe) is OPENAI
    ep = Endpoint("o", "http://x")
    OPENAI.apply_facts(ep, probe)
    assert ep.max_context == 32768
    assert backend_named(None) is OPENAI and backend_named("nonsense") is OPENAI


def test_each_backend_busts_its_own_prefix_cache() -> None:
    assert VLLM.cold_cache_fields("u1") == ({"cache_salt": "u1"}, "cache_salt")
    assert LLAMA_CPP.cold_cache_fields("u1") == ({"cache_prompt": False}, "cache_prompt=false")
    assert OPENAI.cold_cache_fields("u1") == (None, "")
    assert for_endpoint(Endpoint("v", "http://x", backend="vllm")) is VLLM


def test_launch_argv_is_a_list_with_dtype_auto_unless_asked() -> None:
    spec = ServeSpec("awq", "Qwen/Q-AWQ", port=8001, quantization="awq")
    argv = VLLM.launch_argv(spec, ["vllm"])
    assert argv[:3] == ["vllm", "serve", "Qwen/Q-AWQ"]
    assert argv[argv.index("--dtype") + 1] == "auto"
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    with pytest.raises(NotLaunchable):
        OPENAI.launch_argv(spec, ["x"])
    pair = LLAMA_CPP.launch_argv(ServeSpec("q", "/m.gguf", max_model_len=4096), ["serve"])
    assert pair[pair.index("--ctx") + 1] == "4096" and pair[pair.index("--host") + 1] == "127.0.0.1"


def test_no_module_outside_backends_switches_on_a_server_name() -> None:
    pattern = re.compile(
        r"""backend\s*(==|!=|\bin\b)|==\s*["'](vllm|llama\.cpp|llamacpp)["']|"""
        r"""["'](vllm|llama\.cpp|llamacpp)["']\s*(==|!=)"""
    )
    offenders = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for folder in ("quantlab", "tui")
        for path in (ROOT / folder).rglob("*.py")
        if "backends" not in path.relative_to(ROOT).parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []
