"""Serving backends: everything that differs between vLLM, llama.cpp and other
OpenAI-compatible servers, behind one Protocol.

Design. A ``Backend`` (``base.py``) is a stateless object per server kind — ``vllm.py``,
``llamacpp.py``, ``openai.py`` (the generic fallback) — as harlequin keeps one adapter per
database. It answers every question where the kinds differ: does a discovery probe look
like me (``matches``), which facts do I report (``apply_facts``), how do I count tokens
(``count_tokens``, given a ``post`` callable so the backend holds no connection), which
request fields keep a request out of my prefix cache (``cold_cache_fields``), what my
Prometheus names are (``metrics``), what a context note says (``context_note``) and how I
am started (``launch_argv``, an argument list, never a shell string).

An ``Endpoint`` keeps only the backend's *name* (``"vllm"``, ``"llama.cpp"``, ``"other"``:
the strings sessions already hold); :func:`for_endpoint` maps it back to the object. So
callers write ``for_endpoint(ep).cold_cache_fields(uid)``, and no module outside this
package compares ``ep.backend`` with a server's name. Adding a server kind is one module
here and one line in ``DETECTION_ORDER``.
"""

from __future__ import annotations

from quantlab.backends.base import (
    Backend,
    MetricNames,
    NotLaunchable,
    Probe,
    ServeSpec,
)
from quantlab.backends.llamacpp import LLAMA_CPP
from quantlab.backends.openai import OPENAI
from quantlab.backends.vllm import VLLM
from quantlab.records import Endpoint

#: Asked in this order; the generic OpenAI backend matches anything, so it comes last.
DETECTION_ORDER: tuple[Backend, ...] = (LLAMA_CPP, VLLM, OPENAI)
#: Words that mark a server process in a command line, every kind's.
PROCESS_WORDS: tuple[str, ...] = tuple(w for b in DETECTION_ORDER for w in b.process_words)
#: Backends with a Prometheus page of their own (telemetry reads their names).
WITH_METRICS: tuple[Backend, ...] = (VLLM, LLAMA_CPP)

__all__ = [
    "DETECTION_ORDER",
    "LLAMA_CPP",
    "OPENAI",
    "PROCESS_WORDS",
    "VLLM",
    "WITH_METRICS",
    "Backend",
    "MetricNames",
    "NotLaunchable",
    "Probe",
    "ServeSpec",
    "backend_named",
    "detect",
    "for_endpoint",
]


def detect(probe: Probe) -> Backend:
    """The backend whose answers these are (the generic one when none claims them)."""
    return next(b for b in DETECTION_ORDER if b.matches(probe))


def backend_named(name: str | None) -> Backend:
    """The backend stored under ``name``; unknown or None: the generic OpenAI one."""
    return next((b for b in DETECTION_ORDER if b.name == name), OPENAI)


def for_endpoint(ep: Endpoint) -> Backend:
    """The backend of a (discovered or launched) endpoint."""
    return backend_named(ep.backend)
