"""The per-suite aggregates a report needs, computed from a run's exchanges alone.

Each function takes the exchanges of one suite (as saved: ``suite``, ``case_id`` and the
runner's ``meta``) and returns plain data. The runner writes them into the session's
``meta["results"][<suite name>]`` as it goes; a report can also call them on a loaded
session, e.g. one whose run was killed before the aggregates were written. The shapes are
documented in docs/suites.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from quantlab import quantiles
from quantlab.records import Exchange, LaneResult


def _percentile(values: Iterable[float | None], p: float) -> float | None:
    """:func:`quantlab.quantiles.percentile` (numpy's linear), kept to 3 decimals as the
    session's aggregates store it."""
    v = quantiles.percentile(values, p)
    return None if v is None else round(v, 3)


def first_difference(a: str, b: str) -> int | None:
    """Index of the first differing character, None when the texts are identical."""
    if a == b:
        return None
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def failed_detectors(result: LaneResult) -> list[str]:
    """Detectors that found a failure (severity "fail") not dismissed by a person."""
    return [f.detector for f in result.findings if f.severity == "fail" and f.status != "dismissed"]


# ------------------------------------------------------------------ cases suites


def cases_summary(exchanges: Iterable[Exchange]) -> dict[str, Any]:
    """Per lane and per case group: how many answers were judged, failed or errored.

    ``flagged`` counts answers with at least one failing finding; a report computes its
    own intervals and paired tests from the exchanges, this is the at-a-glance view.
    """
    lanes: dict[str, dict[str, Any]] = {}
    n = 0
    for ex in exchanges:
        n += 1
        group = ex.meta.get("group") or "all"
        for lane, r in ex.results.items():
            row = lanes.setdefault(lane, {"answers": 0, "flagged": 0, "errors": 0, "groups": {}})
            g = row["groups"].setdefault(group, {"answers": 0, "flagged": 0, "errors": 0})
            for bucket in (row, g):
                bucket["answers"] += 1
                if not r.ok:
                    bucket["errors"] += 1
                elif failed_detectors(r):
                    bucket["flagged"] += 1
    return {"exchanges": n, "lanes": lanes}


# ------------------------------------------------------------------ long context


def recall_table(exchanges: Iterable[Exchange]) -> list[dict[str, Any]]:
    """One row per long-context exchange: its length and each lane's fact recall.

    Each lane gets ``{"recalled", "total", "share", "facts": {key: bool}, "error"}``;
    ``skipped`` maps lanes that were not sent this length to why.
    """
    from quantlab.detectors.fact_recall import recalled
    from quantlab.records import Fact

    rows = []
    for ex in exchanges:
        m = ex.meta
        facts = [Fact.from_dict(f) for f in m.get("facts") or []]
        lanes: dict[str, Any] = {}
        for lane, r in ex.results.items():
            if not r.ok:
                lanes[lane] = {
                    "recalled": 0,
                    "total": len(facts),
                    "share": None,
                    "facts": {},
                    "error": str(r.error),
                }
                continue
            hits = recalled(r.text, facts)
            lanes[lane] = {
                "recalled": sum(hits),
                "total": len(facts),
                "share": round(sum(hits) / len(facts), 4) if facts else None,
                "facts": {f.key: h for f, h in zip(facts, hits, strict=True)},
                "error": None,
            }
        rows.append(
            {
                "label": m.get("length_label") or ex.case_id,
                "target_tokens": m.get("target_tokens"),
                "context_tokens": m.get("context_tokens"),
                "count_source": m.get("count_source"),
                "repetition": m.get("repetition", 0),
                "exchange_id": ex.id,
                "facts": [f.to_dict() for f in facts],
                "lanes": lanes,
                "skipped": m.get("skipped_lanes") or {},
            }
        )
    return rows


def recall_summary(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """lane -> length label -> share of facts recalled (pooled over repetitions)."""
    acc: dict[str, dict[str, list[int]]] = {}
    for row in rows:
        for lane, v in row["lanes"].items():
            k_n = acc.setdefault(lane, {}).setdefault(row["label"], [0, 0])
            k_n[0] += v["recalled"]
            k_n[1] += v["total"]
    return {
        lane: {lab: round(k / n, 4) if n else None for lab, (k, n) in by.items()}
        for lane, by in acc.items()
    }


# ------------------------------------------------------------------ concurrency


def concurrency_comparison(exchanges: Iterable[Exchange]) -> dict[str, Any]:
    """Each lane's answer at every level compared with its answer at the lowest level.

    Pairs are matched by (case, repetition). Returns ``{"levels", "baseline", "pairs":
    [{"case_id", "repetition", "lane", "level", "identical", "first_diff", "len_baseline",
    "len_level", "exchange_ids"}], "lanes": {lane: {"compared", "identical", "levels":
    {level: {"ttft_p50_ms", "e2e_p50_ms", "tokens_per_s_p50", "answers"}}}}}``.
    """
    by_key: dict[tuple[str, int, int], Exchange] = {}
    levels: set[int] = set()
    for ex in exchanges:
        level = int(ex.meta.get("concurrency", 1))
        levels.add(level)
        by_key[(ex.case_id or "", int(ex.meta.get("repetition", 0)), level)] = ex
    ordered = sorted(levels)
    out: dict[str, Any] = {"levels": ordered, "baseline": ordered[0] if ordered else None}
    pairs: list[dict[str, Any]] = []
    lanes: dict[str, Any] = {}
    timing: dict[tuple[str, int], dict[str, list[float]]] = {}
    for (_case, _rep, level), ex in by_key.items():
        for lane, r in ex.results.items():
            if not r.ok:
                continue
            t = timing.setdefault((lane, level), {"ttft": [], "e2e": [], "tps": []})
            for key, val in (
                ("ttft", r.timing.ttft_ms),
                ("e2e", r.timing.e2e_ms),
                ("tps", r.timing.tokens_per_s),
            ):
                if val is not None:
                    t[key].append(val)
    if ordered:
        base_level = ordered[0]
        for (case, rep, level), ex in sorted(by_key.items()):
            if level == base_level:
                continue
            base = by_key.get((case, rep, base_level))
            if base is None:
                continue
            for lane, r in ex.results.items():
                b = base.results.get(lane)
                if b is None or not b.ok or not r.ok:
                    continue
                fd = first_difference(b.text, r.text)
                pairs.append(
                    {
                        "case_id": case,
                        "repetition": rep,
                        "lane": lane,
                        "level": level,
                        "identical": fd is None,
                        "first_diff": fd,
                        "len_baseline": len(b.text),
                        "len_level": len(r.text),
                        "exchange_ids": {str(base_level): base.id, str(level): ex.id},
                    }
                )
    for p in pairs:
        row = lanes.setdefault(p["lane"], {"compared": 0, "identical": 0, "levels": {}})
        row["compared"] += 1
        row["identical"] += int(p["identical"])
    for (lane, level), t in timing.items():
        row = lanes.setdefault(lane, {"compared": 0, "identical": 0, "levels": {}})
        row["levels"][str(level)] = {
            "answers": len(t["e2e"]),
            "ttft_p50_ms": _percentile(t["ttft"], 50),
            "e2e_p50_ms": _percentile(t["e2e"], 50),
            "tokens_per_s_p50": _percentile(t["tps"], 50),
        }
    out["pairs"] = pairs
    out["lanes"] = lanes
    return out


# ------------------------------------------------------------------ capacity


def capacity_level(
    results: Sequence[LaneResult],
    wall_s: float,
    level: int,
    gpu_hour_price: float | None = None,
) -> dict[str, Any]:
    """One step of the ramp for one lane: ``level`` requests in flight, ``wall_s`` from the
    first send to the last byte.

    throughput = output tokens of the answered requests / wall_s; tokens/s per user = the
    median of each request's decode rate; cost per 1M output tokens = price per GPU-hour /
    (throughput × 3600) × 1e6 (the lane is assumed to have the GPU for itself).
    """
    ok = [r for r in results if r.ok]
    out_tokens = sum(r.timing.output_tokens or 0 for r in ok)
    prompt_tokens = sum(int((r.usage or {}).get("prompt_tokens") or 0) for r in ok)
    cached = 0
    for r in ok:
        details = (r.usage or {}).get("prompt_tokens_details") or {}
        cached += int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    throughput = out_tokens / wall_s if wall_s > 0 else None
    cost = None
    if gpu_hour_price is not None and throughput:
        cost = round(gpu_hour_price / (throughput * 3600.0) * 1e6, 4)
    ttfts = [r.timing.ttft_ms for r in ok if r.timing.ttft_ms is not None]
    return {
        "concurrency": level,
        "requests": len(results),
        "ok": len(ok),
        "errors": sorted({str(r.error) for r in results if r.error is not None})[:3],
        "wall_s": round(wall_s, 3),
        "output_tokens": out_tokens,
        "prompt_tokens": prompt_tokens,
        "cached_prompt_tokens": cached,
        "throughput_tok_s": None if throughput is None else round(throughput, 3),
        "requests_per_s": round(len(ok) / wall_s, 4) if wall_s > 0 else None,
        "ttft_p50_ms": _percentile(ttfts, 50),
        "ttft_p95_ms": _percentile(ttfts, 95),
        "e2e_p50_ms": _percentile([r.timing.e2e_ms for r in ok if r.timing.e2e_ms], 50),
        "tokens_per_s_user": _percentile(
            [r.timing.tokens_per_s for r in ok if r.timing.tokens_per_s], 50
        ),
        "cost_per_1m_output_usd": cost,
    }


def capacity_table(
    exchanges: Iterable[Exchange], gpu_hour_price: float | None = None
) -> dict[str, list[dict[str, Any]]]:
    """lane -> one :func:`capacity_level` row per level, from saved exchanges alone (the
    wall time of a level is rebuilt from the exchanges' start times and wall times)."""
    groups: dict[tuple[str, int], list[Exchange]] = {}
    for ex in exchanges:
        lane = ex.meta.get("lane") or next(iter(ex.results), "")
        groups.setdefault((lane, int(ex.meta.get("concurrency", 1))), []).append(ex)
    table: dict[str, list[dict[str, Any]]] = {}
    for (lane, level), exs in sorted(groups.items()):
        start = min(ex.started_at for ex in exs)
        end = max(ex.started_at + (ex.wall_ms or 0) / 1000 for ex in exs)
        results = [ex.results[lane] for ex in exs if lane in ex.results]
        table.setdefault(lane, []).append(
            capacity_level(results, end - start, level, gpu_hour_price)
        )
    return table
