"""Untrusted text made safe to show on a terminal or in a text report.

Model answers and server error messages come from a server quantlab does not control, and
are shown over SSH in terminals that obey escape sequences: an OSC 52 sequence writes the
user's clipboard, ``ESC[2J`` clears the screen, a window-title OSC or a C1 CSI (``\\x9b``)
spoofs what is shown, BEL rings, and Unicode bidi overrides reorder what a reader sees.
:func:`safe_text` shows every such character visibly, as an escape (``ESC`` becomes the
four characters ``\\x1b``), so nothing reaches the terminal as a control and nothing is
hidden: a reader sees that the answer held one. Newline and tab are kept; a CR of a CRLF
pair is dropped (the line break stays), a lone CR is shown.

JSON output and session files keep the exact text: only what meets a terminal or a text
report goes through here. Markup (Rich/Textual ``[bold]``, ``[@click=…]``) is a concern of
the TUI, which draws answers as plain segments and never as markup.

    >>> safe_text("ok\\x1b]52;c;aGk=\\x07 done\\n")
    'ok\\\\x1b]52;c;aGk=\\\\x07 done\\n'
"""

from __future__ import annotations

import re

#: C0 controls but tab and newline, DEL, C1 controls, the Arabic letter mark, and the
#: bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u202a-\u202e\u2066-\u2069]")
#: The same without tab and newline: for one-line contexts (log lines, CSV-free cells).
_UNSAFE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def safe_text(text: str) -> str:
    """``text`` with every control character but ``\\n`` and ``\\t`` shown as an escape."""
    if not _UNSAFE.search(text):
        return text  # the common case: one C-level scan, no copy
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    return _UNSAFE.sub(_escape, text)


def safe_line(text: str) -> str:
    """``text`` for a one-line context (a log line, a progress status): newlines and tabs
    shown as escapes too, so a message cannot start a fake line of its own."""
    if not _UNSAFE_LINE.search(text):
        return text
    return _UNSAFE_LINE.sub(_escape, text)


def _picture(m: re.Match[str]) -> str:
    c = ord(m.group())
    if c < 0x20:
        return chr(0x2400 + c)  # Unicode control pictures: ESC is U+241B
    return "\u2421" if c == 0x7F else "\ufffd"


def safe_same_length(text: str) -> str:
    """``text`` with each control character (but ``\n`` and ``\t``) replaced by ONE visible
    character — a control picture (ESC as U+241B) for C0 and DEL, U+FFFD for C1 and bidi
    controls — for displays that index into the text (highlighting a character offset)."""
    if not _UNSAFE.search(text):
        return text
    return _UNSAFE.sub(_picture, text)


#: What JSON encoders leave raw (C1 controls, DEL, bidi controls) but a terminal acts on.
_JSON_RAW = re.compile("[\x7f-\x9f\u061c\u202a-\u202e\u2066-\u2069]")


def json_safe(doc: str) -> str:
    """A JSON document's text with the characters a terminal would act on written as
    ``\\uXXXX`` escapes. Such characters can only sit inside JSON strings, so the document
    decodes to exactly the same values: JSON keeps the exact text, terminals are safe."""
    if not _JSON_RAW.search(doc):
        return doc
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", doc)


def has_unsafe(text: str) -> bool:
    """True when :func:`safe_text` would change ``text``."""
    return _UNSAFE.search(text) is not None
