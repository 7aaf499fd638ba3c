"""Long-context cases of an exact token length, with facts planted at chosen depths.

A long-context suite (``kind: "long_context"``) holds a generator spec, not cases:
``settings.lengths`` ([{"label": "4K", "tokens": 4000}, …]), a ``system`` message, the
planted ``facts`` (key, depth 0..1, a ``plant`` sentence with ``{value}``, the
``question`` asked back, and ``values``: one is picked per length so lengths do not share
answers), the final ``ask`` (``{questions}`` is replaced by the numbered questions) and a
``filler`` vocabulary from which a plausible project-notes conversation is written.

Filler: user turns are an opener and 3–6 sentences, assistant turns an acknowledgement and
1–3 sentences, each template filled from ``filler.slots`` by a seeded random generator (so
runs repeat exactly, and no two paragraphs are the same). Besides the listed slots,
``{number}`` (20–950), ``{small}`` (2–9), ``{pct}`` (3–60) and ``{ticket}`` (HL-100…999)
are generated; a slot name ending in ``2`` (``{person2}``) draws a value different from
its base slot in the same sentence.

Exact length: the prompt is counted as the server will see it (chat template applied) by
the server's own tokenizer (``/tokenize``). Whole turn pairs are added while they fit,
then the last assistant turn is lengthened with more sentences of its kind, word by word and
then character by character, until the count equals the target (a closest fit below it is
kept, with a note, in the rare case no cut lands exactly). Depth is measured in characters
of the conversation (where the fact's sentence starts ÷ all message text). When no server
can count, lengths are estimated at :data:`CHARS_PER_TOKEN` characters a token and the case
says so (``meta.count_source == "estimate"``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from quantlab.records import Case, Fact

Messages = list[dict[str, str]]
#: Counts a message list's prompt tokens; None when the server cannot say.
Counter = Callable[[Messages], Awaitable[int | None]]

#: Fallback when no lane can count tokens: a rough average for English BPE vocabularies.
CHARS_PER_TOKEN = 4.0
_SLOT = re.compile(r"\{([a-z_]+?)(2?)\}")


class LongContextError(Exception):
    """A generator spec that cannot be used (the message says which key is wrong)."""


@dataclass
class LengthSpec:
    label: str
    tokens: int


@dataclass
class PlantedFact:
    key: str
    depth: float
    plant: str
    question: str
    values: list[str]


@dataclass
class GeneratorSpec:
    """A checked ``settings`` object of a long_context suite."""

    lengths: list[LengthSpec]
    system: str
    ask: str
    facts: list[PlantedFact]
    filler: dict[str, Any]
    seed: int = 0

    @classmethod
    def from_settings(cls, s: dict[str, Any], where: str = "long_context") -> GeneratorSpec:
        try:
            lengths = [LengthSpec(str(x["label"]), int(x["tokens"])) for x in s["lengths"]]
            facts = [
                PlantedFact(
                    key=str(f["key"]),
                    depth=float(f["depth"]),
                    plant=str(f["plant"]),
                    question=str(f["question"]),
                    values=[str(v) for v in f["values"]],
                )
                for f in s.get("facts", [])
            ]
            filler = dict(s["filler"])
            for key in ("user_openers", "user_sentences", "assistant_openers"):
                if not filler.get(key):
                    raise LongContextError(f"{where}: settings.filler.{key} is empty")
            spec = cls(
                lengths=lengths,
                system=str(s.get("system", "")),
                ask=str(s.get("ask", "Answer these questions:\n{questions}")),
                facts=facts,
                filler=filler,
                seed=int(s.get("seed", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LongContextError(f"{where}: bad generator settings ({exc!r})") from None
        for f in spec.facts:
            if not f.values or "{value}" not in f.plant or not 0.0 <= f.depth <= 1.0:
                raise LongContextError(
                    f"{where}: fact {f.key!r} needs values, a plant with {{value}} and a "
                    "depth between 0 and 1"
                )
        if any(ln.tokens < 64 for ln in spec.lengths):
            raise LongContextError(f"{where}: lengths must be at least 64 tokens")
        return spec


class FillerWriter:
    """Writes an endless, deterministic project-notes conversation from a vocabulary."""

    def __init__(self, filler: dict[str, Any], seed: int) -> None:
        self.f = filler
        self.rng = random.Random(seed)
        self.slots: dict[str, list[str]] = {
            k: [str(v) for v in vs] for k, vs in (filler.get("slots") or {}).items()
        }

    def _value(self, name: str, avoid: str | None) -> str:
        r = self.rng
        for _ in range(8):
            if name == "number":
                v = str(r.randint(20, 950))
            elif name == "small":
                v = str(r.randint(2, 9))
            elif name == "pct":
                v = str(r.randint(3, 60))
            elif name == "ticket":
                v = f"HL-{r.randint(100, 999)}"
            elif self.slots.get(name):
                v = r.choice(self.slots[name])
            else:
                return "{" + name + "}"
            if v != avoid:
                return v
        return v

    def fill(self, template: str) -> str:
        chosen: dict[str, str] = {}

        def sub(m: re.Match[str]) -> str:
            base, second = m.group(1), m.group(2)
            key = base + second
            if key not in chosen:
                chosen[key] = self._value(base, chosen.get(base) if second else None)
            return chosen[key]

        text = _SLOT.sub(sub, template)
        return text[:1].upper() + text[1:]

    def _sentences(self, pool: list[str], k: int) -> list[str]:
        return [self.fill(t) for t in self.rng.sample(pool, min(k, len(pool)))]

    def pair(self) -> tuple[str, str]:
        """One user note and the assistant's acknowledgement."""
        f, r = self.f, self.rng
        user = [self.fill(r.choice(f["user_openers"]))]
        user += self._sentences(f["user_sentences"], r.randint(3, 6))
        assistant = [self.fill(r.choice(f["assistant_openers"]))]
        if f.get("assistant_sentences"):
            assistant += self._sentences(f["assistant_sentences"], r.randint(1, 3))
        return " ".join(user), " ".join(assistant)


@dataclass
class BuiltCase:
    """A long-context case, or why a length was not built."""

    label: str
    target: int
    case: Case | None = None
    tokens: int | None = None
    count_source: str = "server"
    note: str = ""
    facts_depth: dict[str, float] = field(default_factory=dict)


class _Draft:
    """The conversation for one length: pairs of turns, facts planted, last turn cut."""

    def __init__(self, spec: GeneratorSpec, index: int) -> None:
        self.spec = spec
        self.writer = FillerWriter(spec.filler, spec.seed * 1000 + index)
        self.pairs: list[tuple[str, str]] = []
        self._ext = ""
        self._ext_rng = random.Random(spec.seed * 1000 + index + 500)
        self.values = {f.key: f.values[index % len(f.values)] for f in spec.facts}
        questions = "\n".join(f"{i}. {f.question}" for i, f in enumerate(spec.facts, 1))
        self.ask = spec.ask.replace("{questions}", questions)

    def ensure(self, n: int) -> None:
        while len(self.pairs) < n:
            self.pairs.append(self.writer.pair())

    def extension(self, words: int) -> str:
        """More assistant-voice sentences (at least ``words`` words) to lengthen the last
        assistant turn; the same text for every call on this draft."""
        while len(self._ext.split()) < words:
            pool = self.spec.filler.get("assistant_sentences") or self.spec.filler["user_sentences"]
            self._ext = (self._ext + " " + self.writer.fill(self._ext_rng.choice(pool))).strip()
        return self._ext

    def messages(self, n: int, extend: str = "") -> tuple[Messages, dict[str, float]]:
        """System + ``n`` pairs (``extend`` appended to the last assistant turn) + the ask;
        facts go into the user turn nearest their depth. Returns the messages and each
        fact's depth in characters."""
        self.ensure(n)
        pairs = [list(p) for p in self.pairs[:n]]
        if extend and pairs:
            pairs[-1][1] = f"{pairs[-1][1]} {extend}"
        planted: dict[int, list[PlantedFact]] = {}
        for f in self.spec.facts:
            idx = min(max(0, n - 1), int(f.depth * n)) if n else 0
            planted.setdefault(idx, []).append(f)
        msgs: Messages = []
        if self.spec.system:
            msgs.append({"role": "system", "content": self.spec.system})
        marks: dict[str, int] = {}
        pos = len(self.spec.system)
        for i, (user, assistant) in enumerate(pairs):
            for f in planted.get(i, []):
                sentences = user.split(". ")
                at = max(1, len(sentences) // 2)
                head = ". ".join(sentences[:at]) + (". " if at < len(sentences) else " ")
                line = f.plant.replace("{value}", self.values[f.key])
                marks[f.key] = pos + len(head)
                user = head + line + (" " + ". ".join(sentences[at:]) if sentences[at:] else "")
            msgs.append({"role": "user", "content": user})
            msgs.append({"role": "assistant", "content": assistant})
            pos += len(user) + len(assistant)
        msgs.append({"role": "user", "content": self.ask})
        total = pos + len(self.ask)
        depths = {k: round(v / total, 3) for k, v in marks.items()} if total else {}
        return msgs, depths


def _estimate(msgs: Messages) -> int:
    return round(sum(len(m["content"]) + 12 for m in msgs) / CHARS_PER_TOKEN)


async def _whole_pairs(
    draft: _Draft, count: Callable[[Messages], Awaitable[int]], target: int
) -> int:
    """The most whole filler pairs that fit ``target`` tokens: grow by doubling, then
    bisect."""
    lo, hi = 0, 1
    while True:
        m, _ = draft.messages(hi)
        if await count(m) > target:
            break
        lo, hi = hi, hi * 2
        if hi > 100_000:
            raise LongContextError("the filler writes nothing (empty templates?)")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        m, _ = draft.messages(mid)
        if await count(m) <= target:
            lo = mid
        else:
            hi = mid
    return lo


async def build_length(
    spec: GeneratorSpec, index: int, counter: Counter | None, case_id: str
) -> BuiltCase:
    """Build the case for ``spec.lengths[index]`` to exactly its token count."""
    length = spec.lengths[index]
    target = length.tokens
    draft = _Draft(spec, index)
    source = "server"
    calls = 0

    async def count(msgs: Messages) -> int:
        nonlocal source, calls
        calls += 1
        if source == "server" and counter is not None:
            n = await counter(msgs)
            if n is not None:
                return n
        source = "estimate"
        return _estimate(msgs)

    # Smallest conversation must fit at all.
    base, _ = draft.messages(0)
    if await count(base) > target:
        return BuiltCase(length.label, target, note="the system message and ask alone are longer")
    n = await _whole_pairs(draft, count, target)
    # Lengthen the last assistant turn with more of its own kind of sentences, word by
    # word and then character by character, until the count is exactly the target.
    best_msgs, best_depths = draft.messages(n)
    best = await count(best_msgs)
    if n > 0 and best < target:
        words = draft.extension(max(16, (target - best) * 2)).split(" ")
        k_lo, k_hi = 0, len(words)
        while k_hi - k_lo > 1:
            mid = (k_lo + k_hi) // 2
            msgs, depths = draft.messages(n, extend=" ".join(words[:mid]))
            c = await count(msgs)
            if c <= target:
                k_lo = mid
                if c > best:
                    best, best_msgs, best_depths = c, msgs, depths
            else:
                k_hi = mid
        stem = " ".join(words[:k_lo])
        nxt = words[k_lo] if k_lo < len(words) else ""
        for j in range(1, len(nxt) + 1):
            if best == target or source == "estimate":
                break
            msgs, depths = draft.messages(n, extend=(stem + " " + nxt[:j]).lstrip())
            c = await count(msgs)
            if c > target:
                break
            if c > best:
                best, best_msgs, best_depths = c, msgs, depths
    facts = [
        Fact(key=f.key, value=draft.values[f.key], depth=best_depths.get(f.key, f.depth))
        for f in spec.facts
    ]
    note = "" if best == target else f"closest fit {best} of {target} tokens"
    if source == "estimate":
        note = (
            f"no server could count tokens: length estimated at {CHARS_PER_TOKEN:g} "
            "characters a token"
        )
    case = Case(
        id=case_id,
        messages=best_msgs,
        facts=facts,
        group=length.label,
        meta={
            "target_tokens": target,
            "context_tokens": best,
            "count_source": source,
            "count_calls": calls,
            "turns": sum(1 for m in best_msgs if m["role"] != "system"),
        },
    )
    return BuiltCase(length.label, target, case, best, source, note, best_depths)
