"""quantlab's capacity figures next to ``vllm bench serve``'s, level by level.

Reads ``vllm bench serve --save-result`` JSON files (one per ``--max-concurrency``) and a
quantlab session holding a capacity run of the same workload on the same server, and
prints one JSON object: per concurrency level, output tok/s, TTFT p50/p99 and TPOT p50/p99
from each tool, and quantlab's difference from vLLM in percent.

quantlab's side uses vLLM's formulas on quantlab's own per-request timing: TPOT = (E2E -
TTFT) / (output tokens - 1) per request, percentiles as ``numpy.percentile`` (linear), output
tok/s = the level's output tokens / its wall time (the capacity table's ``throughput_tok_s``).

    python benchmarks/vllm_bench_compare.py --vllm DIR --session S.json [--session S2.json]
        --lane bf16 [--markdown]

With several runs of either tool (vllm result files at the same level, several sessions),
each tool's figures are averaged over its runs, and each tool's second run is also shown
against its first: how far a tool is from itself is the yardstick for the difference.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

METRICS = ("output_tok_s", "ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p99_ms")
LABELS = {
    "output_tok_s": "output tok/s",
    "ttft_p50_ms": "TTFT p50 ms",
    "ttft_p99_ms": "TTFT p99 ms",
    "tpot_p50_ms": "TPOT p50 ms",
    "tpot_p99_ms": "TPOT p99 ms",
}


def _read(path: Path) -> Any:
    """JSON from a file, gzipped (``.gz``) or not."""
    raw = path.read_bytes()
    return json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)


def vllm_rows(folder: Path) -> dict[int, list[dict[str, Any]]]:
    """concurrency -> the figures of each vllm bench run at that level (file order)."""
    rows: dict[int, list[dict[str, Any]]] = {}
    for f in sorted([*folder.glob("*.json"), *folder.glob("*.json.gz")]):
        try:
            r = _read(f)
        except (ValueError, OSError):  # not a result file (e.g. this script's own output)
            continue
        if not isinstance(r, dict) or "max_concurrency" not in r or "output_throughput" not in r:
            continue
        rows.setdefault(int(r["max_concurrency"]), []).append(
            {
                "file": f.name,
                "requests": r.get("completed"),
                "output_tokens": r.get("total_output_tokens"),
                "prompt_tokens_mean": (r.get("total_input_tokens") or 0) / max(1, r["completed"]),
                "output_tok_s": r["output_throughput"],
                "ttft_p50_ms": r.get("p50_ttft_ms", r.get("median_ttft_ms")),
                "ttft_p99_ms": r.get("p99_ttft_ms"),
                "tpot_p50_ms": r.get("p50_tpot_ms", r.get("median_tpot_ms")),
                "tpot_p99_ms": r.get("p99_tpot_ms"),
            }
        )
    return rows


def quantlab_rows(session: Path, lane: str, suite: str | None) -> dict[int, dict[str, Any]]:
    """concurrency -> quantlab's figures for ``lane`` from the session's capacity run."""
    data = _read(session)
    results = data.get("meta", {}).get("results", {})
    tables = {
        name: r for name, r in results.items() if r.get("kind") == "capacity" and lane in r["lanes"]
    }
    if suite is not None:
        tables = {suite: tables[suite]}
    if not tables:
        raise SystemExit(f"{session}: no capacity result for lane {lane!r}")
    name, table = next(iter(tables.items()))
    run_id = table.get("run_id")
    out: dict[int, dict[str, Any]] = {}
    for level in table["lanes"][lane]:
        c = int(level["concurrency"])
        ttft: list[float] = []
        tpot: list[float] = []
        for ex in data["exchanges"]:
            m = ex.get("meta", {})
            if ex.get("suite") != name or m.get("lane") != lane or m.get("concurrency") != c:
                continue
            if run_id and m.get("run_id") not in (None, run_id):
                continue
            res = ex["results"][lane]
            t = res["timing"]
            if res.get("error") or t.get("ttft_ms") is None:
                continue
            ttft.append(t["ttft_ms"])
            n = t.get("output_tokens") or 0
            if n > 1 and t.get("e2e_ms") is not None:
                tpot.append((t["e2e_ms"] - t["ttft_ms"]) / (n - 1))
        out[c] = {
            "requests": level["ok"],
            "output_tokens": level["output_tokens"],
            "prompt_tokens_mean": level["prompt_tokens"] / max(1, level["ok"]),
            "output_tok_s": level["throughput_tok_s"],
            "ttft_p50_ms": float(np.percentile(ttft, 50)) if ttft else None,
            "ttft_p99_ms": float(np.percentile(ttft, 99)) if ttft else None,
            "tpot_p50_ms": float(np.percentile(tpot, 50)) if tpot else None,
            "tpot_p99_ms": float(np.percentile(tpot, 99)) if tpot else None,
        }
    return out


def _pct(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(100.0 * (a - b) / b, 2)


def _mean_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The metrics averaged over runs (each run's figure counts once)."""
    out: dict[str, Any] = {"runs": len(runs)}
    for m in METRICS:
        vals = [r[m] for r in runs if r.get(m) is not None]
        out[m] = float(np.mean(vals)) if vals else None
    return out


def compare(
    vllm: dict[int, list[dict[str, Any]]], ql: dict[int, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Per level: each tool's figures averaged over its runs, quantlab's difference from
    vLLM's in percent, and each tool's run-to-run difference (second run against the first:
    the noise the difference has to be read against)."""
    rows = []
    for c in sorted(set(vllm) & set(ql)):
        v, q = _mean_row(vllm[c]), _mean_row(ql[c])
        row: dict[str, Any] = {"concurrency": c, "vllm": v, "quantlab": q}
        row["vllm_runs"], row["quantlab_runs"] = vllm[c], ql[c]
        row["diff_pct"] = {m: _pct(q[m], v[m]) for m in METRICS}
        for tool, runs in (("vllm", vllm[c]), ("quantlab", ql[c])):
            if len(runs) > 1:
                row[f"{tool}_rerun_diff_pct"] = {m: _pct(runs[1][m], runs[0][m]) for m in METRICS}
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    head = "| in flight | tool | " + " | ".join(LABELS[m] for m in METRICS) + " |"
    lines = [head, "|" + "---|" * (len(METRICS) + 2)]

    def pcts(d: dict[str, float | None]) -> list[str]:
        return [f"{v:+.1f} %" if v is not None else "–" for v in d.values()]

    for r in rows:
        c = r["concurrency"]
        for tool, d in (("vllm bench serve", r["vllm"]), ("quantlab capacity", r["quantlab"])):
            cells = [f"{d[m]:.1f}" if d[m] is not None else "–" for m in METRICS]
            runs = f" (mean of {d['runs']})" if d["runs"] > 1 else ""
            lines.append(f"| {c} | {tool}{runs} | " + " | ".join(cells) + " |")
        lines.append(f"| {c} | **difference** | " + " | ".join(pcts(r["diff_pct"])) + " |")
        for tool in ("vllm", "quantlab"):
            if f"{tool}_rerun_diff_pct" in r:
                again = pcts(r[f"{tool}_rerun_diff_pct"])
                lines.append(f"| {c} | {tool} run 2 vs run 1 | " + " | ".join(again) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vllm", type=Path, required=True, help="folder of vllm bench result JSON")
    ap.add_argument(
        "--session", type=Path, action="append", required=True, help="repeatable: one a run"
    )
    ap.add_argument("--lane", required=True)
    ap.add_argument("--suite", help="capacity suite name in the session (default: the first)")
    ap.add_argument("--markdown", action="store_true", help="print the table, not JSON")
    a = ap.parse_args(argv)
    ql: dict[int, list[dict[str, Any]]] = {}
    for session in a.session:
        for c, row in quantlab_rows(session, a.lane, a.suite).items():
            ql.setdefault(c, []).append({"file": session.name, **row})
    rows = compare(vllm_rows(a.vllm), ql)
    if a.markdown:
        print(markdown(rows))
    else:
        worst = max(
            (abs(v) for r in rows for v in r["diff_pct"].values() if v is not None), default=None
        )
        print(json.dumps({"lane": a.lane, "levels": rows, "worst_abs_diff_pct": worst}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
