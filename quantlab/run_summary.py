"""Plain-text summary of a run's per-suite aggregates (``meta["results"]``), for the end of
``quantlab run`` and the runner pane. A short glance, not the report: ``quantlab report``
does the statistics."""

from __future__ import annotations

from typing import Any


def _num(v: Any, fmt: str = "{:.0f}") -> str:
    return "–" if v is None else fmt.format(v)


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)
    ]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return ["  " + fmt.format(*head), *("  " + fmt.format(*r) for r in rows)]


def summarize_suite(name: str, res: dict[str, Any]) -> list[str]:
    """A few lines for one suite's aggregate."""
    kind = res.get("kind")
    partial = " (partial: the run was stopped)" if res.get("partial") else ""
    lines = [f"{name} [{kind}]{partial}"]
    if kind == "cases":
        rows = []
        for lane, v in (res.get("lanes") or {}).items():
            ok = v["answers"] - v["flagged"] - v["errors"]
            rows.append([lane, str(v["answers"]), str(ok), str(v["flagged"]), str(v["errors"])])
        lines += _table(["lane", "answers", "clean", "flagged", "errors"], rows)
    elif kind == "long_context":
        summary = res.get("summary") or {}
        labels: list[str] = []
        for by in summary.values():
            labels += [lab for lab in by if lab not in labels]
        rows = [
            [lane, *(_num(by.get(lab), "{:.0%}") for lab in labels)] for lane, by in summary.items()
        ]
        if rows:
            lines.append("  facts recalled, by context length:")
            lines += _table(["lane", *labels], rows)
        for sk in res.get("skipped") or []:
            reasons = "; ".join(sorted(set((sk.get("skipped") or {}).values())))
            lines.append(f"  {sk.get('label')}: skipped — {reasons}")
    elif kind == "concurrency":
        levels = [str(x) for x in res.get("levels") or []]
        rows = []
        for lane, v in (res.get("lanes") or {}).items():
            lv = v.get("levels") or {}
            rows.append(
                [
                    lane,
                    f"{v.get('identical', 0)}/{v.get('compared', 0)}",
                    *(_num((lv.get(x) or {}).get("e2e_p50_ms")) for x in levels),
                ]
            )
        head = ["lane", "identical", *(f"e2e p50 ms @{x}" for x in levels)]
        lines += _table(head, rows)
    elif kind == "capacity":
        price = res.get("gpu_hour_price")
        rows = []
        for lane, steps in (res.get("lanes") or {}).items():
            for st in steps:
                rows.append(
                    [
                        lane,
                        str(st["concurrency"]),
                        _num(st.get("throughput_tok_s"), "{:.1f}"),
                        _num(st.get("ttft_p50_ms")),
                        _num(st.get("ttft_p95_ms")),
                        _num(st.get("tokens_per_s_user"), "{:.1f}"),
                        _num(st.get("cost_per_1m_output_usd"), "${:.2f}"),
                    ]
                )
        head = ["lane", "in flight", "tok/s", "TTFT p50", "TTFT p95", "tok/s/user", "$/1M out"]
        lines += _table(head, rows)
        modes = sorted(set((res.get("ttft_mode") or {}).values()))
        if modes:
            lines.append(f"  TTFT: {'; '.join(modes)}")
        if price is None:
            lines.append("  (give --gpu-hour-price to get a cost per 1M output tokens)")
    return lines


def summarize(results: dict[str, Any]) -> str:
    out: list[str] = []
    for name, res in results.items():
        out += summarize_suite(name, res)
    return "\n".join(out) + ("\n" if out else "")
