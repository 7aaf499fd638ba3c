"""Realistic sessions for the report tests, written with the real SessionStore.

One builder, :func:`build_full`, writes a session the way a run of every suite would: a
BF16 reference and an AWQ candidate on vLLM, sanity cases with known outcomes (so every
count in the reports is known in advance), a distribution suite with groups, long-context
answers at 1K and 4K (8K skipped), a concurrency suite at 1 and 8, a capacity ramp, an
errored and a cancelled lane, annotations, a dismissed finding and a telemetry trace.

The expected numbers are module constants next to the data that produces them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quantlab.records import (
    Annotation,
    Endpoint,
    Exchange,
    Finding,
    LaneError,
    LaneResult,
    SamplingParams,
    Timing,
)
from quantlab.session import SessionStore

REF = "bf16"
CAND = "awq"
T0 = 1_764_000_000.0


def endpoints() -> list[Endpoint]:
    return [
        Endpoint(
            name=REF,
            base_url="http://gpu-box:8000",
            model="Qwen/Qwen2.5-1.5B-Instruct",
            role="reference",
            backend="vllm",
            server_version="0.11.0",
            max_context=32768,
        ),
        Endpoint(
            name=CAND,
            base_url="http://gpu-box:8001",
            model="Qwen/Qwen2.5-1.5B-Instruct-AWQ",
            role="candidate",
            backend="vllm",
            server_version="0.11.0",
            max_context=32768,
            quantization="awq_marlin",
        ),
    ]


def result(
    lane: str,
    text: str,
    *,
    findings: list[Finding] | None = None,
    ttft: float = 100.0,
    e2e: float = 1000.0,
    tps: float = 50.0,
    tokens: int = 40,
    finish: str = "stop",
    error: LaneError | None = None,
    itl: list[float] | None = None,
) -> LaneResult:
    model = "Qwen/Qwen2.5-1.5B-Instruct" + ("-AWQ" if lane == CAND else "")
    return LaneResult(
        lane=lane,
        model=model,
        text=text,
        finish_reason=finish if error is None else None,
        usage={"prompt_tokens": 30, "completion_tokens": tokens, "total_tokens": 30 + tokens},
        timing=Timing(
            ttft_ms=None if error else ttft,
            itl_ms=list(itl if itl is not None else [20.0, 22.0, 25.0]),
            e2e_ms=e2e,
            output_tokens=None if error else tokens,
            tokens_per_s=None if error else tps,
        ),
        error=error,
        findings=findings or [],
    )


def fail(detector: str, lane: str, evidence: str, severity: str = "fail") -> Finding:
    return Finding(detector=detector, lane=lane, severity=severity, score=0.0, evidence=evidence)  # type: ignore[arg-type]


def exchange(
    suite: str,
    case: str,
    results: dict[str, LaneResult],
    *,
    prompt: str | None = None,
    meta: dict[str, Any] | None = None,
    at: float = 0.0,
    wall_ms: float | None = 1000.0,
) -> Exchange:
    p = prompt or f"prompt of {case}"
    return Exchange(
        prompt=p,
        params=SamplingParams(temperature=0.0, max_tokens=64),
        messages={lane: [{"role": "user", "content": p}] for lane in results},
        results=results,
        id=f"{suite[:4]}-{case}"
        + (f"-c{level}" if (level := (meta or {}).get("concurrency", 1)) != 1 else ""),
        started_at=T0 + at,
        wall_ms=wall_ms,
        source=f"suite:{suite}/{case}",
        case_id=case,
        suite=suite,
        meta={"concurrency": 1, "repetition": 0, "run_id": "run1", **(meta or {})},
    )


# ------------------------------------------------------------------ sanity: known outcomes
#
# 10 cases. Reference fails s9 only. Candidate:
#   s0, s1, s2: expected_answer fail findings        -> fail (b)
#   s3: a fail finding that a person dismissed         -> pass
#   s4: annotation "repetition loop", severity 2       -> fail (b)
#   s5: annotation "other", severity 1                 -> pass
#   s9: passes where the reference failed              -> (c)
# So reference 9/10, candidate 5/10 failed -> 5/10... see the constants.
SANITY_REF_PASS = 9
SANITY_CAND_PASS = 6  # fails s0, s1, s2, s4
SANITY_B = 4
SANITY_C = 1
SANITY_P = 2 * (1 + 5) / 32  # exact McNemar, n = 5 discordant, min = 1


def sanity_exchanges() -> list[Exchange]:
    out = []
    for i in range(10):
        case = f"s{i}"
        ref_findings = (
            [fail("expected_answer", REF, "final number 7, expected 9")] if i == 9 else []
        )
        cand_findings: list[Finding] = []
        cand_text = f"answer {i}"
        if i in (0, 1, 2):
            cand_findings = [fail("expected_answer", CAND, f"final number {i + 40}, expected {i}")]
            cand_text = f"The answer is {i + 40}. ```python\nprint({i})\n```"
        if i == 3:
            f = fail("expected_answer", CAND, "final number 3.0, expected 3")
            f.status = "dismissed"
            cand_findings = [f]
        ex = exchange(
            "sanity",
            case,
            {
                REF: result(REF, f"answer {i}", findings=ref_findings, ttft=100 + i, tps=50),
                CAND: result(CAND, cand_text, findings=cand_findings, ttft=80 + i, tps=90),
            },
            meta={"group": "arithmetic" if i < 5 else "facts"},
            at=i,
        )
        out.append(ex)
    return out


def distribution_exchanges() -> list[Exchange]:
    """calibration: both pass 4/4; ood:code: candidate fails 3 of 4 (reference passes)."""
    out = []
    for i in range(4):
        out.append(
            exchange(
                "distribution",
                f"chat-{i}",
                {REF: result(REF, "Sure, Friday works."), CAND: result(CAND, "Sure, Friday.")},
                meta={"group": "calibration"},
                at=20 + i,
            )
        )
    for i in range(4):
        cand_f = [fail("expected_answer", CAND, "no match for /def\\s+f/")] if i < 3 else []
        out.append(
            exchange(
                "distribution",
                f"code-{i}",
                {
                    REF: result(REF, "def f(x):\n    return x"),
                    CAND: result(CAND, "def f(x) return x x x x", findings=cand_f),
                },
                meta={"group": "ood:code"},
                at=30 + i,
            )
        )
    return out


FACTS = [
    {"key": "dock_code", "value": "4417", "depth": 0.1, "aliases": []},
    {"key": "oncall_lead", "value": "Marisol Ekwueme", "depth": 0.5, "aliases": []},
    {"key": "release_codename", "value": "Copperfinch", "depth": 0.9, "aliases": []},
]
ALL_FACTS = "1. 4417\n2. Marisol Ekwueme\n3. Copperfinch"


def long_context_exchanges() -> list[Exchange]:
    """1K: both recall 3/3. 4K: reference 3/3, candidate 1/3 (the code only)."""
    out = []
    for label, tokens, cand_text, at in (
        ("1K", 1000, ALL_FACTS, 40),
        ("4K", 4000, "1. 4417\n2. I do not know\n3. not mentioned", 41),
    ):
        recalled = 3 if cand_text == ALL_FACTS else 1
        cand_f = [] if recalled == 3 else [fail("fact_recall", CAND, "missing 2/3")]
        out.append(
            exchange(
                "long-context",
                f"ctx-{label}",
                {
                    REF: result(REF, ALL_FACTS, ttft=tokens / 10),
                    CAND: result(CAND, cand_text, findings=cand_f, ttft=tokens / 12),
                },
                prompt="Using only our conversation above, answer these questions",
                meta={
                    "length_label": label,
                    "target_tokens": tokens,
                    "context_tokens": tokens,
                    "count_source": "server",
                    "facts": FACTS,
                    "skipped_lanes": {},
                    "group": label,
                },
                at=at,
            )
        )
    return out


def concurrency_exchanges() -> list[Exchange]:
    """Two cases at 1 and 8 in flight: the reference is identical, the candidate's first
    case changes at character 10 under load."""
    out = []
    texts = {"c0": "The bicycle turns pedals into motion.", "c1": "Recursion calls itself."}
    for level in (1, 8):
        for case, text in texts.items():
            cand = text
            if level == 8 and case == "c0":
                cand = text[:10] + "X" + text[11:]
            out.append(
                exchange(
                    "concurrency",
                    case,
                    {
                        REF: result(REF, text, ttft=100 * level, tps=50 / (level**0.5)),
                        CAND: result(CAND, cand, ttft=80 * level, tps=90 / (level**0.5)),
                    },
                    meta={"concurrency": level},
                    at=50 + level,
                )
            )
    return out


def capacity_exchanges() -> list[Exchange]:
    """Per lane, levels 1 and 2, two requests each, each 1 s long, 64 output tokens."""
    out = []
    n = 0
    for lane in (REF, CAND):
        for level in (1, 2):
            for i in range(2):
                n += 1
                start = 100 + n * (0 if level == 2 else 1)
                ex = exchange(
                    "capacity",
                    f"cap-{lane}-{level}-{i}",
                    {lane: result(lane, "some text", tokens=64, ttft=200 * level)},
                    meta={
                        "concurrency": level,
                        "lane": lane,
                        "request": i,
                        "ttft_mode": "cold: unique prefix per request + cache_salt",
                    },
                    at=start,
                    wall_ms=1000.0,
                )
                ex.id = f"cap-{lane}-{level}-{i}"
                out.append(ex)
    return out


def fault_exchanges() -> list[Exchange]:
    """A chat exchange whose candidate got an HTTP 500, and one cancelled."""
    e1 = Exchange(
        prompt="hello there",
        params=SamplingParams(),
        results={
            REF: result(REF, "Hello!"),
            CAND: result(CAND, "", error=LaneError("http", "Internal Server Error", 500)),
        },
        id="chat-err",
        started_at=T0 + 200,
        source="chat",
    )
    e2 = Exchange(
        prompt="tell me a story",
        params=SamplingParams(),
        results={
            REF: result(REF, "Once upon a time"),
            CAND: result(CAND, "Once", error=LaneError("cancelled", "stopped by the user")),
        },
        id="chat-cancel",
        started_at=T0 + 201,
        source="chat",
    )
    return [e1, e2]


TELEMETRY = [
    {"t": T0 + i, "gpu": 0, "name": "NVIDIA RTX 2000 Ada", "mem_used_mib": 9000 + 100 * i,
     "mem_total_mib": 16380, "power_w": 50.0 + i, "power_limit_w": 70.0, "util_pct": 90,
     "temp_c": 60 + i}
    for i in range(5)
]  # fmt: skip


def build_full(path: Path) -> Path:
    """Write the full session to ``path`` and return it."""
    store = SessionStore.open(
        path,
        endpoints=endpoints(),
        machine={
            "host": "gpu-box",
            "cpu": "AMD EPYC",
            "ram_gb": 64,
            "gpus": [{"name": "NVIDIA RTX 2000 Ada", "memory_total_mib": 16380}],
        },
        durability="os",
    )
    try:
        all_ex = (
            sanity_exchanges()
            + distribution_exchanges()
            + long_context_exchanges()
            + concurrency_exchanges()
            + capacity_exchanges()
            + fault_exchanges()
        )
        for ex in all_ex:
            store.append_exchange(ex)
        store.add_annotation(
            Annotation(
                exchange_id="sani-s4",
                lane=CAND,
                tags=["repetition loop"],
                severity=2,
                note="loops on 'the the the'",
            )
        )
        store.add_annotation(
            Annotation(
                exchange_id="sani-s5", lane=CAND, tags=["other"], severity=1, note="slightly terse"
            )
        )
        store.add_telemetry(TELEMETRY)
        store.update_meta(
            {
                "runs": [
                    {
                        "run_id": "run1",
                        "reference": REF,
                        "gpu_hour_price": 0.5,
                        "suites": [
                            "sanity",
                            "distribution",
                            "long-context",
                            "concurrency",
                            "capacity",
                        ],
                        "started_at": T0,
                        "finished_at": T0 + 300,
                        "cancelled": False,
                        "quick": False,
                        "repeat": 1,
                        "concurrency": 1,
                    }
                ],
                "results": {
                    "long-context": {
                        "kind": "long_context",
                        "skipped": [
                            {
                                "label": "8K",
                                "target_tokens": 8000,
                                "skipped": {REF: "bf16: does not fit", CAND: "awq: does not fit"},
                            }
                        ],
                    },
                    "concurrency": {"kind": "concurrency"},
                    "capacity": {"kind": "capacity"},
                },
            }
        )
    finally:
        store.close()
    return path


def build_small(
    path: Path, outcomes: list[tuple[bool, bool]], lanes: tuple[str, ...] = (REF, CAND)
) -> Path:
    """A sanity-only session whose cases have the given (reference passed, candidate
    passed) outcomes; extra lanes copy the candidate."""
    eps = endpoints()
    if len(lanes) > 2:
        for extra in lanes[2:]:
            eps.append(Endpoint(name=extra, base_url="http://gpu-box:8002", model=f"m-{extra}"))
    store = SessionStore.open(path, endpoints=eps, durability="os")
    try:
        for i, (r_ok, c_ok) in enumerate(outcomes):
            res = {}
            for lane in lanes:
                ok = r_ok if lane == REF else c_ok
                res[lane] = result(
                    lane,
                    "42" if ok else "41",
                    findings=[] if ok else [fail("expected_answer", lane, "expected 42")],
                )
            store.append_exchange(exchange("sanity", f"k{i}", res, at=i))
    finally:
        store.close()
    return path
