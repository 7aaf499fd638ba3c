"""repetition: the answer loops — a span repeated back to back, often until max_tokens.

Signals (see loops.py for how the loop is found):

* the longest back-to-back repeat (a *loop*): its unit, copies, where it starts, how much
  of the answer it covers and whether it runs to the end of the answer;
* seq-rep-4 (Welleck et al. 2019): 1 - distinct 4-grams / all 4-grams;
* the zlib compression ratio (Whisper drops segments above 2.4 as loops).

Verdict, tuned on the local BF16/Q4_0 pair (tests/data/pair_outputs.jsonl):

* a loop is a unit repeated at least LOOP_MIN_REPEATS times back to back (LONG_UNIT_MIN
  _REPEATS for a unit of LONG_UNIT_TOKENS tokens or more: a sentence said twice in a row is
  already a loop) covering at least LOOP_MIN_CHARS characters (PUNCT_LOOP_MIN_CHARS when
  the unit holds no letter or digit, so markdown rules "-----" and table borders pass);
* fail when the loop has LOOP_FAIL_REPEATS copies or more, or was still going when the
  answer hit max_tokens, or covers LOOP_FAIL_SHARE of an answer that was capped; warn
  otherwise (a few identical lines of markup in an answer that ended by itself are
  suspicious, not damning);
* warn when a capped answer ends in a partial repeat of a long passage (TAIL_MIN_REPEATS
  copies, TAIL_MIN_CHARS repeated characters): "A B A" cut by max_tokens; fail when that
  repeat covers LOOP_FAIL_SHARE of the answer (a whole poem said again until the cap is a
  loop however long its unit);
* warn when there is no loop but the answer is repetitive overall: seq-rep-4 of at least
  SEQ_REP_WARN over SEQ_REP_MIN_NGRAMS 4-grams, or a compression ratio of at least
  COMPRESSION_WARN over COMPRESSION_MIN_BYTES bytes. Whisper's 2.4 is for short segments;
  fluent 1,000-character answers of the BF16 lane reach 2.7, so the bar here is 3.0;
* warn when a capped answer is mostly a run of bare numbers (NUMBER_RUN_MIN_REPEATS copies
  of a letterless unit with every number masked, NUMBER_RUN_MIN_SHARE of the answer):
  "1. 2. 3. … 51." where steps were asked for;
* a capped answer is also searched, after its longest repeat, for a loop running into the
  cut ("…, one by one, one by one, one by one, one by"): such a loop is judged as above;
* a prompt that asks for repetition ("repeat", "N times", "count to") caps the verdict at
  info unless the answer ran into max_tokens.

Score: the share of the answer's characters inside the loop (or seq-rep-4, when higher).
"""

from __future__ import annotations

import re
from dataclasses import replace

from quantlab.detectors.context import Context
from quantlab.detectors.loops import Loop, compression_ratio, find_loop, find_number_run, seq_rep
from quantlab.detectors.textnorm import snippet, tokenize
from quantlab.records import Finding, Severity

NAME = "repetition"

LOOP_MIN_REPEATS = 3.0
LONG_UNIT_TOKENS = 12
LONG_UNIT_MIN_REPEATS = 2.0
LOOP_MIN_CHARS = 30
PUNCT_LOOP_MIN_CHARS = 80
LOOP_FAIL_REPEATS = 6.0
LOOP_FAIL_SHARE = 0.5
TAIL_MIN_REPEATS = 1.5
TAIL_MIN_CHARS = 100
#: A loop "runs to the end" when at most this many characters (or one unit) follow it.
TAIL_SLACK = 12
SEQ_REP_WARN = 0.5
SEQ_REP_MIN_NGRAMS = 30
COMPRESSION_WARN = 3.0
COMPRESSION_MIN_BYTES = 300
NUMBER_RUN_MIN_REPEATS = 10
NUMBER_RUN_MIN_SHARE = 0.5

_ASKS_REPETITION = re.compile(
    r"\brepeat|\bover and over\b|\b(?:\d+|two|three|four|five|six|seven|eight|nine|ten|"
    r"twenty|fifty|hundred) times\b|\bcount (?:from|to|up|down)\b",
    re.IGNORECASE,
)


def _runs_to_end(text: str, loop: Loop) -> bool:
    return len(text.rstrip()) - loop.end <= max(TAIL_SLACK, len(loop.unit))


def _is_loop(loop: Loop) -> bool:
    long_unit = loop.unit_tokens >= LONG_UNIT_TOKENS
    min_repeats = LONG_UNIT_MIN_REPEATS if long_unit else LOOP_MIN_REPEATS
    min_chars = LOOP_MIN_CHARS if any(c.isalnum() for c in loop.unit) else PUNCT_LOOP_MIN_CHARS
    return loop.repeats >= min_repeats and loop.chars >= min_chars


def _is_tail_repeat(ctx: Context, loop: Loop) -> bool:
    repeated = loop.chars - len(loop.unit)
    return (
        ctx.capped
        and _runs_to_end(ctx.text, loop)
        and loop.repeats >= TAIL_MIN_REPEATS
        and repeated >= TAIL_MIN_CHARS
    )


def reports_loop(ctx: Context, loop: Loop) -> bool:
    """Whether this detector calls ``loop`` a loop (or a capped answer's repeated tail):
    other detectors leave such an answer to repetition."""
    return _is_loop(loop) or _is_tail_repeat(ctx, loop)


def _loop_at_the_cut(ctx: Context) -> Loop | None:
    """In a capped answer, the loop it ran into at the cut when that is not the longest
    repeat: "…with no other text, one by one, one by one, one by one, one by" hides behind
    an earlier, longer near-repeat. Searched in the text after the longest repeat."""
    main = ctx.loop
    text = ctx.text
    if not ctx.capped or (main is not None and _runs_to_end(text, main)):
        return None
    offset = main.end if main is not None else 0
    found = find_loop(tokenize(text[offset:]))
    if found is None or not _runs_to_end(text[offset:], found):
        return None
    return replace(found, start=found.start + offset, end=found.end + offset)


def _describe(ctx: Context, loop: Loop) -> str:
    where = "to the end" if _runs_to_end(ctx.text, loop) else f"to char {loop.end}"
    share = loop.chars / max(1, len(ctx.text))
    unit = snippet(loop.unit, 0, width=50)
    kind = " (list numbers aside)" if loop.masked else ""
    cap = ", capped at max_tokens" if ctx.capped else ""
    return (
        f"{unit}{kind} ×{loop.repeats:.1f} from char {loop.start} {where} "
        f"({share:.0%} of the answer{cap})"
    )


def check(ctx: Context) -> Finding | None:
    text = ctx.text
    if not text.strip():
        return None
    keys = ctx.tokens.keys
    rep4 = seq_rep(keys)
    ratio = compression_ratio(text)
    stats = f"seq-rep-4 {rep4:.2f}, compression {ratio:.1f}"
    loop = ctx.loop
    severity: Severity | None = None
    score = rep4
    at_cut = _loop_at_the_cut(ctx) if loop is None or not _is_loop(loop) else None
    if at_cut is not None and _is_loop(at_cut):
        loop = at_cut
    if loop is not None and _is_loop(loop):
        share = loop.chars / len(text)
        score = max(share, rep4)
        fail = loop.repeats >= LOOP_FAIL_REPEATS or (
            ctx.capped and (share >= LOOP_FAIL_SHARE or _runs_to_end(text, loop))
        )
        severity = "fail" if fail else "warn"
        evidence = f"{_describe(ctx, loop)}; {stats}"
    elif loop is not None and _is_tail_repeat(ctx, loop):
        share = loop.chars / len(text)
        score = max(share, rep4)
        severity = "fail" if share >= LOOP_FAIL_SHARE else "warn"
        evidence = f"answer repeats itself when cut: {_describe(ctx, loop)}; {stats}"
    else:
        ngrams = len(keys) - 3
        bytes_len = len(text.encode("utf-8", "surrogatepass"))
        run = find_number_run(ctx.tokens) if ctx.capped else None
        if (rep4 >= SEQ_REP_WARN and ngrams >= SEQ_REP_MIN_NGRAMS) or (
            ratio >= COMPRESSION_WARN and bytes_len >= COMPRESSION_MIN_BYTES
        ):
            severity = "warn"
            evidence = f"repetitive without one loop: {stats}"
        elif (
            run is not None
            and run.repeats >= NUMBER_RUN_MIN_REPEATS
            and run.chars / len(text) >= NUMBER_RUN_MIN_SHARE
        ):
            severity = "warn"
            score = run.chars / len(text)
            evidence = (
                f"bare numbers counting on until max_tokens: {snippet(text, run.start, width=30)}"
                f" ×{run.repeats:.0f} ({score:.0%} of the answer); {stats}"
            )
    if severity is None:
        return None
    if ctx.prompt and _ASKS_REPETITION.search(ctx.prompt) and not ctx.capped:
        severity = "info"
        evidence += "; the prompt asks for repetition"
    return ctx.finding(NAME, severity, score, evidence)
