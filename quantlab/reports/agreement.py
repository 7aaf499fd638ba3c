"""The report section on token-level agreement (computed in quantlab.agreement.summary)."""

from __future__ import annotations

from typing import Any


def _ci(v: float | None, ci: list[float] | None, fmt: str, scale: float = 1.0) -> str:
    if v is None:
        return "–"
    text = format(v * scale, fmt)
    if ci:
        text += f" [{format(ci[0] * scale, fmt)}, {format(ci[1] * scale, fmt)}]"
    return text


def agreement_md(summary: dict[str, Any] | None) -> list[str]:
    """Markdown lines: a table per candidate lane and suite (and overall), or nothing when
    no lane was compared token by token."""
    if not summary or not summary.get("any"):
        return []
    out = [
        "## Token-level agreement with the reference",
        "",
        "KL(reference ‖ candidate) per generated token from the servers' top-k "
        "log-probabilities, and how often both put the same token first. 95 % intervals: "
        "bootstrap over cases. *shared-prefix*: positions up to the first token where the "
        "answers part (temperature 0); *teacher-forced*: the reference's whole answer "
        "scored by both servers (vLLM `prompt_logprobs`). "
        f"Approximation: {summary['approximation']} "
        "(its error against the full-vocabulary KL: docs/metrics.md).",
        "",
        "| suite | lane | method | cases | tokens | mean KL | p99 KL | same top token % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["rows"]:
        methods = ", ".join(f"{m} ×{n}" for m, n in r["methods"].items())
        ci = r["ci"]
        out.append(
            f"| {r['suite']} | {r['lane']} | {methods} (k={'/'.join(map(str, r['k']))}) "
            f"| {r['cases']} | {r['tokens']:,} "
            f"| {_ci(r['mean_kl'], ci['mean_kl'], '.4f')} "
            f"| {_ci(r['p99_kl'], ci['p99_kl'], '.3f')} "
            f"| {_ci(r['top1'], ci['top1'], '.1f', 100)} |"
        )
    out.append("")
    return out


def agreement_brief(summary: dict[str, Any] | None, lane: str) -> str | None:
    """One sentence for the brief: "KL 0.05 mean over 4,000 tokens, same top token 96 %"."""
    if not summary:
        return None
    rows = [r for r in summary.get("rows", []) if r["lane"] == lane and r["mean_kl"] is not None]
    row = next((r for r in rows if r["suite"] == "overall"), rows[0] if len(rows) == 1 else None)
    if row is None:
        return None
    how = " and ".join(row["methods"])
    return (
        f"Token-level agreement ({how}): KL {row['mean_kl']:.3f} mean over "
        f"{row['tokens']:,} tokens of {row['cases']} cases (p99 {row['p99_kl']:.2f}), same "
        f"top token {100 * row['top1']:.0f} %."
    )
