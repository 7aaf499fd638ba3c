"""The one seam between quantlab and a kind of server: the ``Backend`` Protocol.

Everything that differs between vLLM, llama.cpp and other OpenAI-compatible servers is a
method or attribute here, so the client, the runner, telemetry and the launchers ask the
endpoint's backend instead of comparing its name to a string.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from quantlab.records import Endpoint, Role

Messages = list[dict[str, str]]
#: POST a JSON body to a path of the server; the parsed answer, or None when it failed.
PostJson = Callable[[str, dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class MetricNames:
    """Prometheus sample names of one server kind, by the figure quantlab shows.

    Each is a tuple of candidates (newest name first): names change between versions."""

    kv_cache: tuple[str, ...] = ()
    running: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()
    prompt_tokens: tuple[str, ...] = ()
    generation_tokens: tuple[str, ...] = ()
    preemptions: tuple[str, ...] = ()


@dataclass(slots=True)
class Probe:
    """What discovery read from a server: ``/v1/models``' card, ``/version``, ``/props``."""

    card: dict[str, Any] = field(default_factory=dict)
    version: Any = None
    props: Any = None


@dataclass(slots=True)
class ServeSpec:
    """One server to start. Each backend turns it into its own command line
    (:meth:`Backend.launch_argv`); a field a backend has no flag for is left out."""

    name: str
    model: str
    port: int = 0
    host: str = "127.0.0.1"
    role: Role = "candidate"
    quantization: str | None = None
    dtype: str = "auto"
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    served_model_name: str | None = None
    extra_args: list[str] = field(default_factory=list)
    #: GPUs the server is placed on, as quantlab counts them (None: inherit, the first
    #: visible GPU); its ``env`` holds the ``CUDA_VISIBLE_DEVICES`` that puts it there.
    gpus: list[int] | None = None
    tensor_parallel_size: int | None = None
    #: Added to quantlab's own environment for this server (nothing: inherit it as is).
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


class NotLaunchable(Exception):
    """This kind of server is not one quantlab can start."""


class Backend(Protocol):
    """One kind of server. Implementations are stateless singletons (see ``registry``)."""

    #: The name stored on ``Endpoint.backend`` and in sessions ("vllm", "llama.cpp", "other").
    name: str
    #: Prefix of its Prometheus names ("vllm:"); "" when it has none of its own.
    metric_prefix: str
    metrics: MetricNames
    #: Words in a server process's command line (to map GPU processes to lanes).
    process_words: tuple[str, ...]
    #: Scores a given text: /v1/completions with ``prompt_logprobs`` and /tokenize ids
    #: (teacher-forced token agreement, quantlab.agreement.teacher).
    scores_prompts: bool

    def matches(self, probe: Probe) -> bool:
        """Whether the discovered answers are this kind of server's."""
        ...

    def apply_facts(self, ep: Endpoint, probe: Probe) -> None:
        """Fill the endpoint's discovered facts (context, version, quantization, slots)."""
        ...

    async def count_tokens(
        self, post: PostJson, model: str | None, messages: Messages | None, text: str | None
    ) -> int | None:
        """Tokens in ``messages`` (chat template applied) or ``text``; None if it can't."""
        ...

    def cold_cache_fields(self, uid: str) -> tuple[dict[str, Any] | None, str]:
        """Request fields that keep this request out of the prefix cache, and their words
        for the run's notes (e.g. ``{"cache_salt": uid}``, "cache_salt")."""
        ...

    def context_note(self, ep: Endpoint) -> str:
        """Words after "N-token context" when a request does not fit (e.g. " per slot")."""
        ...

    def launch_argv(self, spec: ServeSpec, program: Sequence[str]) -> list[str]:
        """The exact argument list that starts ``spec`` (never a shell string).
        Raises NotLaunchable for servers quantlab does not start."""
        ...


def positive_int(v: Any) -> int | None:
    """``v`` when it is a positive int (not a bool), else None."""
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def token_count(v: Any) -> int | None:
    """A token count from a server's answer: a non-negative int, else None."""
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def text_or_none(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def version_of(probe: Probe) -> str | None:
    """The ``{"version": …}`` of a ``/version`` answer."""
    return text_or_none(probe.version.get("version")) if isinstance(probe.version, dict) else None
