"""How long and how much one streamed answer may take before quantlab stops it.

One place for the client's limits, so ``quantlab.toml`` (``[client]``), the common flags
and every caller (ask, run, the TUI) mean the same thing. A night-long sweep depends on
them: a hung server must fail its lane in about a minute, not hold it for ten, and a server
that ignores ``max_tokens`` must not fill memory and disk.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """connect_s: seconds to open the TCP connection. stall_s: seconds without a single
    byte from the server (before or during the answer) before the lane fails. total_s:
    seconds for a whole answer (None: no limit). max_answer_bytes: bytes of one streamed
    response read before quantlab cuts it off (the text so far is kept), not counting
    the log-probabilities (~2 KB a token at top-20; bounded by :func:`token_cap`)."""

    connect_s: float = 10.0
    stall_s: float = 60.0
    total_s: float | None = 600.0
    max_answer_bytes: int = 8 * MIB

    def __post_init__(self) -> None:
        for name in ("connect_s", "stall_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be above 0")
        if self.total_s is not None and not self.total_s > 0:
            raise ValueError("total_s must be above 0")
        if self.max_answer_bytes < 1024:
            raise ValueError("max_answer_bytes must be at least 1024")


def token_cap(max_tokens: int | None) -> int | None:
    """Content chunks (or usage tokens) past which an answer is a runaway: clearly beyond
    what was asked, with room for servers that count a little differently."""
    if max_tokens is None or max_tokens < 1:
        return None
    return 2 * max_tokens + 64
