"""The quantization risk brief: a draft an engineer edits and sends, filled with measured
figures from the analysis.

It answers four questions in order: is the quant a safe default *here* (the verdict of
:mod:`quantlab.reports.verdict`, whose fixed rules the brief prints); where is it risky;
which checks must pass before shipping (each with its measured status); what the quant
buys in cost and capacity for what it costs in quality. Literature figures appear only in
a paragraph marked as such, never mixed with measurements.
"""

from __future__ import annotations

import datetime as _dt

from quantlab.reports import stats
from quantlab.reports.agreement import agreement_brief
from quantlab.reports.fmt import diff_points, num, rate_cell
from quantlab.reports.shapes import Analysis
from quantlab.reports.verdict import RULES, detects_meaningful_drop
from quantlab.textsafe import safe_text

LITERATURE = (
    "For context, from the literature (not measured here): 4-bit weight-only quantization "
    "keeps about 99 % of the BF16 average score on the Llama 3.1 family and FP8 is "
    "practically lossless (Kurtic et al. 2024, arXiv 2411.02355), but small models lose far "
    "more than the averages show; 4-bit quantization has been reported to lose up to about "
    "59 % on long-context tasks while short tasks hold (Mekala et al. 2025, arXiv "
    "2505.20276), and whether AWQ or GPTQ does better flips from model to model. Detecting a "
    "10-point drop in pass rate takes on the order of 120–160 paired cases."
)


def _cases_needed(discordant_rate: float) -> int:
    """Paired cases to detect a 10-point drop with 80 % power at this discordance."""
    n = stats.paired_sample_size(stats.MEANINGFUL_DIFFERENCE, max(discordant_rate, 0.15))
    return int(round(n / 10.0) * 10)


def _checks(a: Analysis, cand: str) -> list[str]:
    ref = a["reference"]
    cmp = next((c for c in a["overall"]["comparisons"] if c["candidate"] == cand), None)
    out = []

    def item(ok: bool | None, text: str, status: str) -> None:
        box = "[x]" if ok else "[ ]"
        out.append(f"- {box} {text} — *measured:* {status}")

    if cmp:
        need = _cases_needed((cmp["ref_only"] + cmp["cand_only"]) / max(cmp["n_pairs"], 1))
        item(
            detects_meaningful_drop(cmp),
            f"No significant drop in pass rate over enough paired cases to see a 10-point "
            f"drop (about {need} at this discordance).",
            f"{cmp['n_pairs']} cases, {diff_points(cmp['difference'])}, p = "
            f"{cmp['mcnemar']['p_value']:.3g}, detectable drop "
            f"{diff_points(cmp['mdd']).lstrip('+')}.",
        )
    else:
        item(False, "No significant drop in pass rate on paired quality cases.", "not run.")
    lc = a["long_context"]
    if lc and lc["by_length"]:
        longest = lc["by_length"][-1]
        r, c = longest["lanes"].get(ref), longest["lanes"].get(cand)
        d = next(
            (x for x in lc["recall_difference"] if x["candidate"] == cand and "low" in x), None
        )
        ref_recalls = bool(r and (r["facts"]["rate"] or 0) > 0)
        skipped = ", ".join(str(x.get("label")) for x in lc["skipped"])
        item(
            bool(d and d["low"] >= -0.05 and c and r and ref_recalls),
            "Long-context recall at the production context length no lower than the "
            "reference's (and the reference recalls there).",
            f"longest run {longest['label']}: {cand} {rate_cell(c['facts']) if c else 'not sent'}"
            f", {ref} {rate_cell(r['facts']) if r else 'not sent'}"
            + (f"; skipped lengths: {skipped}" if skipped else "")
            + ("" if ref_recalls else f"; {ref} itself recalled nothing at this length")
            + ".",
        )
    else:
        item(False, "Long-context recall at the production context length.", "not run.")
    modes = [
        f"{name} {d['fail'].get(cand, 0)} vs {d['fail'].get(ref, 0)}"
        for name, d in a["failures"]["detectors"].items()
        if name in ("repetition", "collapse", "language_switch")
    ]
    specific = [
        name
        for name, d in a["failures"]["detectors"].items()
        if name in ("repetition", "collapse", "language_switch")
        and d["fail"].get(cand, 0) >= d["fail"].get(ref, 0) + 2
    ]
    item(
        not specific and bool(a["overall"]["cases"]),
        "No degeneration specific to the quant (loops, collapse, language switches).",
        ("; ".join(modes) if modes else "none found") + f" ({cand} vs {ref}).",
    )
    conc = a["concurrency"]
    if conc and cand in conc["lanes"]:
        v = conc["lanes"][cand]
        item(
            v["differ"] <= conc["lanes"].get(ref, {}).get("differ", 0),
            "Answers stable under concurrency (no more changes with batching than the reference).",
            f"{cand} {v['identical']}/{v['compared']} identical at {conc['levels'][-1]} vs "
            f"{conc['levels'][0]} in flight.",
        )
    else:
        item(False, "Answers stable under concurrency.", "not run.")
    cap = a["capacity"]
    if cap and cand in cap["lanes"]:
        top = cap["lanes"][cand][-1]
        cold = str(cap["ttft_mode"].get(cand, "")).startswith("cold")
        item(
            cold and top["ok"] == top["requests"],
            "Capacity measured at production concurrency with cold TTFT, without errors.",
            f"up to {top['concurrency']} in flight (is that your production load?), "
            f"{top['ok']}/{top['requests']} ok, TTFT {cap['ttft_mode'].get(cand, 'unknown')}.",
        )
    else:
        item(False, "Capacity at production concurrency, cold TTFT.", "not run.")
    n_ann = a["failures"]["annotation_count"]
    reviewed = sum(
        sum(d["confirmed"].values()) + sum(d["dismissed"].values())
        for d in a["failures"]["detectors"].values()
    )
    item(
        n_ann > 0 or reviewed > 0,
        "A person has read the candidate's failures (annotations, findings confirmed or "
        "dismissed).",
        f"{n_ann} annotation{'s' if n_ann != 1 else ''}, {reviewed} finding"
        f"{'s' if reviewed != 1 else ''} reviewed.",
    )
    gpus = (a["machine"] or {}).get("gpus")
    item(
        bool(gpus),
        "Measured on the production GPU and server version.",
        (f"GPUs recorded: {len(gpus)}" if gpus else "no GPU recorded in this session")
        + "; servers: "
        + ", ".join(
            f"{x['name']} {x['backend'] or '?'} {x['server_version'] or ''}".strip()
            for x in a["lanes"]
        )
        + ".",
    )
    return out


def _tradeoff(a: Analysis, cand: str) -> list[str]:
    ref = a["reference"]
    out = []
    lat = a["latency"]
    if lat and ref in lat["lanes"] and cand in lat["lanes"]:
        r, c = lat["lanes"][ref], lat["lanes"][cand]
        out.append(
            f"- Speed, one request at a time: {cand} decodes at {num(c['tokens_per_s_p50'], 0)} "
            f"tok/s vs {num(r['tokens_per_s_p50'], 0)} (median), TTFT p50 "
            f"{num(c['ttft_p50_ms'], 0)} ms vs {num(r['ttft_p50_ms'], 0)} ms, e2e p50 "
            f"{num(c['e2e_p50_ms'], 0)} ms vs {num(r['e2e_p50_ms'], 0)} ms."
        )
    cap = a["capacity"]
    if cap and ref in cap["lanes"] and cand in cap["lanes"]:
        rr = {x["concurrency"]: x for x in cap["lanes"][ref]}
        cc = {x["concurrency"]: x for x in cap["lanes"][cand]}
        for level in sorted(set(rr) & set(cc)):
            r, c = rr[level], cc[level]
            cost = ""
            if r["cost_per_1m_output_usd"] and c["cost_per_1m_output_usd"]:
                cost = (
                    f", ${c['cost_per_1m_output_usd']:.2f} vs ${r['cost_per_1m_output_usd']:.2f} "
                    "per 1M output tokens"
                )
            out.append(
                f"- At {level} in flight: {num(c['throughput_tok_s'], 0)} vs "
                f"{num(r['throughput_tok_s'], 0)} output tok/s, TTFT p95 "
                f"{num(c['ttft_p95_ms'], 0)} vs {num(r['ttft_p95_ms'], 0)} ms{cost}."
            )
        if cap["gpu_hour_price"] is None:
            out.append("- No GPU-hour price was given: cost per token not computed.")
    t = a["telemetry"]
    if t and t["gpus"]:
        for gid, g in t["gpus"].items():
            if g["mem_used_peak_mib"] is not None:
                out.append(
                    f"- GPU {gid}: memory peak {g['mem_used_peak_mib'] / 1024:.1f} GiB"
                    + (f" of {g['mem_total_mib'] / 1024:.1f}" if g["mem_total_mib"] else "")
                    + (f", power mean {g['power_mean_w']:.0f} W" if g["power_mean_w"] else "")
                    + " (both servers together unless they ran apart)."
                )
    else:
        out.append("- GPU memory and power: no telemetry recorded in this session.")
    ov = a["overall"]
    if ov["cases"] and ref in ov["lanes"] and cand in ov["lanes"]:
        out.append(
            f"- Quality: {cand} passed {rate_cell(ov['lanes'][cand])}, {ref} "
            f"{rate_cell(ov['lanes'][ref])} of the quality cases."
        )
    if not out:
        out.append("- Nothing measured on speed, capacity or cost in this session.")
    return out


def render(a: Analysis) -> str:
    """The brief as Markdown."""
    ref = a["reference"]
    cands = a["candidates"]
    s = a["session"]
    when = (
        _dt.datetime.fromtimestamp(s["created_at"]).strftime("%Y-%m-%d") if s["created_at"] else "?"
    )
    if ref is None or not cands:
        return (
            "# Quantization risk brief (draft)\n\nThis session has no candidate lane to "
            "compare with a reference: nothing to brief.\n"
        )
    lines = [
        f"# Quantization risk brief (draft): {', '.join(cands)} in place of {ref}",
        "",
        f"*Draft written by quantlab from session `{s['id']}` ({when}, {s['exchanges']} "
        f"exchange{'s' if s['exchanges'] != 1 else ''}). Every figure is measured in that "
        "session unless marked as literature; "
        "edit before sharing.*",
        "",
    ]
    for cand in cands:
        lane = next(x for x in a["lanes"] if x["name"] == cand)
        ref_lane = next(x for x in a["lanes"] if x["name"] == ref)
        if len(cands) > 1:
            lines += [f"## {cand}", ""]
        lines.append("### The quantization")
        lines.append("")
        lines.append(
            f"- **{cand}**: `{lane['model'] or '?'}` on {lane['backend'] or 'an unknown server'}"
            + (f" {lane['server_version']}" if lane["server_version"] else "")
            + (
                f"; {lane['method_description']}"
                if lane["method_description"]
                else "; quantization method not recorded (check the model card)."
            )
        )
        lines.append(
            f"- **{ref}** (reference): `{ref_lane['model'] or '?'}`"
            + (f"; {ref_lane['method_description']}" if ref_lane["method_description"] else "")
        )
        lines.append("")
        v = a["verdicts"][cand]
        risky, holds, verdict, why = v["risky"], v["holds"], v["verdict"], v["why"]
        lines += ["### Is it a safe default here?", "", f"**{verdict}**: {why}", ""]
        lines += ["### Where it is risky", ""]
        lines += [f"- {r}" for r in risky] or ["- Nothing measured here points to a risk."]
        lines.append("")
        if holds:
            lines += ["### Where it holds", "", *(f"- {h}" for h in holds), ""]
        if tla := agreement_brief(a["agreement"], cand):
            lines += ["### Token-level agreement", "", tla, ""]
        lines += ["### Checks that must pass before shipping", "", *_checks(a, cand), ""]
        lines += ["### Cost, capacity and quality", "", *_tradeoff(a, cand), ""]
    ov = a["overall"]
    cmp = ov["comparisons"][0] if ov["comparisons"] else None
    lines += ["## How much these numbers can say", ""]
    if cmp and cmp["n_pairs"]:
        lines.append(
            f"{cmp['n_pairs']} paired quality cases. {cmp['sentence']} Pass rates carry 95 % "
            "Wilson intervals in the full report (`quantlab report SESSION --format md`)."
        )
    else:
        lines.append("No paired quality cases were run: quality is unmeasured.")
    lines += ["", LITERATURE, "", "### How the verdict is drawn", ""]
    lines += [*RULES, ""]
    return safe_text("\n".join(lines).rstrip() + "\n")  # untrusted text: quantlab/textsafe.py
