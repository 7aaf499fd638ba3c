"""The whole analysis of a session, as plain data: every report format renders this.

:func:`analyze` reads only the session (its exchanges, annotations, telemetry, endpoints and
machine facts) and computes everything from the raw exchanges: pass/fail per case and lane
(:mod:`quantlab.reports.outcomes`), rates with Wilson intervals, paired McNemar comparisons
of each candidate against the reference, long-context recall per length and depth,
concurrency and capacity tables, latency percentiles, findings and annotations by tag, and a
telemetry summary. The runner's stored aggregates (``meta["results"]``) are read only for
what exchanges cannot show (long-context lengths that were skipped and never sent, the
suite kind). A section with no data is None: renderers say "not run", never invent.

The JSON report is this dict as is; the Markdown report and the risk brief render it, so
all three always carry the same numbers.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

from quantlab import suite_results
from quantlab.agreement.summary import summarize as agreement_summary
from quantlab.lanes import reference_lane
from quantlab.quantiles import percentile
from quantlab.records import Exchange, Fact, LaneResult
from quantlab.reports import stats
from quantlab.reports.methods import describe, method_of
from quantlab.reports.outcomes import (
    ANNOTATION_FAIL_SEVERITY,
    DEFINITION,
    CaseOutcome,
    annotations_by_lane,
    judge,
    judge_cases,
    lane_annotations,
)
from quantlab.reports.shapes import Analysis, Comparison, GroupTable, RateBlock, SuiteBlock
from quantlab.session import Session

REPORT_SCHEMA = "quantlab.report/1"
#: Suite kinds whose cases judge quality (their pass rates make the headline). Load suites
#: (concurrency, capacity) repeat prompts to measure serving and are reported on their own.
QUALITY_KINDS = ("cases", "long_context")
#: How many quoted examples per tag and lane a report keeps.
EXAMPLES_PER_TAG = 3
EXCERPT_CHARS = 240


# ------------------------------------------------------------------ small helpers


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The start of ``text``, cut at ``limit`` characters with an ellipsis and the length."""
    text = text or ""
    if len(text) <= limit:
        return text
    return f"{text[:limit].rstrip()}… [{len(text)} chars]"


def _round(x: float | None, nd: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, nd)


def suite_kind(session: Session, ex: Exchange) -> str:
    """The kind of suite an exchange came from: "chat" for chat/ask exchanges, else the
    kind the runner stored (the exchange's ``meta["suite_kind"]``, the suite's result, the
    run record's ``kinds``). Only sessions written before the kind was stored fall back to
    guessing it from the exchange's meta keys."""
    if ex.suite is None and not ex.source.startswith("suite:"):
        return "chat"
    m = ex.meta
    if isinstance(m.get("suite_kind"), str):
        return str(m["suite_kind"])
    name = ex.suite or ""
    results = session.meta.get("results")
    if isinstance(results, dict):
        rec = results.get(name)
        if isinstance(rec, dict) and isinstance(rec.get("kind"), str):
            return str(rec["kind"])
    for run in reversed(session.meta.get("runs") or []):
        kinds = run.get("kinds") if isinstance(run, dict) else None
        if isinstance(kinds, dict) and isinstance(kinds.get(name), str):
            return str(kinds[name])
    return _guess_kind(ex)


def _guess_kind(ex: Exchange) -> str:
    """An old session's kind, from the meta keys each kind writes."""
    m = ex.meta
    if "ttft_mode" in m and "lane" in m:
        return "capacity"
    if "length_label" in m or "facts" in m:
        return "long_context"
    if (ex.suite or "") == "concurrency":
        return "concurrency"
    return "cases"


def suite_name(ex: Exchange) -> str:
    if ex.suite:
        return ex.suite
    if ex.source.startswith("suite:"):
        return ex.source[len("suite:") :].split("/", 1)[0]
    return "chat" if ex.source in ("chat", "") else ex.source


def pick_reference(session: Session) -> str | None:
    """The session's reference lane (the rule is :func:`quantlab.lanes.reference_lane`)."""
    return reference_lane(session.endpoints, session.lanes, session.meta.get("runs"))


# ------------------------------------------------------------------ the lanes


def lane_facts(session: Session) -> list[dict[str, Any]]:
    """What was compared: one entry per lane with its server and model facts."""
    models: dict[str, str | None] = {}
    for ex in session.exchanges:
        for lane, r in ex.results.items():
            if r.model and lane not in models:
                models[lane] = r.model
    ref = pick_reference(session)
    out = []
    for name in session.lanes:
        ep = session.endpoint(name)
        model = (ep.model if ep else None) or models.get(name)
        method = method_of(ep, name, model)
        out.append(
            {
                "name": name,
                "role": "reference" if name == ref else "candidate",
                "model": model,
                "base_url": ep.base_url if ep else None,
                "backend": ep.backend if ep else None,
                "server_version": ep.server_version if ep else None,
                "quantization": ep.quantization if ep else None,
                "max_context": ep.max_context if ep else None,
                "model_path": ep.model_path if ep else None,
                "method": method,
                "method_description": describe(method),
            }
        )
    return out


# ------------------------------------------------------------------ pass rates


def _rates(cases: Sequence[CaseOutcome], lanes: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for lane in lanes:
        judged = [c.outcomes[lane] for c in cases if c.outcomes[lane].outcome != "not_judged"]
        passed = sum(1 for o in judged if o.outcome == "pass")
        reasons: Counter[str] = Counter()
        for o in judged:
            for r in o.reasons:
                reasons[re.sub(r" \(.*", "", r)] += 1
        errors = sum(1 for o in judged if any(r.startswith("error:") for r in o.reasons))
        p = stats.proportion(passed, len(judged))
        out[lane] = {
            **p.to_dict(),
            "failed": len(judged) - passed,
            "errors": errors,
            "not_judged": len(cases) - len(judged),
            "reasons": dict(reasons.most_common()),
        }
    return out


def _comparisons(
    cases: Sequence[CaseOutcome], reference: str | None, candidates: Sequence[str]
) -> list[Comparison]:
    if reference is None:
        return []
    out = []
    for cand in candidates:
        pairs = [
            (c.outcomes[reference].outcome == "pass", c.outcomes[cand].outcome == "pass")
            for c in cases
            if c.outcomes[reference].outcome != "not_judged"
            and c.outcomes[cand].outcome != "not_judged"
        ]
        cmp = stats.compare_paired(pairs, reference=reference, candidate=cand)
        d = cast(Comparison, cmp.to_dict())
        # Which cases the candidate lost and won: what a person opens first.
        d["lost_cases"] = [
            _case_label(c)
            for c in cases
            if c.outcomes[reference].outcome == "pass" and c.outcomes[cand].outcome == "fail"
        ]
        won = [
            c
            for c in cases
            if c.outcomes[reference].outcome == "fail" and c.outcomes[cand].outcome == "pass"
        ]
        d["won_cases"] = [_case_label(c) for c in won]
        # A pass with detector warnings is a shaky win: say which.
        d["won_with_warnings"] = {
            _case_label(c): c.outcomes[cand].warnings for c in won if c.outcomes[cand].warnings
        }
        out.append(d)
    return out


def _case_label(c: CaseOutcome) -> str:
    suite, case, level = c.key
    return f"{suite}/{case}" + (f"@c{level}" if level not in (None, 1) else "")


def _rate_block(
    cases: Sequence[CaseOutcome],
    lanes: Sequence[str],
    reference: str | None,
    candidates: Sequence[str],
) -> RateBlock:
    return {
        "cases": len(cases),
        "lanes": _rates(cases, lanes),
        "comparisons": _comparisons(cases, reference, candidates),
    }


# ------------------------------------------------------------------ long context


def _recall(text: str, facts: list[Fact]) -> list[bool]:
    from quantlab.detectors.fact_recall import recalled

    return recalled(text, facts)


def long_context(
    exchanges: Sequence[Exchange],
    lanes: Sequence[str],
    reference: str | None,
    candidates: Sequence[str],
    skipped: Sequence[dict[str, Any]],
    seed: int,
) -> dict[str, Any] | None:
    """Recall of planted facts per length, per depth and per lane, from the answers."""
    if not exchanges and not skipped:
        return None
    rows = []
    by_len: dict[str, dict[str, list[int]]] = {}
    by_fact: dict[str, dict[str, Any]] = {}
    ttft: dict[str, dict[str, list[float]]] = {}
    order: dict[str, int] = {}
    per_exchange: dict[str, dict[str, float]] = {}
    for ex in exchanges:
        m = ex.meta
        facts = [Fact.from_dict(f) for f in m.get("facts") or []]
        label = str(m.get("length_label") or ex.case_id or "?")
        tokens = m.get("context_tokens") or m.get("target_tokens")
        order.setdefault(label, int(tokens or 0))
        row: dict[str, Any] = {
            "exchange_id": ex.id,
            "label": label,
            "context_tokens": m.get("context_tokens"),
            "target_tokens": m.get("target_tokens"),
            "count_source": m.get("count_source"),
            "repetition": m.get("repetition", 0),
            "facts": [f.to_dict() for f in facts],
            "lanes": {},
            "skipped": m.get("skipped_lanes") or {},
        }
        for lane in lanes:
            r = ex.results.get(lane)
            if r is None:
                continue
            if not r.ok:
                row["lanes"][lane] = {"recalled": None, "total": len(facts), "error": str(r.error)}
                continue
            hits = _recall(r.text, facts) if facts else []
            row["lanes"][lane] = {
                "recalled": sum(hits),
                "total": len(facts),
                "facts": {f.key: h for f, h in zip(facts, hits, strict=True)},
                "error": None,
            }
            kn = by_len.setdefault(label, {}).setdefault(lane, [0, 0, 0, 0])
            kn[0] += sum(hits)
            kn[1] += len(facts)
            kn[2] += int(bool(facts) and all(hits))
            kn[3] += 1
            for f, h in zip(facts, hits, strict=True):
                d = by_fact.setdefault(f.key, {"depths": [], "lanes": {}})
                d["depths"].append(f.depth)
                kn2 = d["lanes"].setdefault(lane, [0, 0])
                kn2[0] += int(h)
                kn2[1] += 1
            if r.timing.ttft_ms is not None:
                ttft.setdefault(label, {}).setdefault(lane, []).append(r.timing.ttft_ms)
            if facts:
                per_exchange.setdefault(ex.id, {})[lane] = sum(hits) / len(facts)
        rows.append(row)
    labels = sorted(order, key=lambda k: order[k])
    by_length = []
    for label in labels:
        entry: dict[str, Any] = {
            "label": label,
            "context_tokens": order[label] or None,
            "lanes": {},
        }
        for lane, (k, n, all_k, answers) in by_len.get(label, {}).items():
            entry["lanes"][lane] = {
                "facts": stats.proportion(k, n).to_dict(),
                "all_recalled": stats.proportion(all_k, answers).to_dict(),
            }
        entry["ttft_p50_ms"] = {
            lane: _round(percentile(v, 50), 1) for lane, v in ttft.get(label, {}).items()
        }
        by_length.append(entry)
    facts_out = [
        {
            "key": key,
            # Planted depth as measured in each built context (it shifts a little by length).
            "depth_min": _round(min(d["depths"]), 2),
            "depth_max": _round(max(d["depths"]), 2),
            "lanes": {
                lane: stats.proportion(k, n).to_dict() for lane, (k, n) in d["lanes"].items()
            },
        }
        for key, d in sorted(by_fact.items(), key=lambda kv: min(kv[1]["depths"]))
    ]
    paired = []
    if reference is not None:
        for cand in candidates:
            both = [
                (v[reference], v[cand])
                for v in per_exchange.values()
                if reference in v and cand in v
            ]
            if len(both) >= 2:
                b = stats.paired_bootstrap([x for x, _ in both], [y for _, y in both], seed=seed)
                paired.append({"reference": reference, "candidate": cand, **b.to_dict()})
            else:
                paired.append(
                    {
                        "reference": reference,
                        "candidate": cand,
                        "n": len(both),
                        "note": "fewer than 2 long-context answers on both lanes: no interval",
                    }
                )
    return {
        "rows": rows,
        "by_length": by_length,
        "by_fact": facts_out,
        "recall_difference": paired,
        "skipped": list(skipped),
    }


# ------------------------------------------------------------------ concurrency


def concurrency(exchanges: Sequence[Exchange]) -> dict[str, Any] | None:
    """Each lane's answers at each level against its answers at the lowest level."""
    if not exchanges:
        return None
    cmp = suite_results.concurrency_comparison(exchanges)
    for lane, row in cmp["lanes"].items():
        diffs = [
            p["first_diff"]
            for p in cmp["pairs"]
            if p["lane"] == lane and p["first_diff"] is not None
        ]
        row["differ"] = row["compared"] - row["identical"]
        row["first_diff_min"] = min(diffs) if diffs else None
        row["first_diff_median"] = percentile(diffs, 50) if diffs else None
    return cmp


# ------------------------------------------------------------------ capacity


def capacity(
    exchanges: Sequence[Exchange], gpu_hour_price: float | None, lanes: Sequence[str] = ()
) -> dict[str, Any] | None:
    """The ramp table per lane, rebuilt from the saved exchanges, and whether TTFT was
    measured cold (prompts no server could answer from its prefix cache)."""
    if not exchanges:
        return None
    raw = suite_results.capacity_table(exchanges, gpu_hour_price)
    table = {lane: raw[lane] for lane in lanes if lane in raw}
    table.update({lane: rows for lane, rows in raw.items() if lane not in table})
    modes: dict[str, str] = {}
    cached: Counter[str] = Counter()
    for ex in exchanges:
        lane = ex.meta.get("lane") or next(iter(ex.results), "")
        if ex.meta.get("ttft_mode"):
            modes.setdefault(lane, str(ex.meta["ttft_mode"]))
        for r in ex.results.values():
            details = (r.usage or {}).get("prompt_tokens_details") or {}
            if isinstance(details, dict):
                cached[lane] += int(details.get("cached_tokens") or 0)
    ttft = {}
    for lane in table:
        mode = modes.get(lane)
        if mode is None:
            ttft[lane] = "unknown: prompts were not made unique, so TTFT may be warm (cached)"
        elif mode.startswith("cold") and cached[lane]:
            ttft[lane] = f"{mode}, but the server reported {cached[lane]} cached prompt tokens"
        else:
            ttft[lane] = mode
    return {"gpu_hour_price": gpu_hour_price, "lanes": table, "ttft_mode": ttft}


# ------------------------------------------------------------------ latency


def latency(exchanges: Sequence[Exchange], lanes: Sequence[str]) -> dict[str, Any] | None:
    """Single-stream latency per lane: exchanges sent with one request in flight. The
    capacity ramp, higher concurrency levels and long-context prompts (whose TTFT is mostly
    prefill) are reported in their own sections."""
    acc: dict[str, dict[str, list[float]]] = {
        lane: {"ttft": [], "itl": [], "e2e": [], "tps": [], "out": []} for lane in lanes
    }
    n = 0
    for ex in exchanges:
        if int(ex.meta.get("concurrency") or 1) > 1:
            continue
        n += 1
        for lane, r in ex.results.items():
            if not r.ok or lane not in acc:
                continue
            t = r.timing
            a = acc[lane]
            if t.ttft_ms is not None:
                a["ttft"].append(t.ttft_ms)
            a["itl"].extend(x for x in t.itl_ms if x is not None)
            if t.e2e_ms is not None:
                a["e2e"].append(t.e2e_ms)
            if t.tokens_per_s is not None:
                a["tps"].append(t.tokens_per_s)
            if t.output_tokens is not None:
                a["out"].append(t.output_tokens)
    if n == 0 or not any(a["e2e"] for a in acc.values()):
        return None
    out: dict[str, Any] = {"exchanges": n, "lanes": {}}
    for lane, a in acc.items():
        if not a["e2e"]:
            continue
        out["lanes"][lane] = {
            "answers": len(a["e2e"]),
            "ttft_p50_ms": _round(percentile(a["ttft"], 50), 1),
            "ttft_p95_ms": _round(percentile(a["ttft"], 95), 1),
            "itl_p50_ms": _round(percentile(a["itl"], 50), 2),
            "itl_p95_ms": _round(percentile(a["itl"], 95), 2),
            "e2e_p50_ms": _round(percentile(a["e2e"], 50), 1),
            "e2e_p95_ms": _round(percentile(a["e2e"], 95), 1),
            "tokens_per_s_p50": _round(percentile(a["tps"], 50), 1),
            # The slow tail of the decode rate (the 5 % slowest answers), not its fast end.
            "tokens_per_s_p5": _round(percentile(a["tps"], 5), 1),
            "output_tokens_mean": _round(sum(a["out"]) / len(a["out"]), 1) if a["out"] else None,
        }
    return out


# ------------------------------------------------------------------ findings and annotations


def _example(
    ex: Exchange, lane: str, r: LaneResult | None, note: str, reference: str | None
) -> dict[str, Any]:
    ref = ex.results.get(reference) if reference and reference != lane else None
    return {
        "exchange_id": ex.id,
        "case": f"{suite_name(ex)}/{ex.case_id}" if ex.case_id else suite_name(ex),
        "lane": lane,
        "prompt": excerpt(ex.prompt, 160),
        "note": note,
        "output": excerpt(r.text if r else "", EXCERPT_CHARS),
        "reference_output": (
            excerpt(ref.text if ref.ok else f"(error: {ref.error})", 160) if ref else None
        ),
    }


def _pick(found: list[tuple[int, int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The most telling examples first: a candidate failing where the reference passed,
    then a candidate failing too, then the reference's own failures."""
    return [e for _, _, e in sorted(found, key=lambda t: (t[0], t[1]))[:EXAMPLES_PER_TAG]]


def failures(session: Session, lanes: Sequence[str], reference: str | None) -> dict[str, Any]:
    """Findings by detector and annotations by tag, per lane, with a few quoted examples.

    A finding counts as a failure when its severity is "fail" and nobody dismissed it, or
    a person confirmed a warning (the pass/fail definition); other warnings and dismissed
    findings are counted apart.
    """
    priority = _example_priority(session, reference)
    return {
        "detectors": _findings_by_detector(session, reference, priority),
        "annotations": _annotations_by_tag(session, reference, priority),
        "annotation_count": len(session.annotations),
    }


Priority = Callable[[str, str], int]


def _example_priority(session: Session, reference: str | None) -> Priority:
    """(exchange id, lane) -> 0 for a candidate failing where the reference passed, 1 for
    a candidate failing with the reference, 2 for the reference itself: _pick's order."""
    index = annotations_by_lane(session.annotations)
    ref_failed: dict[str, bool] = {}
    for ex in session.exchanges:
        if reference is not None and reference in ex.results:
            verdict = judge(ex.results[reference], lane_annotations(index, ex.id, reference))
            ref_failed[ex.id] = verdict.failed

    def priority(ex_id: str, lane: str) -> int:
        if lane == reference:
            return 2
        return 1 if ref_failed.get(ex_id, True) else 0

    return priority


def _findings_by_detector(
    session: Session, reference: str | None, priority: Priority
) -> dict[str, dict[str, Any]]:
    """Per detector: fail/warn/confirmed/dismissed counts per lane and quoted examples,
    the detector with the most failures first."""
    detectors: dict[str, dict[str, Any]] = {}
    n = 0
    for ex in session.exchanges:
        for lane, r in ex.results.items():
            for f in r.findings:
                d = detectors.setdefault(
                    f.detector,
                    {
                        "fail": Counter(),
                        "warn": Counter(),
                        "dismissed": Counter(),
                        "confirmed": Counter(),
                        "found": [],
                    },
                )
                if f.status == "dismissed":
                    d["dismissed"][lane] += 1
                    continue
                if f.status == "confirmed":
                    d["confirmed"][lane] += 1
                if f.severity in ("fail", "warn"):
                    d[f.severity][lane] += 1
                if f.severity == "fail" or (f.severity == "warn" and f.status == "confirmed"):
                    n += 1
                    d["found"].append(
                        (priority(ex.id, lane), n, _example(ex, lane, r, f.evidence, reference))
                    )
    return {
        name: {
            "fail": dict(d["fail"]),
            "warn": dict(d["warn"]),
            "confirmed": dict(d["confirmed"]),
            "dismissed": dict(d["dismissed"]),
            "examples": _pick(d["found"]),
        }
        for name, d in sorted(detectors.items(), key=lambda kv: -sum(kv[1]["fail"].values()))
    }


def _annotations_by_tag(
    session: Session, reference: str | None, priority: Priority
) -> dict[str, dict[str, Any]]:
    """Per annotation tag: counts per lane, failing ones (severity at the fail threshold)
    and quoted examples, the most used tag first."""
    tags: dict[str, dict[str, Any]] = {}
    n = 0
    for a in session.annotations:
        ex = session.exchange(a.exchange_id)
        targets = [a.lane] if a.lane != "*" else (list(ex.results) if ex else ["*"])
        for tag in a.tags or ["untagged"]:
            t = tags.setdefault(tag, {"count": Counter(), "failing": Counter(), "found": []})
            for lane in targets:
                t["count"][lane] += 1
                if a.severity >= ANNOTATION_FAIL_SEVERITY:
                    t["failing"][lane] += 1
            if ex is not None:
                n += 1
                note = f"severity {a.severity}" + (f": {a.note}" if a.note else "")
                t["found"].append(
                    (
                        priority(ex.id, a.lane) if a.lane != "*" else 1,
                        n,
                        _example(ex, a.lane, ex.results.get(targets[0]), note, reference),
                    )
                )
    return {
        tag: {
            "count": dict(t["count"]),
            "failing": dict(t["failing"]),
            "examples": _pick(t["found"]),
        }
        for tag, t in sorted(tags.items(), key=lambda kv: -sum(kv[1]["count"].values()))
    }


# ------------------------------------------------------------------ telemetry

_GPU_KEYS = ("gpu", "gpu_index", "index", "device")


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _mib(key: str, v: float) -> float:
    k = key.lower()
    if k.endswith(("_bytes", "_b")):
        return v / 2**20
    if k.endswith(("_gib", "_gb")):
        return v * 1024
    if k.endswith("_kib"):
        return v / 1024
    return v  # _mib / _mb / unlabelled: NVML-style MiB


def _field(
    point: dict[str, Any], include: Sequence[str], exclude: Sequence[str] = ()
) -> tuple[str, float] | None:
    for k, v in point.items():
        kl = k.lower()
        if all(s in kl for s in include) and not any(s in kl for s in exclude):
            x = _num(v)
            if x is not None:
                return k, x
    return None


def _flatten_points(points: Iterable[Any]) -> Iterable[tuple[float | None, str, dict[str, Any]]]:
    """(time, gpu id, flat metrics) for each GPU in each point. Accepts flat points
    (``{"t", "gpu": 0, "mem_used_mib", …}``) and points holding a ``gpus`` list."""
    for p in points:
        if not isinstance(p, dict):
            continue
        t = _num(p.get("t", p.get("time")))
        gpus = p.get("gpus")
        if isinstance(gpus, list):
            for i, g in enumerate(gpus):
                if isinstance(g, dict):
                    gid = next((g[k] for k in _GPU_KEYS if k in g), i)
                    yield t, str(gid), g
            continue
        gid = next((p[k] for k in _GPU_KEYS if k in p), 0)
        yield t, str(gid), p


def telemetry(points: Sequence[Any]) -> dict[str, Any] | None:
    """Per GPU: memory used (peak, mean) and total, power (mean, peak) and its limit,
    utilization and temperature, over the recorded trace. None when nothing was recorded."""
    if not points:
        return None
    acc: dict[str, dict[str, Any]] = {}
    for t, gid, p in _flatten_points(points):
        a = acc.setdefault(
            gid,
            {
                "t": [],
                "mem": [],
                "mem_total": None,
                "power": [],
                "power_limit": None,
                "util": [],
                "temp": [],
                "name": None,
            },
        )
        if t is not None:
            a["t"].append(t)
        if isinstance(p.get("name"), str):
            a["name"] = p["name"]
        if (m := _field(p, ("mem", "used"), ("util", "pct", "percent"))) is not None:
            a["mem"].append(_mib(*m))
        if (m := _field(p, ("mem", "total"))) is not None:
            a["mem_total"] = _mib(*m)
        if (m := _field(p, ("power",), ("limit", "max", "enforced"))) is not None:
            a["power"].append(m[1] / 1000 if m[0].lower().endswith("_mw") else m[1])
        if (m := _field(p, ("power", "limit"))) is not None:
            a["power_limit"] = m[1] / 1000 if m[0].lower().endswith("_mw") else m[1]
        if (m := _field(p, ("util",), ("mem",))) is not None:
            a["util"].append(m[1])
        if (m := _field(p, ("temp",))) is not None:
            a["temp"].append(m[1])
    gpus = {}
    for gid, a in acc.items():
        span = (max(a["t"]) - min(a["t"])) if len(a["t"]) > 1 else None
        gpus[gid] = {
            "name": a["name"],
            "samples": max(len(a["mem"]), len(a["power"]), len(a["util"]), len(a["t"])),
            "span_s": _round(span, 1),
            "mem_used_peak_mib": _round(max(a["mem"]), 0) if a["mem"] else None,
            "mem_used_mean_mib": _round(sum(a["mem"]) / len(a["mem"]), 0) if a["mem"] else None,
            "mem_total_mib": _round(a["mem_total"], 0),
            "power_mean_w": _round(sum(a["power"]) / len(a["power"]), 1) if a["power"] else None,
            "power_peak_w": _round(max(a["power"]), 1) if a["power"] else None,
            "power_limit_w": _round(a["power_limit"], 1),
            "util_mean_pct": _round(sum(a["util"]) / len(a["util"]), 1) if a["util"] else None,
            "temp_max_c": _round(max(a["temp"]), 1) if a["temp"] else None,
        }
    if not any(
        g["mem_used_peak_mib"] is not None or g["power_mean_w"] is not None for g in gpus.values()
    ):
        return {"points": len(points), "gpus": {}, "note": "trace holds no GPU memory or power"}
    return {"points": len(points), "gpus": gpus}


# ------------------------------------------------------------------ everything


def analyze(session: Session, *, gpu_hour_price: float | None = None, seed: int = 0) -> Analysis:
    """The full analysis of ``session`` as a JSON-ready dict, typed as
    :class:`quantlab.reports.shapes.Analysis` (see the module docstring)."""
    lanes = session.lanes
    reference = pick_reference(session)
    candidates = [x for x in lanes if x != reference]
    runs = [r for r in session.meta.get("runs") or [] if isinstance(r, dict)]
    if gpu_hour_price is None:
        for r in reversed(runs):
            if _num(r.get("gpu_hour_price")) is not None:
                gpu_hour_price = float(r["gpu_hour_price"])
                break

    by_suite: dict[str, list[Exchange]] = {}
    kinds: dict[str, str] = {}
    for ex in session.exchanges:
        name = suite_name(ex)
        by_suite.setdefault(name, []).append(ex)
        kinds.setdefault(name, suite_kind(session, ex))

    suites: list[SuiteBlock] = []
    quality_cases: list[CaseOutcome] = []
    groups: list[GroupTable] = []
    for name, exs in by_suite.items():
        kind = kinds[name]
        suite_lanes = [x for x in lanes if any(x in ex.results for ex in exs)]
        cases = judge_cases(exs, session.annotations, lanes)
        block = _rate_block(
            cases, suite_lanes, reference, [c for c in candidates if c in suite_lanes]
        )
        if kind == "capacity":
            block["comparisons"] = []  # one lane per exchange: nothing is paired
        levels = sorted({int(ex.meta.get("concurrency") or 1) for ex in exs})
        suites.append(
            {"suite": name, "kind": kind, "exchanges": len(exs), "levels": levels, **block}
        )
        if kind in QUALITY_KINDS or kind == "chat":
            quality_cases.extend(cases)
        if kind == "cases":
            g = _groups(name, exs, cases, lanes, reference, candidates)
            if g is not None:
                groups.append(g)

    overall = _rate_block(quality_cases, lanes, reference, candidates)
    _holm_correct([overall, *suites, *_group_blocks(groups)], reference, candidates)

    lc_ex = [ex for ex in session.exchanges if kinds[suite_name(ex)] == "long_context"]
    skipped: list[dict[str, Any]] = []
    results = session.meta.get("results")
    if isinstance(results, dict):
        for rec in results.values():
            if isinstance(rec, dict) and rec.get("kind") == "long_context":
                skipped.extend(s for s in rec.get("skipped") or [] if isinstance(s, dict))
    conc_ex = [ex for ex in session.exchanges if kinds[suite_name(ex)] == "concurrency"]
    cap_ex = [ex for ex in session.exchanges if kinds[suite_name(ex)] == "capacity"]
    lat_ex = [
        ex for ex in session.exchanges if kinds[suite_name(ex)] not in ("capacity", "long_context")
    ]

    analysis: Analysis = {
        "schema": REPORT_SCHEMA,
        "session": {
            "id": session.id,
            "path": str(session.path) if session.path else None,
            "created_at": session.created_at,
            "updated_at": session.updated_at,
            "quantlab_version": session.quantlab_version,
            "exchanges": len(session.exchanges),
            "annotations": len(session.annotations),
            "runs": [
                {
                    k: r.get(k)
                    for k in (
                        "run_id",
                        "suites",
                        "started_at",
                        "finished_at",
                        "cancelled",
                        "quick",
                        "repeat",
                        "concurrency",
                    )
                }
                for r in runs
            ],
            "notes": list(session.notes),
        },
        "lanes": lane_facts(session),
        "reference": reference,
        "candidates": candidates,
        "machine": session.machine,
        "definitions": definitions(),
        "suites": suites,
        "overall": overall,
        "groups": groups,
        "long_context": long_context(lc_ex, lanes, reference, candidates, skipped, seed),
        "concurrency": concurrency(conc_ex),
        "capacity": capacity(cap_ex, gpu_hour_price, lanes),
        "latency": latency(lat_ex, lanes),
        "failures": failures(session, lanes, reference),
        "telemetry": telemetry(session.telemetry),
        "agreement": agreement_summary(session.exchanges, seed=seed),
    }
    from quantlab.reports.verdict import assess

    analysis["verdicts"] = assess(analysis)
    analysis["headline"] = headline(analysis)
    return analysis


def _group_blocks(groups: Sequence[GroupTable]) -> list[RateBlock]:
    """Every case-group and family block of the report's group tables."""
    out: list[RateBlock] = []
    for g in groups:
        out += list(g["groups"].values())
        out += list((g["families"] or {}).values())
    return out


def _holm_correct(
    blocks: Sequence[RateBlock], reference: str | None, candidates: Sequence[str]
) -> None:
    """Correct each candidate's paired comparisons for multiplicity across the report.

    The family is every comparison the report prints for that candidate (overall, each
    suite, each case group and family): testing each at p < 0.05 would let false alarms
    grow with the number of groups. Holm's step-down keeps the family-wise error at 0.05;
    each comparison is re-judged on its adjusted p (kept as ``p_holm``, with
    ``family_size``), the raw McNemar p stays in ``mcnemar``.
    """
    if reference is None:
        return
    for cand in candidates:
        cmps = [
            c
            for b in blocks
            for c in b["comparisons"]
            if c["candidate"] == cand and c["n_pairs"] > 0
        ]
        adjusted = stats.holm([c["mcnemar"]["p_value"] for c in cmps])
        for c, p in zip(cmps, adjusted, strict=True):
            fresh = stats.compare_counts(
                c["both_pass"],
                c["ref_only"],
                c["cand_only"],
                c["both_fail"],
                reference=reference,
                candidate=cand,
                p_holm=p,
                family_size=len(cmps),
            )
            c.update(cast(Comparison, fresh.to_dict()))


def _groups(
    suite: str,
    exs: Sequence[Exchange],
    cases: Sequence[CaseOutcome],
    lanes: Sequence[str],
    reference: str | None,
    candidates: Sequence[str],
) -> GroupTable | None:
    """Pass rates per case group (e.g. calibration vs ood:code), and per family (the part
    before ":"), with where each candidate loses most against the reference."""
    group_of: dict[str, str] = {}
    for ex in exs:
        group_of[ex.id] = str(ex.meta.get("group") or "")
    if len({g for g in group_of.values() if g}) < 2:
        return None

    def block(keyfn: Any) -> dict[str, RateBlock]:
        buckets: dict[str, list[CaseOutcome]] = {}
        for c in cases:
            g = group_of.get(c.exchange_ids[0], "")
            buckets.setdefault(keyfn(g) or "(none)", []).append(c)
        return {g: _rate_block(cs, lanes, reference, candidates) for g, cs in buckets.items()}

    groups = block(lambda g: g)
    families = block(lambda g: g.split(":", 1)[0])
    breaks_first = {}
    for cand in candidates:
        drops = []
        for g, b in groups.items():
            cmp = next((c for c in b["comparisons"] if c["candidate"] == cand), None)
            if cmp and cmp["difference"] is not None:
                drops.append((cmp["difference"], g))
        drops.sort()
        breaks_first[cand] = [{"group": g, "difference": _round(d)} for d, g in drops]
    return {
        "suite": suite,
        "groups": groups,
        "families": families if set(families) != set(groups) else None,
        "breaks_first": breaks_first,
    }


def definitions() -> dict[str, str]:
    """The definitions every report prints (and the JSON carries for scripts)."""
    return {
        "pass_fail": DEFINITION,
        "pass_rate": (
            "cases passed / cases judged, with a 95 % Wilson score interval (it stays inside "
            "0–100 % and keeps its coverage at small n)."
        ),
        "paired_comparison": (
            "Each candidate is compared with the reference on the cases both were judged on. "
            "Only discordant pairs carry information: b = reference passed and candidate "
            "failed, c = the reverse. Exact McNemar test: two-sided p = 2·P(X ≤ min(b, c)), "
            "X ~ Binomial(b + c, ½)."
        ),
        "not_enough_cases": (
            f"When p ≥ {stats.ALPHA:g}, the report computes the minimum detectable difference: "
            f"the smallest drop in pass rate these cases would reveal with "
            f"{stats.POWER:.0%} power (exact power of the same test, at the observed share of "
            f"discordant pairs). Above {stats.MEANINGFUL_DIFFERENCE:.0%} it says there are not "
            f"enough cases to tell; the exact test also needs at least "
            f"{stats.min_discordant_for_significance()} discordant pairs to reach p < "
            f"{stats.ALPHA:g} at all."
        ),
        "multiplicity": (
            "Each candidate's paired comparisons in one report (overall, each suite, each "
            "case group and family) are one family, corrected with Holm's step-down method: "
            f"a difference counts as significant only when its Holm-adjusted p < "
            f"{stats.ALPHA:g}, so the chance of any false alarm stays at {stats.ALPHA:g} "
            "however many groups there are. Raw and adjusted p are both shown; differences "
            "that are not significant are described as raw gaps, never as a loss."
        ),
        "mdd_assumption": (
            "The minimum detectable difference uses the observed share of discordant pairs, "
            "never below the difference itself. When no discordant pair was seen it "
            "therefore assumes that every case a drop would change is discordant and goes "
            "the same way, the most favourable case for the test: with zero discordant "
            "pairs the detectable difference is a lower bound, not an estimate."
        ),
        "recall": (
            "A planted fact is recalled when its value (or an alias) appears in the answer as "
            "whole words after normalization (case, accents, punctuation, thousands "
            "separators). Facts in one answer are not independent: the intervals per length "
            "are indicative; the reference-vs-candidate difference uses a paired bootstrap "
            "over answers (10,000 resamples, seeded)."
        ),
        "latency": (
            "Client-side, where the bytes arrive, as vllm bench serve defines them: TTFT = "
            "request sent → first chunk with choices (the role chunk counts); ITL = gaps "
            "between chunks with choices (pooled over answers); e2e = request sent → last "
            "data line before [DONE] (the usage chunk counts); TPOT = (e2e − TTFT) / "
            "(output tokens − 1); tok/s = quantlab's decode rate, (output tokens − 1) over "
            "the first to the last chunk with choices. "
            "Percentiles interpolate linearly. The latency table uses exchanges sent one at "
            "a time, long-context prompts aside (their TTFT is mostly prefill; see the "
            "long-context section)."
        ),
        "capacity": (
            "Per ramp level: throughput = output tokens of answered requests / wall time of "
            "the level; tok/s per user = median decode rate; cost per 1M output tokens = "
            "GPU-hour price / (throughput × 3600) × 10⁶, the lane owning the GPU alone."
        ),
    }


# ------------------------------------------------------------------ the headline


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.0f} %"


def rate_phrase(p: dict[str, Any]) -> str:
    """'10/12 (83 %, 95 % CI 55–95 %)'."""
    if not p or p.get("n", 0) == 0:
        return "not judged"
    return (
        f"{p['k']}/{p['n']} ({_pct(p['rate'])}, 95 % CI {p['low'] * 100:.0f}–"
        f"{p['high'] * 100:.0f} %)"
    )


def _mostly_candidate(a: Analysis) -> list[str]:
    """Failure modes a candidate shows clearly more often than the reference: the
    quantization's own signature (at least 2 more answers, and at least twice as many)."""
    ref = a["reference"]
    out = []
    for cand in a["candidates"]:
        modes = []
        for name, d in a["failures"]["detectors"].items():
            c, r = d["fail"].get(cand, 0), d["fail"].get(ref, 0)
            if c >= r + 2 and c >= 2 * r:
                modes.append(f"{name} ({c} answers vs {r})")
        if modes:
            out.append(f"Failure modes seen mostly on {cand}: {', '.join(modes)}.")
    return out


def _serving_sentences(a: Analysis) -> list[str]:
    """Concurrency stability and capacity at the highest level both lanes reached."""
    ref = a["reference"]
    out = []
    conc = a.get("concurrency")
    if conc:
        bits = []
        for lane, v in conc["lanes"].items():
            if v["compared"]:
                bits.append(f"{lane} {v['identical']}/{v['compared']}")
        if bits:
            levels = conc["levels"]
            out.append(
                f"Answers identical at {levels[-1]} vs {levels[0]} requests in flight: "
                f"{', '.join(bits)}."
            )
    cap = a.get("capacity")
    if cap and ref in cap["lanes"]:
        ref_rows = {r["concurrency"]: r for r in cap["lanes"][ref]}
        for cand in a["candidates"]:
            rows = {r["concurrency"]: r for r in cap["lanes"].get(cand, [])}
            common = sorted(set(ref_rows) & set(rows))
            if not common:
                continue
            level = common[-1]
            r, c = ref_rows[level], rows[level]
            if r["throughput_tok_s"] and c["throughput_tok_s"]:
                text = (
                    f"At {level} in flight {cand} serves {c['throughput_tok_s']:.0f} output tok/s "
                    f"against {r['throughput_tok_s']:.0f} for {ref} "
                    f"({c['throughput_tok_s'] / r['throughput_tok_s']:.2f}×)"
                )
                if c["cost_per_1m_output_usd"] and r["cost_per_1m_output_usd"]:
                    text += (
                        f", ${c['cost_per_1m_output_usd']:.2f} vs "
                        f"${r['cost_per_1m_output_usd']:.2f} per 1M output tokens"
                    )
                out.append(text + ".")
    return out


def headline(a: Analysis) -> str:
    """One paragraph in plain words with the numbers a decision needs first."""
    if a["reference"] is None:
        return "The session holds no answers: there is nothing to report yet."
    parts = _quality_sentences(a)
    parts += _mostly_candidate(a)
    parts += _group_gap_sentences(a)
    parts += _recall_sentences(a)
    parts += _serving_sentences(a)
    parts += _speed_sentences(a)
    parts += _not_measured(a)
    return " ".join(parts)


def _quality_sentences(a: Analysis) -> list[str]:
    ref, overall = a["reference"], a["overall"]
    if not overall["cases"]:
        return ["No quality cases were run in this session (only load tests)."]
    lanes_txt = "; ".join(
        f"{lane} passed {rate_phrase(overall['lanes'][lane])}"
        for lane in [ref, *a["candidates"]]
        if lane in overall["lanes"]
    )
    parts = [
        f"Over {overall['cases']} quality case{'s' if overall['cases'] != 1 else ''}, {lanes_txt}."
    ]
    ref_rate = overall["lanes"].get(ref or "", {}).get("rate")
    if ref_rate is not None and ref_rate < 0.5:
        parts.append(
            "The reference itself fails most cases, so the checks are hard for this model: "
            "judge the candidate by the cases where the two lanes disagree, not by the "
            "raw rates."
        )
    for cmp in overall["comparisons"]:
        parts.append(cmp["sentence"])
        top = overall["lanes"].get(cmp["candidate"], {}).get("reasons") or {}
        if top:
            listed = ", ".join(f"{k} ({v})" for k, v in list(top.items())[:3])
            parts.append(f"{cmp['candidate']}'s failed cases were mostly: {listed}.")
    return parts


def _group_gap_sentences(a: Analysis) -> list[str]:
    """The group each candidate is furthest behind in: significant (after Holm) or
    worded as a raw gap, never as a loss."""
    ref = a["reference"]
    parts = []
    for g in a.get("groups") or []:
        for cand, drops in g["breaks_first"].items():
            worst = drops[0] if drops else None
            if worst is None or worst["difference"] is None or worst["difference"] >= 0:
                continue
            block = g["groups"][worst["group"]]
            cmp = next(c for c in block["comparisons"] if c["candidate"] == cand)
            gap = f"{abs(worst['difference']) * 100:.0f} points below {ref}"
            if cmp["verdict"] == "candidate_worse":
                parts.append(
                    f"In {g['suite']}, {cand} is significantly below {ref} on "
                    f"{worst['group']}: {gap} (Holm-adjusted p = {cmp['p_holm']:.3g})."
                )
            else:
                parts.append(
                    f"In {g['suite']}, {cand}'s largest raw gap is on {worst['group']}: "
                    f"{gap}, not significant ({block['cases']} cases)."
                )
    return parts


def _recall_sentences(a: Analysis) -> list[str]:
    lc = a.get("long_context")
    if not lc or not lc["by_length"]:
        return []
    longest = lc["by_length"][-1]
    recall = ", ".join(f"{lane} {_pct(v['facts']['rate'])}" for lane, v in longest["lanes"].items())
    if not recall:
        return []
    return [f"Fact recall at the longest context run ({longest['label']}): {recall}."]


def _speed_sentences(a: Analysis) -> list[str]:
    ref, lat = a["reference"], a.get("latency")
    if not lat or ref not in lat["lanes"]:
        return []
    r_tps = lat["lanes"][ref]["tokens_per_s_p50"]
    parts = []
    for cand in a["candidates"]:
        c = lat["lanes"].get(cand)
        if c and r_tps and c["tokens_per_s_p50"]:
            ratio = c["tokens_per_s_p50"] / r_tps
            parts.append(
                f"{cand} decodes at {c['tokens_per_s_p50']:.0f} tok/s (median) against "
                f"{r_tps:.0f} for {ref} ({ratio:.2f}×)."
            )
    return parts


def _not_measured(a: Analysis) -> list[str]:
    missing = [
        name
        for key, name in (
            ("long_context", "long context"),
            ("concurrency", "concurrency"),
            ("capacity", "capacity"),
            ("telemetry", "GPU telemetry"),
        )
        if a.get(key) is None
    ]
    return [f"Not measured in this session: {', '.join(missing)}."] if missing else []
