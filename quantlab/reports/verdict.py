"""The draft verdict per candidate: is the quant a safe default here, and why.

Fixed rules, so two people reading one session get the same draft. "Significant" means
McNemar p < 0.05 *after Holm correction* across the candidate's comparisons in the report
(overall, each suite, each case group and family; see ``analysis._holm_correct``):

- **Not a safe default yet** (:func:`hard_risks`): a significant drop overall, in a suite
  or in a case group; or long-context recall lower with a paired-bootstrap interval below
  0; or a failure mode seen mostly on the candidate (≥ 2 more answers and ≥ 2× the
  reference's; repetition, collapse, language switch); or more errors on the candidate
  than on the reference;
- **Safe default here, within what was measured**: none of the above, the overall
  comparison shows no significant drop *and* could have detected a 10-point drop (minimum
  detectable difference ≤ 10 points: :func:`detects_meaningful_drop`, the same check the
  brief ticks), and long context was measured without a loss;
- otherwise **Not enough evidence yet** (e.g. a significant *improvement* on 20 pairs whose
  minimum detectable difference is 37 points).

:func:`assess` runs on an analysis dict (before its headline is written) and returns, per
candidate, the verdict, the reason, and the risky and holding findings as sentences.
"""

from __future__ import annotations

from typing import Any

from quantlab.reports.fmt import VERDICT_WORDS, diff_points, pct
from quantlab.reports.shapes import Analysis, CandidateVerdict, Comparison, RateBlock
from quantlab.reports.stats import MEANINGFUL_DIFFERENCE

NOT_SAFE = "Not a safe default yet"
SAFE = "Safe default here, within what was measured"
NOT_ENOUGH = "Not enough evidence yet"

RULES = (
    "- *Not a safe default yet*: a significant drop (McNemar p < 0.05 after Holm correction "
    "across the report's comparisons) overall, in a suite or a case group; long-context "
    "recall lower (paired-bootstrap interval below 0); a failure mode seen mostly on the "
    "candidate (≥ 2 more answers and ≥ 2× the reference's); or more errors.",
    "- *Safe default here, within what was measured*: none of those, no significant drop "
    "overall with a minimum detectable difference ≤ 10 points (a 10-point drop would have "
    "been detected), and long context was measured without a loss.",
    "- *Not enough evidence yet*: anything in between, including a significant improvement "
    "on too few cases to have seen a 10-point drop.",
)

#: Failure modes that make a candidate "not safe" when seen mostly on it.
HARD_MODES = ("repetition", "collapse", "language_switch")


def detects_meaningful_drop(cmp: Comparison | None) -> bool:
    """The overall comparison shows no significant drop and could have shown a 10-point
    one (MDD ≤ 10 points). Both the verdict and the brief's checklist use this."""
    if not cmp or cmp["verdict"] not in ("no_difference", "candidate_better"):
        return False
    return cmp["mdd"] is not None and cmp["mdd"] <= MEANINGFUL_DIFFERENCE


def _points(x: float | None) -> str:
    return "–" if x is None else f"{abs(x) * 100:.0f} points"


def risks(a: Analysis, cand: str) -> tuple[list[str], list[str]]:
    """(risky findings, holding findings) for one candidate, each a sentence with numbers."""
    risky: list[str] = []
    holds: list[str] = []
    _pass_rate_risks(a, cand, risky, holds)
    _long_context_risks(a, cand, risky, holds)
    risky += _failure_mode_risks(a, cand)
    risky += _error_risks(a, cand)
    risky += _concurrency_risks(a, cand)
    return risky, holds


def _scopes(a: Analysis) -> list[tuple[str, RateBlock]]:
    """(label, block) of every suite with comparisons, then every case group."""
    scopes: list[tuple[str, RateBlock]] = [(s["suite"], s) for s in a["suites"] if s["comparisons"]]
    for g in a["groups"]:
        for name, b in g["groups"].items():
            scopes.append((f"{g['suite']} / {name}", b))
    return scopes


def _p_text(c: Comparison) -> str:
    raw = f"McNemar p = {c['mcnemar']['p_value']:.3g}"
    if c.get("p_holm") is not None and c.get("family_size", 1) > 1:
        raw += f", Holm-adjusted p = {c['p_holm']:.3g}"
    return raw


def _pass_rate_risks(a: Analysis, cand: str, risky: list[str], holds: list[str]) -> None:
    ref = a["reference"]
    for label, block in _scopes(a):
        for c in block["comparisons"]:
            if c["candidate"] != cand:
                continue
            if c["verdict"] == "candidate_worse":
                risky.append(
                    f"**{label}**: pass rate {pct(c['cand_rate'])} vs {pct(c['ref_rate'])} for "
                    f"{ref} ({diff_points(c['difference'])}, {_p_text(c)}, "
                    f"{c['n_pairs']} cases)."
                )
            elif c["verdict"] == "too_few" and (c["difference"] or 0) <= -0.2:
                risky.append(
                    f"**{label}**: raw gap of {diff_points(c['difference'])} against {ref} on "
                    f"{c['n_pairs']} cases, not significant (p = {c['mcnemar']['p_value']:.3g})"
                    ": too few cases to be sure, large enough to check first."
                )
            elif c["verdict"] in ("no_difference", "candidate_better") and "/" not in label:
                holds.append(
                    f"**{label}**: {pct(c['cand_rate'])} vs {pct(c['ref_rate'])} for {ref} "
                    f"({c['n_pairs']} cases; {VERDICT_WORDS[c['verdict']]})."
                )


def _long_context_risks(a: Analysis, cand: str, risky: list[str], holds: list[str]) -> None:
    ref = a["reference"]
    lc = a["long_context"]
    if not lc:
        return
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


def _failure_mode_risks(a: Analysis, cand: str) -> list[str]:
    ref = a["reference"]
    out = []
    for name, d in a["failures"]["detectors"].items():
        c, r = d["fail"].get(cand, 0), d["fail"].get(ref, 0)
        if c >= r + 2 and c >= 2 * r:
            ex = next((e for e in d["examples"] if e["lane"] == cand), None)
            where = f" (e.g. `{ex['case']}`: {ex['note']})" if ex else ""
            out.append(f"**{name}**: {c} answers of {cand} vs {r} of {ref}{where}.")
    return out


def _error_risks(a: Analysis, cand: str) -> list[str]:
    ref = a["reference"]
    lanes = a["overall"]["lanes"]
    ce = lanes.get(cand, {}).get("errors", 0)
    re_ = lanes.get(ref or "", {}).get("errors", 0)
    return [f"**Errors**: {ce} cases of {cand} errored vs {re_} of {ref}."] if ce > re_ else []


def _concurrency_risks(a: Analysis, cand: str) -> list[str]:
    ref = a["reference"]
    conc = a["concurrency"]
    if not conc or cand not in conc["lanes"]:
        return []
    v = conc["lanes"][cand]
    rv = conc["lanes"].get(ref, {})
    if not (v["differ"] and v["differ"] > rv.get("differ", 0)):
        return []
    return [
        f"**Concurrency**: {v['differ']}/{v['compared']} of {cand}'s answers changed "
        f"with {conc['levels'][-1]} requests in flight (vs "
        f"{rv.get('differ', 0)}/{rv.get('compared', 0)} for {ref})."
    ]


def _significant_drop(a: Analysis, cand: str) -> bool:
    """A Holm-significant drop overall, in a suite or in a case group."""
    blocks = [a["overall"], *a["suites"]]
    blocks += [b for g in a["groups"] for b in g["groups"].values()]
    return any(
        c["candidate"] == cand and c["verdict"] == "candidate_worse"
        for b in blocks
        for c in b["comparisons"]
    )


def _recall_differences(a: Analysis, cand: str) -> list[dict[str, Any]]:
    lc = a["long_context"]
    return [d for d in (lc["recall_difference"] if lc else []) if d["candidate"] == cand]


def hard_risks(a: Analysis, cand: str, risky: list[str]) -> bool:
    """Any "Not a safe default yet" rule holds (module docstring)."""
    lc_loss = any("high" in d and d["high"] < 0 for d in _recall_differences(a, cand))
    modes = (*(f"**{m}" for m in HARD_MODES), "**Errors")
    return _significant_drop(a, cand) or lc_loss or any(r.startswith(modes) for r in risky)


def verdict(a: Analysis, cand: str, risky: list[str]) -> tuple[str, str]:
    """(verdict, why) by the rules of the module docstring, in that order."""
    if hard_risks(a, cand, risky):
        return (
            NOT_SAFE,
            "the measurements below show a loss or a failure mode specific to the quant.",
        )
    cmp = next((c for c in a["overall"]["comparisons"] if c["candidate"] == cand), None)
    diffs = _recall_differences(a, cand)
    # Measured (at least two answers on both lanes) and not below the reference.
    lc_ok = any("low" in d for d in diffs)
    if detects_meaningful_drop(cmp) and lc_ok:
        assert cmp is not None
        return (
            SAFE,
            f"no drop detected over {cmp['n_pairs']} paired cases (a drop of "
            f"{_points(cmp['mdd'])} would likely have shown) and no long-context loss.",
        )
    n = cmp["n_pairs"] if cmp else 0
    return (
        NOT_ENOUGH,
        f"no significant loss was found, but {n} paired case{'s' if n != 1 else ''} "
        + (
            f"can only reveal a drop of about {_points(cmp['mdd'])} or more"
            if cmp and cmp["mdd"] is not None
            else "cannot reveal a drop"
        )
        + ("" if lc_ok else ", and long-context recall was not compared")
        + ".",
    )


def assess(a: Analysis) -> dict[str, CandidateVerdict]:
    """candidate -> {"verdict", "why", "risky": [...], "holds": [...]}."""
    out: dict[str, CandidateVerdict] = {}
    for cand in a["candidates"]:
        risky, holds = risks(a, cand)
        v, why = verdict(a, cand, risky)
        out[cand] = {"verdict": v, "why": why, "risky": risky, "holds": holds}
    return out
