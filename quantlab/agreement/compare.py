"""Token-level agreement of one candidate lane with the reference lane.

Two methods, and every result says which it used:

* ``shared-prefix`` (any backend that streams ``top_logprobs``): at temperature 0 both
  lanes see the same context until their chosen tokens first differ. Positions 0..d are
  compared, d being that first divergence (position d still had the same context on both
  sides; after it the contexts differ and a KL would compare different questions).
* ``teacher-forced`` (vLLM ``prompt_logprobs``): the reference's whole answer is scored on
  both servers as a prompt, so every position of it is compared (see teacher.py).

Per position: KL(reference ‖ candidate) (kl.py's "union + other" estimate), whether both
put the same token first (top-1 agreement), and the rank of the reference's token in the
candidate's list (None when the candidate did not return it among its k).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from quantlab.agreement.kl import APPROXIMATION, kl_topk, rank_of, top1
from quantlab.agreement.logprobs import TokenDist

SHARED_PREFIX = "shared-prefix"
TEACHER_FORCED = "teacher-forced"


@dataclass(slots=True)
class Agreement:
    """One candidate lane's agreement with the reference, per position, as kept in the
    session (``LaneResult.agreement``). ``diverged_at``: index of the first token where
    the lanes chose differently (shared-prefix), None when they never did over the
    compared tokens. ``note``: why positions are missing or a method was not possible."""

    method: str
    reference: str
    k: int
    kl: list[float] = field(default_factory=list)
    top1: list[bool] = field(default_factory=list)
    ref_rank: list[int | None] = field(default_factory=list)
    diverged_at: int | None = None
    note: str | None = None

    @property
    def positions(self) -> int:
        return len(self.kl)

    @property
    def mean_kl(self) -> float | None:
        return sum(self.kl) / len(self.kl) if self.kl else None

    @property
    def top1_rate(self) -> float | None:
        return sum(self.top1) / len(self.top1) if self.top1 else None

    def line(self) -> str:
        """``KL 0.012 · top-1 99 % · diverged at token 41`` (the lane's live line)."""
        if not self.kl:
            return f"no token agreement: {(self.note or 'no positions to compare')[:60]}"
        parts = [f"KL {self.mean_kl:.3f}", f"top-1 {100 * (self.top1_rate or 0):.0f} %"]
        if self.method == SHARED_PREFIX:
            if self.diverged_at is None:
                parts.append(f"same {self.positions} token{'s' * (self.positions != 1)}")
            else:
                parts.append(f"diverged at token {self.diverged_at}")
        else:
            parts.append(f"teacher-forced {self.positions} token{'s' * (self.positions != 1)}")
        return " · ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "reference": self.reference,
            "k": self.k,
            "approximation": APPROXIMATION,
            "positions": self.positions,
            "mean_kl": None if self.mean_kl is None else round(self.mean_kl, 6),
            "top1_rate": None if self.top1_rate is None else round(self.top1_rate, 6),
            "diverged_at": self.diverged_at,
            "kl": [round(x, 6) for x in self.kl],
            "top1": [int(x) for x in self.top1],
            "ref_rank": list(self.ref_rank),
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Agreement:
        return cls(
            method=str(d.get("method", SHARED_PREFIX)),
            reference=str(d.get("reference", "")),
            k=int(d.get("k") or 0),
            kl=[float(x) for x in d.get("kl") or []],
            top1=[bool(x) for x in d.get("top1") or []],
            ref_rank=[None if r is None else int(r) for r in d.get("ref_rank") or []],
            diverged_at=d.get("diverged_at"),
            note=d.get("note"),
        )


def agreement_line(d: dict[str, Any] | None) -> str | None:
    """The lane's one-line summary from a session's ``agreement`` dict; None when there is
    none or it cannot be read (a hand-edited file must not break a screen)."""
    if not d:
        return None
    try:
        return Agreement.from_dict(d).line()
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _position(ref: TokenDist, cand: TokenDist) -> tuple[float, bool, int | None]:
    rtop = ref.top or {ref.key: ref.logprob}
    ctop = cand.top or {cand.key: cand.logprob}
    kl = kl_topk(rtop, ctop)
    same = top1(rtop) == top1(ctop)
    rank = cand.rank if cand.rank is not None and cand.key == ref.key else None
    return kl, same, rank if rank is not None else rank_of(ref.key, ctop)


def shared_prefix(
    ref: Sequence[TokenDist],
    cand: Sequence[TokenDist],
    *,
    reference: str,
    k: int,
    so_far: Agreement | None = None,
) -> Agreement:
    """Compare the positions both lanes reached with the same context (0..first
    divergence, inclusive). Needs both lanes at temperature 0 to mean anything.
    ``so_far``: this comparison of the first positions already made (the live one,
    live.py), continued from where it stopped instead of computed again."""
    out = so_far if so_far is not None else Agreement(SHARED_PREFIX, reference, k)
    n = out.positions
    extend_shared(out, zip(islice(ref, n, None), islice(cand, n, None), strict=False))
    if not ref or not cand:
        out.note = "no log-probabilities from " + ("the reference" if not ref else "this lane")
    return out


def extend_shared(out: Agreement, pairs: Iterable[tuple[TokenDist, TokenDist]]) -> int:
    """Append the next aligned (reference, candidate) positions to a shared-prefix
    ``out``, stopping after the first divergence; returns how many were added. The one
    rule for the final comparison and the live one (live.py), so both give the same."""
    added = 0
    if out.diverged_at is not None:
        return 0
    for r, c in pairs:
        kl, same, rank = _position(r, c)
        out.kl.append(kl)
        out.top1.append(same)
        out.ref_rank.append(rank)
        added += 1
        if r.key != c.key:
            out.diverged_at = len(out.kl) - 1
            break
    return added


def teacher_forced(
    ref: Sequence[TokenDist], cand: Sequence[TokenDist], *, reference: str, k: int
) -> Agreement:
    """Compare position by position two scorings of the same token sequence (the
    reference's answer); positions are matched by index and must hold the same token."""
    out = Agreement(TEACHER_FORCED, reference, k)
    for r, c in zip(ref, cand, strict=False):
        if r.key != c.key:  # both scored the same ids: a mismatch is a server bug
            out.note = "the two scorings disagree on the answer's tokens; stopped there"
            break
        kl, same, rank = _position(r, c)
        out.kl.append(kl)
        out.top1.append(same)
        out.ref_rank.append(rank)
    return out
