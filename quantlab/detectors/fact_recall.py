"""fact_recall: which facts planted in the context the answer gives back exactly.

Long-context cases plant facts (``case.facts``: key, value, depth, aliases) and ask them
back. A fact is recalled when its value, or one of its aliases, appears in the answer as
whole words after normalization (case, accents, punctuation, thousands separators:
"4,417" recalls "4417", "PRIYA NAIR." recalls "Priya Nair"). Nothing looser: a model that
answers "about 4,400" has not recalled 4417.

Fires when at least one fact is missing: fail, score = share of facts recalled; the
evidence lists the missing facts with their depth (0 = start of the context, 1 = end), so
a report can tell "forgets the middle" from "forgets everything".
"""

from __future__ import annotations

from quantlab.detectors.context import Context
from quantlab.detectors.textnorm import fold
from quantlab.records import Fact, Finding

NAME = "fact_recall"


def recalled(text: str, facts: list[Fact]) -> list[bool]:
    """For each fact, whether the answer recalls it (value or an alias, normalized)."""
    folded = fold(text)
    out = []
    for fact in facts:
        needles = [fold(v) for v in (fact.value, *fact.aliases)]
        out.append(any(n.strip() and n in folded for n in needles))
    return out


def check(ctx: Context) -> Finding | None:
    if ctx.case is None or not ctx.case.facts:
        return None
    facts = ctx.case.facts
    hits = recalled(ctx.text, facts)
    if all(hits):
        return None
    missing = [f for f, hit in zip(facts, hits, strict=True) if not hit]
    score = sum(hits) / len(facts)
    listed = ", ".join(f"{f.key} = {f.value!r} (depth {f.depth:.2f})" for f in missing[:6])
    more = f" and {len(missing) - 6} more" if len(missing) > 6 else ""
    evidence = f"missing {len(missing)}/{len(facts)}: {listed}{more}"
    if ctx.capped:
        evidence += "; the answer was capped at max_tokens"
    return ctx.finding(NAME, "fail", score, evidence)
