"""The failure-modes report in Markdown: what an engineer reads before deciding.

Rendered from :func:`quantlab.reports.analysis.analyze` and nothing else, so its numbers
are the JSON report's. Order: headline first (the decision in one paragraph), then what was
compared, pass rates, the paired comparison, where the quant breaks first, long context,
concurrency, capacity, latency, findings and annotations with quoted examples, GPU
telemetry, definitions. A section whose suite did not run says so in one line; nothing is
estimated that was not measured.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any

from quantlab.reports.agreement import agreement_md
from quantlab.reports.analysis import rate_phrase
from quantlab.reports.fmt import (
    VERDICT_WORDS,
    cell,
    diff_points,
    fence,
    num,
    pct,
    rate_cell,
    table,
)
from quantlab.reports.shapes import Analysis, RateBlock
from quantlab.textsafe import safe_text


def _when(ts: float | None) -> str:
    if not ts:
        return "unknown time"
    return _dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


# ------------------------------------------------------------------ sections


def _title(a: Analysis) -> list[str]:
    ref = a["reference"]
    cands = a["candidates"]
    if ref is None:
        title = "quantlab report (empty session)"
    elif cands:
        title = f"quantlab report: {', '.join(cands)} vs {ref} (reference)"
    else:
        title = f"quantlab report: {ref} (single lane)"
    s = a["session"]
    suites = sorted({x for r in s["runs"] for x in (r.get("suites") or [])})
    line = (
        f"Session `{s['id']}`"
        + (f" (`{s['path']}`)" if s["path"] else "")
        + f", {_when(s['created_at'])}; {s['exchanges']} "
        f"exchange{'s' if s['exchanges'] != 1 else ''}, "
        f"{s['annotations']} annotation{'s' if s['annotations'] != 1 else ''}"
    )
    if suites:
        quick = any(r.get("quick") for r in s["runs"])
        line += f"; suites run: {', '.join(suites)}" + (" (quick versions)" if quick else "")
    cancelled = [r for r in s["runs"] if r.get("cancelled")]
    out = [f"# {title}", "", line + ".", ""]
    if cancelled:
        out += ["**A run was cancelled: the figures cover what finished.**", ""]
    return out


def _headline(a: Analysis) -> list[str]:
    out = ["## Headline", "", a["headline"], ""]
    for cand, v in (a.get("verdicts") or {}).items():
        out.append(
            f"**Draft verdict for {cand}: {v['verdict']}** — {v['why']} (The rules and the "
            "checks to pass before shipping: `--format brief`.)"
        )
        out.append("")
    return out


def _compared(a: Analysis) -> list[str]:
    out = ["## What was compared", ""]
    rows = []
    for lane in a["lanes"]:
        backend = lane["backend"] or "unknown"
        if lane["server_version"]:
            backend += f" {lane['server_version']}"
        rows.append(
            [
                f"**{lane['name']}**",
                lane["role"],
                f"`{lane['model']}`" if lane["model"] else None,
                backend,
                lane["quantization"] or lane["method"],
                num(lane["max_context"]) if lane["max_context"] else None,
                lane["base_url"],
            ]
        )
    out += table(["lane", "role", "model", "server", "quantization", "context", "URL"], rows)
    out.append("")
    described = [lane for lane in a["lanes"] if lane["method_description"]]
    for lane in described:
        out.append(f"- **{lane['name']}**: {lane['method_description']}")
    unknown = [lane["name"] for lane in a["lanes"] if not lane["method_description"]]
    if unknown:
        out.append(
            f"- {', '.join(unknown)}: quantization method not reported by the server nor "
            "readable from the model name."
        )
    out.append("")
    out += _machine(a["machine"])
    return out


def _machine(m: dict[str, Any]) -> list[str]:
    if not m:
        return ["Machine: not recorded in this session.", ""]
    bits = []
    for key, label in (("host", "host"), ("cpu", "CPU"), ("os", "OS")):
        if m.get(key):
            bits.append(f"{label} {m[key]}")
    ram = m.get("ram_gb") or m.get("ram_gib")
    if ram:
        bits.append(f"{ram:.0f} GB RAM" if isinstance(ram, int | float) else f"RAM {ram}")
    gpus = m.get("gpus")
    if isinstance(gpus, list) and gpus:
        descs = []
        for g in gpus:
            if isinstance(g, dict):
                name = g.get("name") or "GPU"
                mem = g.get("memory_total_mib") or g.get("mem_total_mib")
                descs.append(f"{name}" + (f" ({mem / 1024:.0f} GiB)" if mem else ""))
            else:
                descs.append(str(g))
        bits.append("GPUs: " + ", ".join(descs))
    elif "gpus" in m:
        bits.append("no GPU")
    extra = [k for k in m if k not in ("host", "cpu", "os", "ram_gb", "ram_gib", "gpus")]
    for k in extra[:6]:
        v = m[k]
        if isinstance(v, str | int | float):
            bits.append(f"{k} {v}")
    return [f"Machine: {'; '.join(bits) or 'recorded without details'}.", ""]


def _pass_rates(a: Analysis) -> list[str]:
    out = ["## Pass rates", ""]
    lanes = [x["name"] for x in a["lanes"]]
    if not a["suites"]:
        return [*out, "No exchanges in this session.", ""]
    out.append(
        "Cases passed / judged, rate and 95 % Wilson interval. A lane fails a case on an "
        "error, an undismissed `fail` finding, a confirmed warning or an annotation of "
        "severity ≥ 2 (see Definitions)."
    )
    out.append("")
    rows = []
    for s in a["suites"]:
        kind = s["kind"] + (
            f" (levels {', '.join(map(str, s['levels']))})" if len(s["levels"]) > 1 else ""
        )
        rows.append([s["suite"], kind, s["cases"], *(rate_cell(s["lanes"].get(x)) for x in lanes)])
    ov = a["overall"]
    if ov["cases"]:
        rows.append(
            [
                "**all quality cases**",
                "",
                ov["cases"],
                *(rate_cell(ov["lanes"].get(x)) for x in lanes),
            ]
        )
    out += table(["suite", "kind", "cases", *lanes], rows, "llr" + "l" * len(lanes))
    out.append("")
    out.append(
        "Quality cases = every suite but the load tests (concurrency, capacity), plus chat. "
        "Repetitions of a case count once."
    )
    out.append("")
    reasons = []
    for lane in lanes:
        r = ov["lanes"].get(lane, {}).get("reasons") or {}
        if r:
            reasons.append(f"- {lane} failed on: " + ", ".join(f"{k} {v}" for k, v in r.items()))
    if reasons:
        out += ["Why quality cases failed (a case can have several reasons):", "", *reasons, ""]
    return out


def _paired(a: Analysis) -> list[str]:
    ref = a["reference"]
    if not a["candidates"] or ref is None:
        return []
    out = ["## Reference vs candidate, paired", ""]
    out.append(
        f"Same cases, both lanes judged. `only {ref}` = {ref} passed and the candidate failed "
        "(b); `only cand.` = the reverse (c). Exact McNemar test on b and c."
    )
    out.append("")
    rows = []
    scopes: list[tuple[str, RateBlock]] = [(s["suite"], s) for s in a["suites"] if s["comparisons"]]
    if a["overall"]["cases"]:
        scopes.append(("**all quality cases**", a["overall"]))
    for label, block in scopes:
        for c in block["comparisons"]:
            rows.append(
                [
                    label,
                    c["candidate"],
                    c["n_pairs"],
                    c["both_pass"],
                    c["ref_only"],
                    c["cand_only"],
                    c["both_fail"],
                    diff_points(c["difference"]),
                    f"{c['mcnemar']['p_value']:.3g}",
                    diff_points(c["mdd"]).lstrip("+") if c["mdd"] is not None else None,
                    VERDICT_WORDS[c["verdict"]],
                ]
            )
    out += table(
        [
            "scope",
            "candidate",
            "pairs",
            "both pass",
            f"only {ref}",
            "only cand.",
            "both fail",
            "Δ pass rate",
            "p",
            "detectable Δ",
            "verdict",
        ],
        rows,
        "llrrrrrrrrl",
    )
    out.append("")
    for c in a["overall"]["comparisons"]:
        out.append(f"**{c['candidate']}:** {c['sentence']}")
        out.append("")
        if c["lost_cases"]:
            shown = ", ".join(f"`{x}`" for x in c["lost_cases"][:12])
            more = f" and {len(c['lost_cases']) - 12} more" if len(c["lost_cases"]) > 12 else ""
            out.append(f"Cases {c['candidate']} lost: {shown}{more}.")
        if c["won_cases"]:
            warned = c.get("won_with_warnings") or {}
            shown = ", ".join(
                f"`{x}`"
                + (f" (passed with warnings: {', '.join(warned[x])})" if x in warned else "")
                for x in c["won_cases"][:12]
            )
            out.append(f"Cases {c['candidate']} won: {shown}.")
        if c["lost_cases"] or c["won_cases"]:
            out.append("")
    return out


def _groups(a: Analysis) -> list[str]:
    if not a["groups"]:
        return []
    ref = a["reference"]
    lanes = [x["name"] for x in a["lanes"]]
    out = ["## Where the quant breaks first", ""]
    for g in a["groups"]:
        out.append(f"### {g['suite']}: by case group")
        out.append("")
        for title, blocks in (("group", g["groups"]), ("family", g["families"])):
            if not blocks:
                continue
            rows = []
            for name, b in blocks.items():
                deltas = []
                for c in b["comparisons"]:
                    deltas.append(
                        f"{c['candidate']} {diff_points(c['difference'])} "
                        f"({VERDICT_WORDS[c['verdict']]})"
                        if len(a["candidates"]) > 1
                        else f"{diff_points(c['difference'])} ({VERDICT_WORDS[c['verdict']]})"
                    )
                rows.append(
                    [
                        name,
                        b["cases"],
                        *(rate_cell(b["lanes"].get(x)) for x in lanes),
                        "; ".join(deltas),
                    ]
                )
            out += table([title, "cases", *lanes, f"Δ vs {ref}"], rows, "lr")
            out.append("")
        for cand, drops in g["breaks_first"].items():
            losing = [d for d in drops if d["difference"] is not None and d["difference"] < 0]
            if losing:
                worse = {
                    name
                    for name, b in g["groups"].items()
                    for c in b["comparisons"]
                    if c["candidate"] == cand and c["verdict"] == "candidate_worse"
                }
                order = ", ".join(
                    f"{d['group']} ({diff_points(d['difference'])}"
                    + (", significant" if d["group"] in worse else "")
                    + ")"
                    for d in losing
                )
                note = (
                    "descriptive: significant after Holm correction only where marked"
                    if worse
                    else "descriptive: none is significant"
                )
                out.append(
                    f"{cand}'s largest raw gaps against {ref}, largest first ({note}): {order}."
                )
            else:
                out.append(f"{cand} does not fall behind {ref} in any group of {g['suite']}.")
        sizes = [b["cases"] for b in g["groups"].values()]
        if sizes and min(sizes) < 20:
            held = (
                f"{sizes[0]} cases each"
                if min(sizes) == max(sizes)
                else f"{min(sizes)} to {max(sizes)} cases"
            )
            out.append(
                f"Groups hold {held}: only very large differences can show at this size; "
                "treat the order as a lead to read the answers, not as a ranking."
            )
        out.append("")
    return out


def _long_context(a: Analysis) -> list[str]:
    lc = a["long_context"]
    out = ["## Long context", ""]
    if lc is None:
        return [*out, "Not run (no long-context suite in this session).", ""]
    lanes = [x["name"] for x in a["lanes"]]
    out += _recall_by_length(lc, lanes) + _recall_by_fact(lc, lanes)
    out += [_recall_difference_line(d) for d in lc["recall_difference"]]
    if lc["recall_difference"]:
        out.append("")
    if lc["skipped"]:
        out.append("Lengths not sent:")
        out.append("")
        for s in lc["skipped"]:
            why = "; ".join(f"{v}" for v in (s.get("skipped") or {}).values()) or "no reason"
            out.append(f"- {s.get('label')} ({num(s.get('target_tokens'))} tokens): {why}")
        out.append("")
    estimated = [r for r in lc["rows"] if r.get("count_source") == "estimate"]
    if estimated:
        out.append(
            f"{len(estimated)} context(s) were sized by an estimate (no server could count "
            "tokens): their lengths are approximate."
        )
        out.append("")
    return out


def _recall_by_length(lc: Any, lanes: list[str]) -> list[str]:
    """The recall table per context length (empty when no length was sent)."""
    out: list[str] = []
    if lc["by_length"]:
        out.append(
            "Share of planted facts recalled, per context length (facts recalled / asked, 95 % "
            "Wilson interval), and the share of answers that recalled every fact."
        )
        out.append("")
        rows = []
        for e in lc["by_length"]:
            row: list[Any] = [e["label"], num(e["context_tokens"])]
            for lane in lanes:
                v = e["lanes"].get(lane)
                row.append(rate_cell(v["facts"]) if v else "not sent")
            for lane in lanes:
                v = e["lanes"].get(lane)
                row.append(f"{v['all_recalled']['k']}/{v['all_recalled']['n']}" if v else "–")
            for lane in lanes:
                row.append(num((e.get("ttft_p50_ms") or {}).get(lane), 0, " ms"))
            rows.append(row)
        out += table(
            [
                "length",
                "prompt tokens",
                *(f"{x} recall" for x in lanes),
                *(f"{x} all facts" for x in lanes),
                *(f"{x} TTFT p50" for x in lanes),
            ],
            rows,
            "lr" + "l" * len(lanes) + "r" * 2 * len(lanes),
        )
        out.append("")
    return out


def _recall_by_fact(lc: Any, lanes: list[str]) -> list[str]:
    """The recall table per planted fact over all lengths."""
    out: list[str] = []
    if lc["by_fact"]:
        rows = []
        for f in lc["by_fact"]:
            depth = (
                f"{f['depth_min'] * 100:.0f} %"
                if f["depth_min"] == f["depth_max"]
                else f"{f['depth_min'] * 100:.0f}–{f['depth_max'] * 100:.0f} %"
            )
            rows.append([f"`{f['key']}`", depth, *(rate_cell(f["lanes"].get(x)) for x in lanes)])
        out.append("Recall per planted fact, over all lengths (depth: 0 % = start of the context).")
        out.append("")
        out += table(["fact", "depth", *lanes], rows)
        out.append("")
    return out


def _recall_difference_line(d: Any) -> str:
    """One sentence on a candidate's recall against the reference's."""
    if "mean_difference" in d and d["low"] == d["high"] == 0:
        return (
            f"{d['reference']} and {d['candidate']} recalled the same share of facts in each "
            f"of the {d['n']} answers ({pct(d['mean_reference'])} on average)."
        )
    elif "mean_difference" in d:
        return (
            f"Mean recall per answer: {d['reference']} {pct(d['mean_reference'])}, "
            f"{d['candidate']} {pct(d['mean_candidate'])}; difference "
            f"{diff_points(d['mean_difference'])}, 95 % paired-bootstrap interval "
            f"{diff_points(d['low'])} to {diff_points(d['high'])} over {d['n']} answers"
            + (
                " (the interval includes 0: not enough evidence of a difference)."
                if d["low"] <= 0 <= d["high"]
                else "."
            )
        )
    else:
        return f"{d['candidate']} vs {d['reference']}: {d['note']}."


def _concurrency(a: Analysis) -> list[str]:
    c = a["concurrency"]
    out = ["## Concurrency", ""]
    if c is None:
        return [*out, "Not run (no concurrency suite in this session).", ""]
    levels = c["levels"]
    base = c["baseline"]
    others = [x for x in levels if x != base]
    out.append(
        f"Each lane's answers at {', '.join(map(str, others)) or '–'} requests in flight "
        f"compared with its own answers at {base} (same case, same repetition). At "
        "temperature 0 a batch-invariant server gives identical text."
    )
    out.append("")
    rows = []
    for lane, v in c["lanes"].items():
        lv = v["levels"]
        row = [
            lane,
            v["compared"],
            v["identical"],
            v["differ"],
            num(v["first_diff_min"]) if v["differ"] else "–",
        ]
        for level in levels:
            x = lv.get(str(level), {})
            row.append(
                f"{num(x.get('ttft_p50_ms'), 0)} / {num(x.get('e2e_p50_ms'), 0)} / "
                f"{num(x.get('tokens_per_s_p50'), 1)}"
            )
        rows.append(row)
    out += table(
        [
            "lane",
            "compared",
            "identical",
            "differ",
            "first divergence (char)",
            *(f"@{x}: TTFT / e2e ms / tok/s p50" for x in levels),
        ],
        rows,
        "lrrrr" + "r" * len(levels),
    )
    out.append("")
    for lane, v in c["lanes"].items():
        if v["compared"] and v["differ"] == 0:
            out.append(f"- {lane}: identical answers at every level.")
        elif v["differ"]:
            out.append(
                f"- {lane}: {v['differ']} of {v['compared']} answers changed with the batch; "
                f"the earliest change at character {v['first_diff_min']}."
            )
    out.append("")
    return out


def _capacity(a: Analysis) -> list[str]:
    cap = a["capacity"]
    out = ["## Capacity", ""]
    if cap is None:
        return [*out, "Not run (no capacity suite in this session).", ""]
    price = cap["gpu_hour_price"]
    out.append(
        f"GPU-hour price: ${price:.2f} (cost per 1M output tokens assumes the lane has the GPU "
        "to itself)."
        if price is not None
        else "No GPU-hour price given (`--gpu-hour-price`): cost per token not computed."
    )
    modes = set(cap["ttft_mode"].values())
    if len(modes) == 1:
        out.append(f"TTFT, every lane: {modes.pop()}.")
    else:
        for lane, mode in cap["ttft_mode"].items():
            out.append(f"TTFT for {lane}: {mode}.")
    out.append("")
    rows = []
    for lane, levels in cap["lanes"].items():
        for r in levels:
            rows.append(
                [
                    lane,
                    r["concurrency"],
                    f"{r['ok']}/{r['requests']}",
                    num(r["throughput_tok_s"], 1),
                    num(r["ttft_p50_ms"], 0),
                    num(r["ttft_p95_ms"], 0),
                    num(r["e2e_p50_ms"], 0),
                    num(r["tokens_per_s_user"], 1),
                    num(r["cost_per_1m_output_usd"], 2),
                ]
            )
    out += table(
        [
            "lane",
            "in flight",
            "ok",
            "throughput tok/s",
            "TTFT p50 ms",
            "TTFT p95 ms",
            "e2e p50 ms",
            "tok/s per user",
            "$ / 1M out",
        ],
        rows,
        "lrrrrrrrr",
    )
    out.append("")
    errs = [(lane, r) for lane, lv in cap["lanes"].items() for r in lv if r["errors"]]
    for lane, r in errs:
        out.append(f"- {lane} at {r['concurrency']}: errors: {'; '.join(r['errors'])}")
    if errs:
        out.append("")
    return out


def _latency(a: Analysis) -> list[str]:
    lat = a["latency"]
    out = ["## Latency (one request at a time)", ""]
    if lat is None:
        return [*out, "No single-stream answers with timings in this session.", ""]
    rows = []
    for lane, v in lat["lanes"].items():
        rows.append(
            [
                lane,
                v["answers"],
                num(v["ttft_p50_ms"], 0),
                num(v["ttft_p95_ms"], 0),
                num(v["itl_p50_ms"], 1),
                num(v["itl_p95_ms"], 1),
                num(v["e2e_p50_ms"], 0),
                num(v["e2e_p95_ms"], 0),
                num(v["tokens_per_s_p50"], 1),
                num(v["tokens_per_s_p5"], 1),
            ]
        )
    out += table(
        [
            "lane",
            "answers",
            "TTFT p50 ms",
            "TTFT p95 ms",
            "ITL p50 ms",
            "ITL p95 ms",
            "e2e p50 ms",
            "e2e p95 ms",
            "tok/s p50",
            "tok/s p5 (slow tail)",
        ],
        rows,
        "lrrrrrrrrr",
    )
    out.append("")
    return out


def _examples(examples: Sequence[dict[str, Any]], reference: str | None) -> list[str]:
    out = []
    for e in examples:
        out.append(f"- **{e['lane']}** on `{e['case']}` (exchange {e['exchange_id']}): {e['note']}")
        out.append(f"  Prompt: {cell(e['prompt'])}")
        out += ["", *("  " + x for x in fence(e["output"])), ""]
        if e.get("reference_output") is not None:
            out.append(f"  {reference} answered:")
            out += ["", *("  " + x for x in fence(e["reference_output"], max_lines=4)), ""]
    return out


def _findings(a: Analysis) -> list[str]:
    f = a["failures"]
    lanes = [x["name"] for x in a["lanes"]]
    out = ["## Findings by detector", ""]
    if not f["detectors"]:
        return [*out, "No detector findings.", ""]
    out.append(
        "Answers with a finding, per lane: `fail` counts toward failures unless dismissed; "
        "`warn` is a warning (it counts only once a person confirms it)."
    )
    out.append("")
    rows = []
    for name, d in f["detectors"].items():
        rows.append(
            [
                f"`{name}`",
                *(f"{d['fail'].get(x, 0)} / {d['warn'].get(x, 0)}" for x in lanes),
                sum(d["confirmed"].values()),
                sum(d["dismissed"].values()),
            ]
        )
    out += table(
        ["detector", *(f"{x} fail / warn" for x in lanes), "confirmed", "dismissed"],
        rows,
        "l" + "r" * (len(lanes) + 2),
    )
    out.append("")
    for name, d in f["detectors"].items():
        if not d["examples"]:
            continue
        out.append(f"### `{name}`: examples")
        out.append("")
        out += _examples(d["examples"], a["reference"])
    return out


def _annotations(a: Analysis) -> list[str]:
    f = a["failures"]
    out = ["## Human annotations by tag", ""]
    if not f["annotations"]:
        return [*out, "No annotations: nobody has reviewed these answers in quantlab yet.", ""]
    lanes = [x["name"] for x in a["lanes"]]
    rows = []
    for tag, t in f["annotations"].items():
        rows.append([tag, *(f"{t['count'].get(x, 0)} ({t['failing'].get(x, 0)})" for x in lanes)])
    out.append("Annotations per lane (in brackets: severity ≥ 2, which counts as a failure).")
    out.append("")
    out += table(["tag", *lanes], rows, "l" + "r" * len(lanes))
    out.append("")
    for tag, t in f["annotations"].items():
        if t["examples"]:
            out.append(f"### {tag}")
            out.append("")
            out += _examples(t["examples"], a["reference"])
    return out


def _telemetry(a: Analysis) -> list[str]:
    t = a["telemetry"]
    out = ["## GPU memory and power", ""]
    if t is None:
        return [*out, "No telemetry recorded in this session.", ""]
    if not t["gpus"]:
        return [*out, f"{t['points']} telemetry points, but {t.get('note', 'no GPU data')}.", ""]
    rows = []
    for gid, g in t["gpus"].items():
        mem = num(g["mem_used_peak_mib"] / 1024 if g["mem_used_peak_mib"] else None, 1)
        total = num(g["mem_total_mib"] / 1024 if g["mem_total_mib"] else None, 1)
        rows.append(
            [
                f"{gid}" + (f" {g['name']}" if g["name"] else ""),
                g["samples"],
                num(g["span_s"], 0, " s"),
                f"{mem} / {total}",
                num(g["mem_used_mean_mib"] / 1024 if g["mem_used_mean_mib"] else None, 1),
                num(g["power_mean_w"], 0),
                num(g["power_peak_w"], 0),
                num(g["power_limit_w"], 0),
                num(g["util_mean_pct"], 0),
                num(g["temp_max_c"], 0),
            ]
        )
    out += table(
        [
            "GPU",
            "samples",
            "span",
            "memory peak / total GiB",
            "memory mean GiB",
            "power mean W",
            "power peak W",
            "power limit W",
            "util mean %",
            "temp max °C",
        ],
        rows,
        "lrrrrrrrrr",
    )
    out.append("")
    out.append("Utilization is NVML's: the share of time any kernel ran, not how full the GPU was.")
    out.append("")
    return out


def _definitions(a: Analysis) -> list[str]:
    d = a["definitions"]
    names = {
        "pass_fail": "Pass / fail",
        "pass_rate": "Pass rate",
        "paired_comparison": "Paired comparison",
        "not_enough_cases": "Not enough cases to tell",
        "multiplicity": "Many groups, one family (Holm)",
        "mdd_assumption": "Detectable difference with no discordant pair",
        "recall": "Fact recall",
        "latency": "Latency",
        "capacity": "Capacity",
    }
    out = ["## Definitions", ""]
    for key, text in d.items():
        out.append(f"- **{names.get(key, key)}.** {text}")
    out.append("")
    return out


def _notes(a: Analysis) -> list[str]:
    notes = a["session"]["notes"]
    if not notes:
        return []
    return ["## Notes from loading the session", "", *(f"- {n}" for n in notes), ""]


def render(a: Analysis) -> str:
    """The Markdown report for an analysis dict."""
    parts: list[str] = []
    for section in (
        _title,
        _headline,
        _compared,
        _pass_rates,
        lambda a: agreement_md(a.get("agreement")),
        _paired,
        _groups,
        _long_context,
        _concurrency,
        _capacity,
        _latency,
        _findings,
        _annotations,
        _telemetry,
        _definitions,
        _notes,
    ):
        parts += section(a)
    # Answers, prompts and server messages are untrusted: no control character may reach
    # the terminal or viewer that shows the report (quantlab/textsafe.py).
    return safe_text("\n".join(parts).rstrip() + "\n")


__all__ = ["VERDICT_WORDS", "diff_points", "num", "pct", "rate_cell", "rate_phrase", "render"]
