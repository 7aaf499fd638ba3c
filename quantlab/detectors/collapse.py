"""collapse: the answer is no language at all — empty, one token over and over, or junk.

A collapsed model emits nothing, the same token until it is stopped, replacement
characters from broken byte sequences, control or private-use code points, or leaked
special tokens ("<|im_end|>", "<0x0A>"). Checks, in order (the first that applies wins):

* empty: nothing but whitespace → fail (score 1);
* mostly whitespace: at least WHITESPACE_MIN_CHARS characters of which less than
  WHITESPACE_MAX_INK are not whitespace → fail;
* one token repeated: a single distinct token at least SINGLE_TOKEN_MIN_COPIES times
  ("the the the the the", "🌱🌱🌱🌱🌱"), or a single distinct character at least
  SINGLE_CHAR_MIN_COPIES times ("1111111111") → fail (score 1);
* garbage: U+FFFD, control (except tab/newline), private-use, unassigned or surrogate code
  points, invisible format characters, and leaked special tokens; share of the answer's
  characters ≥ GARBAGE_FAIL (from at least GARBAGE_MIN_CHARS junk characters or tokens)
  → fail, ≥ GARBAGE_WARN (or any leaked special token) → warn;
* symbol soup: at least SOUP_MIN_CHARS visible characters of which less than SOUP_MAX_ALNUM
  are letters or digits → warn (skipped when the prompt asks for emoji or symbols).

Score: the share of the answer that is junk (1 for empty / one token).
"""

from __future__ import annotations

import re
import unicodedata

from quantlab.detectors.context import Context
from quantlab.detectors.textnorm import snippet
from quantlab.records import Finding, Severity

NAME = "collapse"

WHITESPACE_MIN_CHARS = 40
WHITESPACE_MAX_INK = 0.1
SINGLE_TOKEN_MIN_COPIES = 5
SINGLE_CHAR_MIN_COPIES = 8
GARBAGE_WARN = 0.05
GARBAGE_FAIL = 0.2
GARBAGE_MIN_CHARS = 3
SOUP_MIN_CHARS = 30
SOUP_MAX_ALNUM = 0.2

#: Leaked special tokens: chat-template markers, sentence markers, byte-fallback tokens.
SPECIAL_TOKEN = re.compile(
    r"<\|[A-Za-z0-9_\-]{1,40}\|>|</?s>|<unk>|<pad>|<0x[0-9A-Fa-f]{2}>|\[/?INST\]"
)
_JUNK_CATEGORIES = frozenset({"Cc", "Co", "Cn", "Cs"})
_ALLOWED_FORMAT = frozenset("\u200c\u200d\u00ad")  # ZWNJ/ZWJ (scripts, emoji), soft hyphen
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ALNUM_RUNS = re.compile(r"[^\W_]+")
_ASKS_SYMBOLS = re.compile(r"emoji|emoticon|symbol|ascii art|punctuation", re.IGNORECASE)


def _is_junk(c: str) -> bool:
    cat = unicodedata.category(c)
    return c == "\ufffd" or cat in _JUNK_CATEGORIES or (cat == "Cf" and c not in _ALLOWED_FORMAT)


def _junk_positions(text: str) -> list[int]:
    """Offsets of junk characters (see module docstring). Each distinct non-ASCII character
    is classified once, so a long CJK answer costs what a short one does."""
    found = [m.start() for m in _ASCII_CONTROL.finditer(text)]
    if not text.isascii():
        junk = "".join(c for c in set(text) if ord(c) > 0x7F and _is_junk(c))
        if junk:
            found.extend(m.start() for m in re.finditer(f"[{re.escape(junk)}]", text))
    return sorted(found)


def check(ctx: Context) -> Finding | None:
    text = ctx.text
    if not text.strip():
        reason = f" (finish_reason {ctx.finish_reason})" if ctx.finish_reason else ""
        return ctx.finding(NAME, "fail", 1.0, f"empty answer{reason}")
    visible = "".join(text.split())
    ink = len(visible)
    if len(text) >= WHITESPACE_MIN_CHARS and ink / len(text) < WHITESPACE_MAX_INK:
        share = 1 - ink / len(text)
        return ctx.finding(NAME, "fail", share, f"{share:.0%} whitespace: {snippet(text, 0)}")
    keys = ctx.tokens.keys
    if len(keys) >= SINGLE_TOKEN_MIN_COPIES and len(set(keys)) == 1:
        return ctx.finding(
            NAME, "fail", 1.0, f"one token repeated {len(keys)} times: {snippet(keys[0], 0)}"
        )
    if len(visible) >= SINGLE_CHAR_MIN_COPIES and len(set(visible)) == 1:
        return ctx.finding(
            NAME, "fail", 1.0, f"one character repeated {len(visible)} times: {visible[0]!r}"
        )
    junk = _junk_positions(text)
    specials = list(SPECIAL_TOKEN.finditer(text))
    junk_chars = len(junk) + sum(m.end() - m.start() for m in specials)
    share = junk_chars / len(text)
    if specials or (junk_chars >= GARBAGE_MIN_CHARS and share >= GARBAGE_WARN):
        items = len(junk) + len(specials)  # one leaked end token is a template slip: warn
        severity: Severity = (
            "fail" if share >= GARBAGE_FAIL and items >= GARBAGE_MIN_CHARS else "warn"
        )
        parts = [f"{share:.0%} junk characters"]
        if junk:
            kinds = sorted({unicodedata.name(text[i], f"U+{ord(text[i]):04X}") for i in junk})
            parts.append(f"{len(junk)} × {', '.join(kinds[:3])} (first at char {junk[0]})")
        if specials:
            names = sorted({m.group() for m in specials})
            parts.append(f"leaked special tokens {', '.join(names[:3])}")
        return ctx.finding(NAME, severity, share, "; ".join(parts))
    prompt = ctx.prompt or ""
    if len(visible) >= SOUP_MIN_CHARS and not _ASKS_SYMBOLS.search(prompt):
        alnum = 1 - len(_ALNUM_RUNS.sub("", visible)) / len(visible)
        if alnum < SOUP_MAX_ALNUM:
            return ctx.finding(
                NAME,
                "warn",
                1 - alnum,
                f"only {alnum:.0%} letters or digits: {snippet(text, 0)}",
            )
    return None
