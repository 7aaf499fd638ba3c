"""Per-token log-probabilities, parsed from every wire format quantlab meets.

One shape for all of them, :class:`TokenDist`: the token the server chose at a position,
its log-probability, and the top-k alternatives it returned (key -> logprob). Keys must
mean the same token on both lanes being compared, so they are chosen per format:

* chat streams (OpenAI, vLLM, llama.cpp ``choices[0].logprobs.content``): the token's
  ``bytes`` when given (exact, and distinct for partial-UTF-8 pieces whose ``token`` text
  is empty or a replacement character), else the token text encoded as UTF-8;
* legacy completions (``tokens`` / ``token_logprobs`` / ``top_logprobs``): the token text;
* llama.cpp's native ``completion_probabilities`` (``/completion`` with ``n_probs``): the
  token id, with ``logprob`` (or ``prob`` under ``post_sampling_probs``);
* vLLM's ``prompt_logprobs`` (``{token_id: {logprob, rank, decoded_token}}``): the id.

Two entries with the same key at one position (two ids that decode to the same bytes) are
merged by adding their probabilities. Parsers skip what they cannot read rather than
raise: a malformed entry costs that position, never the answer.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from quantlab.release import discard

Key = Hashable


@dataclass(slots=True)
class TokenDist:
    """One position: the chosen token (``key``, ``text``, ``logprob``), the top-k returned
    (``top``: key -> logprob, best first), and ``rank`` of the chosen token when the
    server says it (vLLM prompt_logprobs; 1 = most likely)."""

    key: Key
    text: str
    logprob: float
    top: dict[Key, float] = field(default_factory=dict)
    rank: int | None = None

    def best(self) -> Key | None:
        """The most likely key among those returned (the chosen one if none returned)."""
        if not self.top:
            return self.key
        return max(self.top.items(), key=lambda kv: kv[1])[0]


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if not math.isnan(f) else None


def _merge(top: dict[Key, float], key: Key, lp: float) -> None:
    old = top.get(key)
    top[key] = lp if old is None else math.log(math.exp(old) + math.exp(lp))


def _chat_key(entry: dict[str, Any]) -> Key | None:
    raw = entry.get("bytes")
    tok = entry.get("token")
    if raw.__class__ is list and (raw or tok.__class__ is not str):
        try:
            return bytes(raw)  # validates: ints 0..255 only
        except (TypeError, ValueError):
            pass
    return tok.encode("utf-8", "surrogatepass") if isinstance(tok, str) else None


def _chat_entry(entry: Any) -> TokenDist | None:
    if not isinstance(entry, dict):
        return None
    key = _chat_key(entry)
    lp = _num(entry.get("logprob"))
    if key is None or lp is None:
        return None
    top: dict[Key, float] = {}
    for alt in entry.get("top_logprobs") or ():
        if isinstance(alt, dict):
            k, a = _chat_key(alt), _num(alt.get("logprob"))
            if k is not None and a is not None:
                _merge(top, k, a)
    text = entry.get("token")
    return TokenDist(key, text if isinstance(text, str) else "", lp, top)


def parse_chat(logprobs: Any) -> list[TokenDist]:
    """A chat chunk's (or answer's) ``choices[0].logprobs``: ``{"content": [entry…]}``,
    each entry ``{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}…]}``.
    None and an empty ``content`` give []."""
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list):
        return []
    return [d for d in map(_chat_entry, content) if d is not None]


def parse_completion(logprobs: Any) -> list[TokenDist]:
    """Legacy completions ``logprobs``: parallel lists ``tokens``, ``token_logprobs`` and
    ``top_logprobs`` (a list of ``{token text: logprob}``; entries may be null)."""
    if not isinstance(logprobs, dict):
        return []
    tokens = logprobs.get("tokens") or []
    lps = logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or []
    out: list[TokenDist] = []
    for i, tok in enumerate(tokens):
        lp = _num(lps[i]) if i < len(lps) else None
        if not isinstance(tok, str) or lp is None:
            continue
        top: dict[Key, float] = {}
        alts = tops[i] if i < len(tops) else None
        if isinstance(alts, dict):
            for k, a in alts.items():
                if (f := _num(a)) is not None:
                    _merge(top, str(k), f)
        out.append(TokenDist(tok, tok, lp, top))
    return out


def parse_llama_probs(probs: Any) -> list[TokenDist]:
    """llama.cpp's native ``completion_probabilities``: ``[{id, token, logprob,
    top_logprobs: [{id, token, logprob}…]}…]``, or ``prob`` / ``top_probs`` when
    ``post_sampling_probs`` is on. Keyed by token id."""
    out: list[TokenDist] = []
    for entry in probs if isinstance(probs, list) else ():
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int):
            continue
        lp = _lp_of(entry)
        if lp is None:
            continue
        top: dict[Key, float] = {}
        for alt in entry.get("top_logprobs") or entry.get("top_probs") or ():
            if isinstance(alt, dict) and isinstance(alt.get("id"), int):
                a = _lp_of(alt)
                if a is not None:
                    _merge(top, alt["id"], a)
        text = entry.get("token")
        out.append(TokenDist(entry["id"], text if isinstance(text, str) else "", lp, top))
    return out


def _lp_of(entry: dict[str, Any]) -> float | None:
    lp = _num(entry.get("logprob"))
    if lp is not None:
        return lp
    p = _num(entry.get("prob"))
    if p is None or p < 0:
        return None
    return math.log(p) if p > 0 else -math.inf


def parse_prompt_logprobs(
    prompt_logprobs: Any, token_ids: list[int], start: int = 0
) -> list[TokenDist]:
    """vLLM's ``choices[0].prompt_logprobs`` for a prompt of ``token_ids``: one entry per
    prompt token, the first null, each ``{"<id>": {logprob, rank, decoded_token}}`` holding
    the top-k and the prompt's own token (with its true rank, even beyond k). Returns the
    positions ``start..`` (e.g. the answer's, after the chat prompt). A position whose own
    token is missing is skipped, so the result can be shorter than asked."""
    if not isinstance(prompt_logprobs, list):
        return []
    out: list[TokenDist] = []
    for i in range(max(start, 1), min(len(token_ids), len(prompt_logprobs))):
        entry = prompt_logprobs[i]
        if not isinstance(entry, dict):
            continue
        top: dict[Key, float] = {}
        ranks: dict[int, int] = {}
        texts: dict[int, str] = {}
        for k, v in entry.items():
            try:
                tid = int(k)
            except (TypeError, ValueError):
                continue
            lp = _num(v.get("logprob")) if isinstance(v, dict) else _num(v)
            if lp is None:
                continue
            top[tid] = lp
            if isinstance(v, dict):
                if isinstance(v.get("rank"), int):
                    ranks[tid] = v["rank"]
                if isinstance(v.get("decoded_token"), str):
                    texts[tid] = v["decoded_token"]
        own = token_ids[i]
        if own not in top:
            continue
        lp = top[own]
        out.append(TokenDist(own, texts.get(own, ""), lp, top, ranks.get(own)))
    return out


_LP_KEY = b'"logprobs":{'
_NULL_LP = b'"logprobs":null'
_LP_OPEN = len(_LP_KEY) - 1  # from the key to the value's "{"
_LP_ENDS = (b"]}", b"null}")


def split_logprobs(
    payload: bytes, lo: int = 0, hi: int | None = None
) -> tuple[bytes, bytes | None]:
    """(the chunk with ``"logprobs": null``, the logprobs object's raw JSON) without
    parsing it: top-20 log-probabilities make a chunk ~10x larger, and parsing them is most
    of a stream's client CPU. The value ends before ``,"finish_reason"`` (vLLM and OpenAI
    put logprobs before it) or else where the choice closes (llama.cpp puts it last).
    Quotes inside JSON strings are escaped, so these markers cannot come from text; the
    cut must also end as a logprobs object does. A shape that fits neither gives the
    payload back whole (the client then parses all of it). A wrong cut cannot pass for
    data: the short part must still parse, and iter_dists stops at a raw part that does
    not. ``lo``/``hi``: the chunk is ``payload[lo:hi]`` (the client cuts it out of the
    network chunk that holds it without copying the event out first)."""
    if hi is None:
        hi = len(payload)
    i = payload.find(_LP_KEY, lo, hi)
    if i >= 0:
        start = i + _LP_OPEN
        j = payload.find(b',"finish_reason"', start, hi)
        if j < 0:
            j = payload.rfind(b"}]", start, hi)
        # ... and only where the value ends as a logprobs object does ("content" last:
        # "]}"; OpenAI's "refusal": null after it): a key between it and the marker
        # (another order) would otherwise ride along in the raw part
        if j > start and payload.endswith(_LP_ENDS, start, j):
            return payload[lo:i] + _NULL_LP + payload[j:hi], payload[start:j]
    return (payload if lo == 0 and hi == len(payload) else payload[lo:hi]), None


def iter_dists(chunks: Iterable[Any]) -> Iterator[TokenDist]:
    """The positions of an answer from its per-chunk ``logprobs`` (objects, or raw JSON
    bytes from split_logprobs), in order (a chunk may carry several tokens: vLLM with
    held-back UTF-8 or speculative decoding). Lazy: the shared-prefix comparison stops
    reading at the first divergence. Stops at a raw part that is not JSON (the positions
    after it could not be aligned)."""
    for lp in chunks:
        dists = chunk_dists(lp)
        if dists is None:
            return
        yield from dists


def chunk_dists(lp: Any) -> list[TokenDist] | None:
    """The positions in one chunk's ``logprobs`` (object or raw JSON bytes); None when
    raw bytes are not JSON (nothing after them can be aligned: see iter_dists)."""
    if isinstance(lp, bytes):
        try:
            lp = orjson.loads(lp)
        except orjson.JSONDecodeError:
            return None
    if isinstance(lp, dict) and "content" in lp:
        return parse_chat(lp)
    if isinstance(lp, dict) and "tokens" in lp:
        return parse_completion(lp)
    return []


def chunks_to_dists(chunks: Iterable[Any]) -> list[TokenDist]:
    """All positions of an answer (see iter_dists)."""
    return list(iter_dists(chunks))


class RawLogprobs:
    """A lane's per-chunk logprobs as the client kept them (parsed objects or raw JSON
    bytes). Session writers call ``to_dict()`` on what they cannot write: it is None, so a
    lane saved before its agreement is computed writes ``"logprobs": null``, never the
    raw data."""

    __slots__ = ("chunks",)

    def __init__(self, chunks: list[Any]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[Any]:
        return iter(self.chunks)

    def __len__(self) -> int:
        return len(self.chunks)

    def to_dict(self) -> None:
        return None


class LazyDists(Sequence[TokenDist]):
    """A lane's positions parsed on first use and kept (the reference is compared with
    every candidate, each needing a different length of it)."""

    def __init__(self, chunks: Iterable[Any], *, parsed: Iterable[TokenDist] = ()) -> None:
        """``parsed``: positions already parsed from earlier chunks (the live tracker's),
        ``chunks`` then being the ones after them."""
        self._it = iter_dists(chunks)
        self._seen: list[TokenDist] = list(parsed)
        self._done = False

    def _fill(self, n: int | None) -> None:
        while not self._done and (n is None or len(self._seen) < n):
            nxt = next(self._it, None)
            if nxt is None:
                self._done = True
            else:
                self._seen.append(nxt)

    def __iter__(self) -> Iterator[TokenDist]:
        i = 0
        while True:
            self._fill(i + 1)
            if i >= len(self._seen):
                return
            yield self._seen[i]
            i += 1

    def __len__(self) -> int:
        self._fill(None)
        return len(self._seen)

    def free(self) -> None:
        """Done with these positions: let them go in the background
        (quantlab.release); the object is empty afterwards. Only once nothing else reads
        them (no scoring thread still running)."""
        self._done = True
        discard(self._seen)

    def __getitem__(self, i: Any) -> Any:
        self._fill(None if isinstance(i, slice) or i < 0 else i + 1)
        return self._seen[i]

    def __bool__(self) -> bool:
        self._fill(1)
        return bool(self._seen)
