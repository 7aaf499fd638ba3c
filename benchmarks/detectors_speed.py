"""Time each detector on 2,000-character answers; print one JSON object.

Detectors run on every lane of every exchange, live, so each must stay well under a
millisecond on a typical long answer. Inputs: the recorded local-pair answers
(tests/data/pair_outputs.jsonl) cut or tiled to 2,000 characters, plus two worst cases (a
tight loop and fluent non-repeating prose). Also times the pure-Python word LCS that
rapidfuzz replaces in the divergence detector, to show why it is a dependency.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from quantlab.detectors import DETECTORS
from quantlab.detectors.context import Context
from quantlab.detectors.textnorm import words
from quantlab.records import Case, Fact

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "pair_outputs.jsonl"
SIZE = 2000
REPEAT = 20


def _tile(text: str) -> str:
    return (text * (SIZE // max(1, len(text)) + 1))[:SIZE] if text else text


def _inputs() -> list[tuple[Case, str, str, str | None]]:
    out = []
    for line in DATA.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        case = Case(
            id=r["id"],
            messages=[{"role": "user", "content": r["prompt"]}],
            expect=r.get("expect"),
            expect_regex=r.get("expect_regex"),
            format=r.get("format"),
            facts=[Fact.from_dict(f) for f in r.get("facts", [])],
        )
        ref = _tile(r["bf16"]["text"])
        out.append((case, _tile(r["q4_0"]["text"]), ref, r["q4_0"]["finish_reason"]))
    prose = " ".join(f"word{i} and sentence {i * 7} of a long answer." for i in range(400))
    case = Case(id="synthetic", messages=[{"role": "user", "content": "Explain."}], expect="42")
    out.append((case, ("a majestic feline, " * 200)[:SIZE], prose[:SIZE], "length"))
    out.append((case, prose[:SIZE], ("a majestic feline, " * 200)[:SIZE], "stop"))
    return out


def _lcs_words(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def main() -> None:
    inputs = _inputs()
    per: dict[str, list[float]] = {name: [] for name in DETECTORS}
    shared: list[float] = []
    for case, text, ref, finish in inputs:
        for _ in range(REPEAT):
            ctx = Context(text=text, case=case, reference=ref, finish_reason=finish, lane="q")
            t0 = time.perf_counter()
            _ = ctx.tokens, ctx.loop  # shared analysis, computed once per answer
            shared.append(time.perf_counter() - t0)
            for name, check in DETECTORS.items():
                t0 = time.perf_counter()
                check(ctx)
                per[name].append(time.perf_counter() - t0)
    ms = {n: sorted(v) for n, v in per.items()}
    result = {
        "benchmark": "detectors_speed",
        "python": platform.python_version(),
        "answer_chars": SIZE,
        "answers": len(inputs),
        "repeat": REPEAT,
        "shared_tokenize_and_loop_ms": {
            "median": round(sorted(shared)[len(shared) // 2] * 1e3, 4),
            "max": round(max(shared) * 1e3, 4),
        },
        "per_detector_ms": {
            n: {
                "median": round(v[len(v) // 2] * 1e3, 4),
                "p95": round(v[int(len(v) * 0.95)] * 1e3, 4),
                "max": round(v[-1] * 1e3, 4),
            }
            for n, v in ms.items()
        },
    }
    wa, wb = words(inputs[-1][1]), words(inputs[-1][2])
    t0 = time.perf_counter()
    _lcs_words(wa, wb)
    result["pure_python_word_lcs_ms"] = round((time.perf_counter() - t0) * 1e3, 2)
    from rapidfuzz.distance import Indel

    t0 = time.perf_counter()
    for _ in range(100):
        Indel.normalized_similarity(wa, wb)
    result["rapidfuzz_word_lcs_ms"] = round((time.perf_counter() - t0) * 1e3 / 100, 4)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
