"""The records quantlab passes around and keeps in session files.

Plain dataclasses with explicit ``to_dict``/``from_dict`` so that the session format is
written down in one place and never depends on pickling or on a UI object. Every other
module (client, fan-out, runner, detectors, reports, TUI) speaks in these types.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Role = Literal["reference", "candidate"]
Severity = Literal["info", "warn", "fail"]

#: Fixed failure taxonomy for human annotation (see research/quant_eval.md).
FAILURE_TAGS: tuple[str, ...] = (
    "repetition loop",
    "collapse/garbage",
    "forgot context",
    "hallucination/wrong fact",
    "wrong answer/reasoning",
    "code error",
    "format break",
    "instruction ignored",
    "language switch",
    "truncation",
    "refusal change",
    "other",
)


def new_id() -> str:
    """A short random id: unique enough for exchanges and annotations in one session."""
    return uuid.uuid4().hex[:12]


@dataclass(slots=True)
class Endpoint:
    """One server quantlab talks to. The API key is read at runtime and never serialized."""

    name: str
    base_url: str
    model: str | None = None
    role: Role = "candidate"
    api_key_env: str | None = None
    # Discovered facts (filled by discovery, shown in the lane header).
    backend: str | None = None  # "vllm" | "llama.cpp" | "other"
    server_version: str | None = None
    max_context: int | None = None
    quantization: str | None = None
    pid: int | None = None  # set when quantlab started the server itself
    # Set by LaneClient.discover(): "ok" | "down" | "error" (None: not asked yet), and why.
    status: str | None = None
    status_detail: str | None = None
    slots: int | None = None  # llama.cpp /props total_slots (parallel requests served)
    model_path: str | None = None  # llama.cpp /props model_path
    dcgm_url: str | None = None  # the server host's dcgm-exporter /metrics (remote GPUs)
    gpus: list[int] | None = None  # the GPUs `quantlab up` placed the server on (--gpus)

    def to_dict(self) -> dict[str, Any]:
        """Serialize without secrets: only the *name* of the key's variable is kept."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Endpoint:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


@dataclass(slots=True)
class SamplingParams:
    """Every sampling parameter is sent explicitly: servers fill unset ones from the model's
    own generation_config, and two lanes would then not be sampled alike."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int | None = 0
    system_prompt: str | None = None
    stop: list[str] | None = None
    #: Top-k log-probabilities asked of every lane (token-level agreement with the
    #: reference, quantlab/agreement/); 0 or None: not asked. 20 is vLLM's default cap.
    top_logprobs: int | None = 20

    def request_fields(self) -> dict[str, Any]:
        """The JSON fields sent on every chat request (the system prompt travels as a
        message, not here)."""
        body: dict[str, Any] = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
        }
        if self.seed is not None:
            body["seed"] = self.seed
        if self.stop:
            body["stop"] = list(self.stop)
        if self.top_logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = self.top_logprobs
        return body

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SamplingParams:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


@dataclass(slots=True)
class Timing:
    """Client-side timing, taken where the bytes arrive, under ``vllm bench serve``'s
    definitions and names (docs/metrics.md says each one exactly).

    ttft_ms: request sent -> first chunk with a non-empty ``choices`` (the role chunk
    counts). itl_ms: gaps between successive chunks with choices. e2e_ms: request sent ->
    last chunk with choices (the usage chunk and ``[DONE]`` excluded); for a failed lane,
    the time until it failed. tpot_ms: (e2e - ttft) / (output_tokens - 1).
    tokens_per_s (decode rate): 1000 / tpot_ms. Kept beside them under their own names:
    ttfc_ms (first non-empty content) and last_byte_ms (the stream's last byte).
    """

    ttft_ms: float | None = None
    itl_ms: list[float] = field(default_factory=list)
    e2e_ms: float | None = None
    output_tokens: int | None = None
    tokens_per_s: float | None = None
    tokens_counted: bool = False  # True when no server usage came and tokens were counted
    tpot_ms: float | None = None
    ttfc_ms: float | None = None
    last_byte_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        # Explicit, not asdict(): asdict deep-copies every ITL float (~0.5 ms an answer).
        return {
            "ttft_ms": self.ttft_ms,
            "itl_ms": list(self.itl_ms),
            "e2e_ms": self.e2e_ms,
            "output_tokens": self.output_tokens,
            "tokens_per_s": self.tokens_per_s,
            "tokens_counted": self.tokens_counted,
            "tpot_ms": self.tpot_ms,
            "ttfc_ms": self.ttfc_ms,
            "last_byte_ms": self.last_byte_ms,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Timing:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


@dataclass(slots=True)
class LaneError:
    """Why a lane failed, as a value. kind: "connect" | "http" | "stream" | "timeout" |
    "protocol" | "context" | "cancelled"."""

    kind: str
    message: str
    status: int | None = None

    def __str__(self) -> str:
        head = f"{self.kind}" + (f" {self.status}" if self.status else "")
        return f"{head}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LaneError:
        return cls(kind=d["kind"], message=d["message"], status=d.get("status"))


@dataclass(slots=True)
class Finding:
    """What a detector reports about one lane's answer."""

    detector: str
    lane: str
    severity: Severity
    score: float
    evidence: str
    status: Literal["open", "confirmed", "dismissed"] = "open"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


@dataclass(slots=True)
class LaneResult:
    """One lane's answer to one exchange."""

    lane: str
    model: str | None = None
    text: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    timing: Timing = field(default_factory=Timing)
    error: LaneError | None = None
    findings: list[Finding] = field(default_factory=list)
    server_timings: dict[str, Any] | None = None  # llama.cpp's own "timings", when sent
    #: Why quantlab stopped reading this answer itself (runaway cap), else None. The lane
    #: is not failed: its text up to the cap is kept.
    cut_off: str | None = None
    #: Protocol notes: what the server sent wrong that the client worked around.
    notes: list[str] = field(default_factory=list)
    #: Token-level agreement with the reference (quantlab.agreement.Agreement.to_dict()).
    agreement: dict[str, Any] | None = None
    #: The raw per-chunk ``choices[0].logprobs`` (a quantlab.agreement.logprobs.RawLogprobs),
    #: in memory only: written as null (~1 MB an answer at k = 20); the fan-out turns them
    #: into ``agreement`` and drops them.
    logprobs: Any = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def stopped(self) -> bool:
        """Stopped (Esc, a cancelled run) before the answer ended: ``text`` is what had
        come. Kept in the session as ``error.kind == "cancelled"``; reports do not judge it."""
        return self.error is not None and self.error.kind == "cancelled"

    def to_dict(self) -> dict[str, Any]:
        return {
            "lane": self.lane,
            "model": self.model,
            "text": self.text,
            "finish_reason": self.finish_reason,
            "usage": self.usage,
            "timing": self.timing.to_dict(),
            "error": self.error.to_dict() if self.error else None,
            "findings": [f.to_dict() for f in self.findings],
            "server_timings": self.server_timings,
            "cut_off": self.cut_off,
            "notes": list(self.notes),
            "agreement": self.agreement,
            "logprobs": None,  # never written (see the field)
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LaneResult:
        return cls(
            lane=d["lane"],
            model=d.get("model"),
            text=d.get("text", ""),
            finish_reason=d.get("finish_reason"),
            usage=d.get("usage"),
            timing=Timing.from_dict(d.get("timing") or {}),
            error=LaneError.from_dict(d["error"]) if d.get("error") else None,
            findings=[Finding.from_dict(f) for f in d.get("findings") or []],
            server_timings=d.get("server_timings"),
            cut_off=d.get("cut_off"),
            notes=[str(n) for n in d.get("notes") or []],
            agreement=d.get("agreement") if isinstance(d.get("agreement"), dict) else None,
        )


@dataclass(slots=True)
class Annotation:
    """A person's judgement of one lane (or all lanes: lane == "*") of one exchange."""

    exchange_id: str
    lane: str
    tags: list[str]
    severity: int = 1
    note: str = ""
    time: float = field(default_factory=time.time)
    id: str = field(default_factory=new_id)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Annotation:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


@dataclass(slots=True)
class Exchange:
    """One prompt sent to every lane at once, with each lane's result.

    ``messages`` maps lane name -> the exact message list that lane was sent (lanes keep
    their own multi-turn history, so the lists can differ). ``prompt`` is the new user turn.
    """

    prompt: str
    params: SamplingParams
    messages: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    results: dict[str, LaneResult] = field(default_factory=dict)
    id: str = field(default_factory=new_id)
    started_at: float = field(default_factory=time.time)
    wall_ms: float | None = None
    # Where the exchange came from: "chat", "ask", or "suite:<name>/<case id>".
    source: str = "chat"
    case_id: str | None = None
    suite: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prompt": self.prompt,
            "params": self.params.to_dict(),
            "messages": self.messages,
            "results": {k: v.to_dict() for k, v in self.results.items()},
            "started_at": self.started_at,
            "wall_ms": self.wall_ms,
            "source": self.source,
            "case_id": self.case_id,
            "suite": self.suite,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Exchange:
        return cls(
            id=d["id"],
            prompt=d.get("prompt", ""),
            params=SamplingParams.from_dict(d.get("params") or {}),
            messages=d.get("messages") or {},
            results={k: LaneResult.from_dict(v) for k, v in (d.get("results") or {}).items()},
            started_at=d.get("started_at", 0.0),
            wall_ms=d.get("wall_ms"),
            source=d.get("source", "chat"),
            case_id=d.get("case_id"),
            suite=d.get("suite"),
            meta=d.get("meta") or {},
        )


@dataclass(slots=True)
class Fact:
    """A fact planted in a long context and asked back; recalled when ``value`` appears in
    the answer (normalized). ``depth`` is where it sits, 0.0 = start, 1.0 = end."""

    key: str
    value: str
    depth: float = 0.5
    aliases: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Fact:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


@dataclass(slots=True)
class Case:
    """One test case of a suite: messages + params + optional checks.

    ``messages`` is the whole list sent (system, history, final user turn last).
    Checks: ``expect`` (expected answer: a number or a text that must be contained),
    ``expect_regex`` (a regex the answer must match), ``facts`` (planted facts to recall),
    ``format`` ("json" | "one_line" | "yes_no" | "number" | None). ``group`` sorts cases for
    reports (e.g. "calibration", "ood:code", "ood:math", "1K").
    """

    id: str
    messages: list[dict[str, str]]
    params: SamplingParams | None = None
    expect: str | None = None
    expect_regex: str | None = None
    facts: list[Fact] = field(default_factory=list)
    format: str | None = None
    group: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        """The final user turn: what a person would call the prompt."""
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return m.get("content", "")
        return ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "messages": self.messages,
            "params": self.params.to_dict() if self.params else None,
            "expect": self.expect,
            "expect_regex": self.expect_regex,
            "facts": [f.to_dict() for f in self.facts],
            "format": self.format,
            "group": self.group,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Case:
        return cls(
            id=str(d["id"]),
            messages=list(d["messages"]),
            params=SamplingParams.from_dict(d["params"]) if d.get("params") else None,
            expect=None if d.get("expect") is None else str(d["expect"]),
            expect_regex=d.get("expect_regex"),
            facts=[Fact.from_dict(f) for f in d.get("facts") or []],
            format=d.get("format"),
            group=d.get("group"),
            meta=d.get("meta") or {},
        )
