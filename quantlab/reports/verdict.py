"""The draft verdict per candidate: is the quant a safe default here, and why.

Fixed rules, so two people reading one session get the same draft:

- **Not a safe default yet**: a significant drop (McNemar p < 0.05) overall, in a suite or
  in a case group; or long-context recall lower with a paired-bootstrap interval below 0;
  or a failure mode seen mostly on the candidate (≥ 2 more answers and ≥ 2× the
  reference's); or more errors on the candidate than on the reference;
- **Safe default here, within what was measured**: none of the above, the overall
  comparison could have detected a 10-point drop (minimum detectable difference ≤ 10
  points), and long context was measured without a loss;
- otherwise **Not enough evidence yet**.

:func:`assess` runs on an analysis dict (before its headline is written) and returns, per
candidate, the verdict, the reason, and the risky and holding findings as sentences.
"""

from __future__ import annotations

from typing import Any

from quantlab.reports.fmt import VERDICT_WORDS, diff_points, pct

RULES = (
    "- *Not a safe default yet*: a significant drop (McNemar p < 0.05) overall, in a suite "
    "or a case group; long-context recall lower (paired-bootstrap interval below 0); a "
    "failure mode seen mostly on the candidate (≥ 2 more answers and ≥ 2× the "
    "reference's); or more errors.",
    "- *Safe default here, within what was measured*: none of those, a 10-point drop "
    "would have been detected, and long context was measured without a loss.",
    "- *Not enough evidence yet*: anything in between.",
)


def _points(x: float | None) -> str:
    return "–" if x is None else f"{abs(x) * 100:.0f} points"


def risks(a: dict[str, Any], cand: str) -> tuple[list[str], list[str]]:
    """(risky findings, holding findings) for one candidate, each a sentence with numbers."""
    ref = a["reference"]
    risky: list[str] = []
    holds: list[str] = []
    scopes = [(s["suite"], s) for s in a["suites"] if s["comparisons"]]
    for g in a["groups"]:
        for name, b in g["groups"].items():
            scopes.append((f"{g['suite']} / {name}", b))
    for label, block in scopes:
        for c in block["comparisons"]:
            if c["candidate"] != cand:
                continue
            if c["verdict"] == "candidate_worse":
                risky.append(
                    f"**{label}**: pass rate {pct(c['cand_rate'])} vs {pct(c['ref_rate'])} for "
                    f"{ref} ({diff_points(c['difference'])}, McNemar p = "
                    f"{c['mcnemar']['p_value']:.3g}, {c['n_pairs']} cases)."
                )
            elif c["verdict"] == "too_few" and (c["difference"] or 0) <= -0.2:
                risky.append(
                    f"**{label}**: {diff_points(c['difference'])} against {ref} on "
                    f"{c['n_pairs']} cases (p = {c['mcnemar']['p_value']:.3g}): too few cases to "
                    "be sure, large enough to check first."
                )
            elif c["verdict"] in ("no_difference", "candidate_better") and "/" not in label:
                holds.append(
                    f"**{label}**: {pct(c['cand_rate'])} vs {pct(c['ref_rate'])} for {ref} "
                    f"({c['n_pairs']} cases; {VERDICT_WORDS[c['verdict']]})."
                )
    lc = a["long_context"]
    if lc:
        for d in lc["recall_difference"]:
            if d["candidate"] != cand or "mean_difference" not in d:
                continue
            if d["high"] < 0:
                risky.append(
                    f"**Long context**: recall {pct(d['mean_candidate'])} vs "
                    f"{pct(d['mean_reference'])} for {ref} per answer (difference "
                    f"{diff_points(d['mean_difference'])}, 95 % interval "
                    f"{diff_points(d['low'])} to {diff_points(d['high'])}, {d['n']} answers)."
                )
            elif d["low"] >= 0:
                few = d["n"] < 10
                holds.append(
                    f"**Long context**: recall {pct(d['mean_candidate'])} vs "
                    f"{pct(d['mean_reference'])} for {ref} over {d['n']} answers, no loss seen"
                    + (" (too few answers to rule one out)." if few else ".")
                )
        for e in lc["by_length"]:
            r, c = e["lanes"].get(ref), e["lanes"].get(cand)
            if r and c and (c["facts"]["rate"] or 0) + 0.2 <= (r["facts"]["rate"] or 0):
                risky.append(
                    f"**Long context at {e['label']}**: {cand} recalled "
                    f"{c['facts']['k']}/{c['facts']['n']} facts, {ref} "
                    f"{r['facts']['k']}/{r['facts']['n']}."
                )
    for name, d in a["failures"]["detectors"].items():
        c, r = d["fail"].get(cand, 0), d["fail"].get(ref, 0)
        if c >= r + 2 and c >= 2 * r:
            ex = next((e for e in d["examples"] if e["lane"] == cand), None)
            where = f" (e.g. `{ex['case']}`: {ex['note']})" if ex else ""
            risky.append(f"**{name}**: {c} answers of {cand} vs {r} of {ref}{where}.")
    for lane_rates in (a["overall"]["lanes"],):
        ce = lane_rates.get(cand, {}).get("errors", 0)
        re_ = lane_rates.get(ref, {}).get("errors", 0)
        if ce > re_:
            risky.append(f"**Errors**: {ce} cases of {cand} errored vs {re_} of {ref}.")
    conc = a["concurrency"]
    if conc and cand in conc["lanes"]:
        v = conc["lanes"][cand]
        rv = conc["lanes"].get(ref, {})
        if v["differ"] and v["differ"] > rv.get("differ", 0):
            risky.append(
                f"**Concurrency**: {v['differ']}/{v['compared']} of {cand}'s answers changed "
                f"with {conc['levels'][-1]} requests in flight (vs "
                f"{rv.get('differ', 0)}/{rv.get('compared', 0)} for {ref})."
            )
    return risky, holds


def verdict(a: dict[str, Any], cand: str, risky: list[str]) -> tuple[str, str]:
    cmp = next((c for c in a["overall"]["comparisons"] if c["candidate"] == cand), None)
    worse = any(
        c["candidate"] == cand and c["verdict"] == "candidate_worse"
        for s in [a["overall"], *a["suites"]]
        for c in s["comparisons"]
    )
    lc = a["long_context"]
    lc_loss = bool(
        lc
        and any(
            d["candidate"] == cand and "high" in d and d["high"] < 0
            for d in lc["recall_difference"]
        )
    )
    hard_risk = (
        worse
        or lc_loss
        or any(
            r.startswith(("**repetition", "**collapse", "**language_switch", "**Errors"))
            for r in risky
        )
    )
    if hard_risk or any("McNemar p" in r for r in risky):
        return (
            "Not a safe default yet",
            "the measurements below show a loss or a failure mode specific to the quant.",
        )
    # Measured (at least two answers on both lanes) and not below the reference.
    lc_ok = (
        bool(lc and any(d["candidate"] == cand and "low" in d for d in lc["recall_difference"]))
        and not lc_loss
    )
    if cmp and cmp["verdict"] in ("no_difference", "candidate_better") and lc_ok:
        return (
            "Safe default here, within what was measured",
            f"no drop detected over {cmp['n_pairs']} paired cases (a drop of "
            f"{_points(cmp['mdd'])} would likely have shown) and no "
            "long-context loss.",
        )
    n = cmp["n_pairs"] if cmp else 0
    return (
        "Not enough evidence yet",
        f"no significant loss was found, but {n} paired case{'s' if n != 1 else ''} "
        + (
            f"can only reveal a drop of about {_points(cmp['mdd'])} or more"
            if cmp and cmp["mdd"] is not None
            else "cannot reveal a drop"
        )
        + ("" if lc_ok else ", and long-context recall was not compared")
        + ".",
    )


def assess(a: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """candidate -> {"verdict", "why", "risky": [...], "holds": [...]}."""
    out = {}
    for cand in a["candidates"]:
        risky, holds = risks(a, cand)
        v, why = verdict(a, cand, risky)
        out[cand] = {"verdict": v, "why": why, "risky": risky, "holds": holds}
    return out
