"""language_switch: the answer is, or drifts into, another language than the prompt's.

Method (no language model, just Unicode blocks and function words — language_data.py):

1. Code blocks, inline code and URLs are blanked out (code is English-looking in any
   language's answer).
2. The prompt and the answer are cut into chunks of whole sentences or lines of at least
   CHUNK_MIN_CHARS characters (about 20 words: function-word statistics need that many).
   Each chunk gets a language: its majority script (Cyrillic, Arabic, Han, Japanese when
   kana make up KANA_SHARE of its CJK letters, …), and for Latin script the language whose
   function words (plus language-specific letters such as "ñ", "ß", "ã") score highest
   (en, fr, es, de, it, pt, nl) — only when that score is at least LANG_MIN_SCORE,
   LANG_MARGIN times the runner-up and LANG_MIN_DENSITY of the chunk's words; otherwise
   "Latin, unknown".
3. Allowed: every language of a prompt chunk, plus languages the prompt names ("translate
   into French", "en español"). Without a prompt (or one with no letters, or a Latin-script
   one too short to tell its language) the answer's first chunk sets the baseline and the
   verdict is at most warn.
4. A chunk is switched when its script is not allowed, or when it is a known Latin language
   and the prompt's Latin language is known and different.

Verdict: switched letters ≥ SWITCH_MIN_LETTERS and ≥ SWITCH_WARN_SHARE of the answer's
letters → warn; ≥ SWITCH_FAIL_SHARE → fail (the answer is in another language). Separately,
a word mixing letters of two unrelated scripts ("Понرёх": Cyrillic with an Arabic letter) is
not written by any fluent model and → warn. Score: the share of the answer's letters that
switched (or that sit in mixed-script words, when that is larger).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import cache, lru_cache
from itertools import combinations

from quantlab.detectors.context import Context
from quantlab.detectors.language_data import (
    COMPATIBLE_SCRIPTS,
    DIACRITIC_WEIGHT,
    DIACRITICS,
    LABELS,
    LANGUAGE_NAMES,
    SCRIPT_OF,
    SCRIPTS,
    STOPWORDS,
)
from quantlab.detectors.textnorm import snippet
from quantlab.records import Finding, Severity

NAME = "language_switch"

CHUNK_MIN_CHARS = 100
PROMPT_WINDOWS = 8
PROMPT_WINDOW_CHARS = 600
KANA_SHARE = 0.1
LANG_MIN_SCORE = 2.0
LANG_MARGIN = 1.5
LANG_MIN_DENSITY = 0.15
SWITCH_MIN_LETTERS = 30
SWITCH_WARN_SHARE = 0.15
SWITCH_FAIL_SHARE = 0.5
#: Mixed-script words quoted in the evidence at most.
MAX_MIXED_SHOWN = 3

_BLANK = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*`|https?://\S+", re.DOTALL)
_BREAK = re.compile(r"\n+|(?<=[.!?])\s+|(?<=[。！？])")
_SCRIPT_RE = {name: re.compile(f"[{cls}]") for name, cls in SCRIPTS.items()}
_ASCII_LETTERS = re.compile(r"[A-Za-z]+")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_LATIN_WORD = re.compile(r"[^\W\d_]+")
_NAME_WORD = re.compile(r"\w+")
_WEIGHTS: dict[str, dict[str, float]] = {}
for _lang, _words in STOPWORDS.items():
    for _word in _words:
        _share = 1.0 / sum(_word in ws for ws in STOPWORDS.values())
        _WEIGHTS.setdefault(_word, {})[_lang] = _share


def script_counts(text: str) -> dict[str, int]:
    """Letters per script (only scripts that occur). ASCII letters are counted in one pass;
    only the (usually few) other characters are matched against every script."""
    out: dict[str, int] = {}
    ascii_letters = len(text) - len(_ASCII_LETTERS.sub("", text))
    if ascii_letters:
        out["latin"] = ascii_letters
    if text.isascii():
        return out
    rest = "".join(_NON_ASCII.findall(text))
    for name, pattern in _SCRIPT_RE.items():
        n = len(rest) - len(pattern.sub("", rest))
        if n:
            out[name] = out.get(name, 0) + n
    return out


def latin_language(text: str) -> str | None:
    """The Latin-script language whose function words dominate ``text``, or None."""
    words = _LATIN_WORD.findall(text.lower())
    if not words:
        return None
    counts = Counter(words)
    scores: dict[str, float] = {}
    for w in counts.keys() & _WEIGHTS.keys():
        for lang, weight in _WEIGHTS[w].items():
            scores[lang] = scores.get(lang, 0.0) + weight * counts[w]
    if not text.isascii():
        for mark, langs in DIACRITICS.items():
            n = text.count(mark)
            if n:
                for lang in langs:
                    scores[lang] = scores.get(lang, 0.0) + n * DIACRITIC_WEIGHT / len(langs)
    if not scores:
        return None
    ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
    top, score = ranked[0]
    runner = ranked[1][1] if len(ranked) > 1 else 0.0
    confident = score >= LANG_MIN_SCORE and score >= LANG_MARGIN * runner
    return top if confident and score / len(words) >= LANG_MIN_DENSITY else None


def chunk_language(text: str, counts: dict[str, int]) -> str | None:
    """A chunk's language code (see module docstring); None when it has no letters."""
    if not counts:
        return None
    script = max(counts, key=lambda s: counts[s])
    if script in ("han", "kana"):
        cjk = counts.get("han", 0) + counts.get("kana", 0)
        return "japanese" if counts.get("kana", 0) >= KANA_SHARE * cjk else "han"
    if script == "latin":
        return latin_language(text) or "latin"
    return script


@dataclass(frozen=True, slots=True)
class Chunk:
    start: int
    end: int
    letters: int
    language: str | None
    scripts: frozenset[str]


def chunks(text: str) -> list[Chunk]:
    """Sentence/line chunks of at least CHUNK_MIN_CHARS characters (the last may be
    shorter), each with its letter count and language."""
    bounds: list[tuple[int, int]] = []
    start = 0
    for m in _BREAK.finditer(text):
        if m.start() - start >= CHUNK_MIN_CHARS:
            bounds.append((start, m.start()))
            start = m.end()
    if start < len(text):
        if bounds and len(text) - start < CHUNK_MIN_CHARS // 2:
            bounds[-1] = (bounds[-1][0], len(text))  # a short tail joins the chunk before
        else:
            bounds.append((start, len(text)))
    out: list[Chunk] = []
    for s, e in bounds:
        body = text[s:e]
        counts = script_counts(body)
        letters = sum(counts.values())
        if letters:
            out.append(Chunk(s, e, letters, chunk_language(body, counts), frozenset(counts)))
    return out


@lru_cache(maxsize=256)
def prompt_languages(prompt: str) -> frozenset[str]:
    """Languages present in the prompt (cached: every lane of an exchange shares it). A
    long prompt is sampled in PROMPT_WINDOWS evenly spaced windows of PROMPT_WINDOW_CHARS,
    so a 16K-token context costs what a short one does."""
    prompt = _BLANK.sub(lambda m: " " * len(m.group()), prompt)
    if len(prompt) > PROMPT_WINDOWS * PROMPT_WINDOW_CHARS:
        step = (len(prompt) - PROMPT_WINDOW_CHARS) / (PROMPT_WINDOWS - 1)
        starts = [int(i * step) for i in range(PROMPT_WINDOWS)]
        prompt = "\n".join(prompt[s : s + PROMPT_WINDOW_CHARS] for s in starts)
    return frozenset(c.language for c in chunks(prompt) if c.language)


def _named_languages(prompt: str) -> set[str]:
    named = set()
    for w in _NAME_WORD.findall(prompt.lower()):
        code = LANGUAGE_NAMES.get(w)
        if code:
            named.add(code)
    for name, code in LANGUAGE_NAMES.items():
        if not name.isascii() and name in prompt:
            named.add(code)
    return named


def _compatible(lang: str, allowed: set[str]) -> bool:
    if lang in allowed:
        return True
    script = SCRIPT_OF.get(lang, lang)
    allowed_scripts = {SCRIPT_OF.get(a, a) for a in allowed}
    if script not in allowed_scripts:
        return False
    if script != "latin":
        return True  # same non-Latin script (han and japanese share Han)
    known_latin = {a for a in allowed if a in STOPWORDS}
    # Unknown Latin on either side: the languages cannot be told apart.
    return lang == "latin" or "latin" in allowed or not known_latin


@cache
def _mixed_pattern(scripts: frozenset[str]) -> re.Pattern[str] | None:
    pairs = [
        (a, b)
        for a, b in combinations(sorted(scripts), 2)
        if frozenset({a, b}) not in COMPATIBLE_SCRIPTS
    ]
    if not pairs:
        return None
    alts = [f"[{SCRIPTS[x]}][{SCRIPTS[y]}]" for a, b in pairs for x, y in ((a, b), (b, a))]
    return re.compile("|".join(alts))


def mixed_script_words(text: str, present: set[str]) -> list[str]:
    """Words with two adjacent letters of unrelated scripts, e.g. "Понرёх"."""
    if len(present) < 2:
        return []
    pattern = _mixed_pattern(frozenset(present))
    if pattern is None:
        return []
    found = []
    for m in pattern.finditer(text):
        left = m.start()
        while left > 0 and text[left - 1].isalpha():
            left -= 1
        right = m.end()
        while right < len(text) and text[right].isalpha():
            right += 1
        word = text[left:right]
        if word not in found:
            found.append(word)
    return found


def _label(code: str | None) -> str:
    return LABELS.get(code or "", "unknown") if code != "latin" else "Latin script"


def check(ctx: Context) -> Finding | None:
    text = _BLANK.sub(lambda m: " " * len(m.group()), ctx.text)
    answer = chunks(text)
    total = sum(c.letters for c in answer)
    if total == 0:
        return None
    prompt = ctx.prompt or ""
    prompt_langs = set(prompt_languages(prompt))
    allowed = prompt_langs | _named_languages(prompt)
    from_prompt = bool(prompt_langs)
    if not from_prompt:
        first = next((c.language for c in answer if c.language), None)
        if first is None:
            return None
        allowed = {first} | allowed
    latin_unknown = "latin" in prompt_langs and not prompt_langs & STOPWORDS.keys()
    if from_prompt and latin_unknown:
        # A short Latin-script prompt whose language cannot be told: the answer's first
        # chunk stands in for it (a switch from the first word on goes unseen).
        first = next((c.language for c in answer if c.language), None)
        if first in STOPWORDS:
            allowed = (allowed - {"latin"}) | {first}
            prompt_langs = {first}
            from_prompt = False
    switched = [c for c in answer if c.language and not _compatible(c.language, allowed)]
    moved = sum(c.letters for c in switched)
    share = moved / total
    present = set().union(*(c.scripts for c in answer))
    mixed = mixed_script_words(text, present)
    severity: Severity | None = None
    parts: list[str] = []
    if switched and moved >= SWITCH_MIN_LETTERS and share >= SWITCH_WARN_SHARE:
        severity = "fail" if share >= SWITCH_FAIL_SHARE and from_prompt else "warn"
        base = sorted(prompt_langs) if from_prompt else sorted(allowed)
        source = "prompt" if from_prompt else "answer's start"
        langs = sorted({c.language for c in switched if c.language})
        first_c = switched[0]
        parts.append(
            f"{source} in {' / '.join(_label(b) for b in base)}; "
            f"{share:.0%} of the answer in {' / '.join(_label(x) for x in langs)}, "
            f"from char {first_c.start}: {snippet(ctx.text, first_c.start, width=40)}"
        )
    if mixed:
        severity = severity or "warn"
        share = max(share, sum(len(w) for w in mixed) / total)
        shown = ", ".join(repr(w) for w in mixed[:MAX_MIXED_SHOWN])
        parts.append(f"{len(mixed)} word(s) mixing scripts: {shown}")
    if severity is None:
        return None
    return ctx.finding(NAME, severity, share, "; ".join(parts))
