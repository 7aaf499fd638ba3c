"""The long-context export: one JSON object per long-context answer, for scripts.

Shape (issue 4: ``{"context_tokens", "prompt", "bf16_output", "quant_output"}``, "lane
names from the session; with more than two lanes, one field per lane"). The faithful and
useful reading adopted here:

- every lane gets ``"<lane>_output"`` (its answer text, None when it was not sent or
  failed, with ``"<lane>_error"`` saying why), named from the session's lane names;
- when the session has exactly two lanes, the fixed keys ``"bf16_output"`` (the reference
  lane) and ``"quant_output"`` (the candidate lane) are added too, so a script written
  against the issue's example works on any pair, whatever its lanes are called (a fixed
  key is left out only where it would clash with a lane-named key of the *other* lane);
- ``"prompt"`` is the final ask (the last user turn) and ``"messages"`` the whole
  conversation that was sent (the reference lane's), so the context itself is there;
- ``"context_tokens"`` is the prompt length the server counted (``count_source`` says
  whether a server counted it or it was estimated); ``"facts"`` lists the planted facts
  and ``"recall"`` maps each lane to ``{fact key: recalled?}``.
"""

from __future__ import annotations

from typing import Any

from quantlab.records import Fact
from quantlab.reports.analysis import pick_reference, suite_kind
from quantlab.session import Session


def rows(session: Session) -> list[dict[str, Any]]:
    """The export as a list of dicts, in the session's order."""
    from quantlab.detectors.fact_recall import recalled

    lanes = session.lanes
    reference = pick_reference(session)
    candidates = [x for x in lanes if x != reference]
    aliases: dict[str, str] = {}
    if reference is not None and len(candidates) == 1:
        aliases = {"bf16_output": reference, "quant_output": candidates[0]}
    lane_keys = {f"{lane}_output": lane for lane in lanes}
    out = []
    for ex in session.exchanges:
        if suite_kind(session, ex) != "long_context":
            continue
        m = ex.meta
        facts = [Fact.from_dict(f) for f in m.get("facts") or []]
        messages = ex.messages.get(reference or "") or next(iter(ex.messages.values()), [])
        row: dict[str, Any] = {
            "context_tokens": m.get("context_tokens"),
            "prompt": ex.prompt,
        }
        for key, lane in aliases.items():
            if lane_keys.get(key, lane) == lane:
                r = ex.results.get(lane)
                row[key] = r.text if r is not None and r.ok else None
        recall: dict[str, dict[str, bool]] = {}
        for lane in lanes:
            r = ex.results.get(lane)
            row[f"{lane}_output"] = r.text if r is not None and r.ok else None
            if r is None:
                skipped = (m.get("skipped_lanes") or {}).get(lane)
                row[f"{lane}_error"] = skipped or "not sent"
            elif not r.ok:
                row[f"{lane}_error"] = str(r.error)
            else:
                recall[lane] = dict(
                    zip((f.key for f in facts), recalled(r.text, facts), strict=True)
                )
        row.update(
            {
                "length_label": m.get("length_label"),
                "target_tokens": m.get("target_tokens"),
                "count_source": m.get("count_source"),
                "context_tokens_by_lane": m.get("context_tokens_by_lane") or {},
                "suite": ex.suite,
                "case_id": ex.case_id,
                "exchange_id": ex.id,
                "repetition": m.get("repetition", 0),
                "reference_lane": reference,
                "lanes": list(lanes),
                "facts": [f.to_dict() for f in facts],
                "recall": recall,
                "messages": messages,
            }
        )
        out.append(row)
    return out
