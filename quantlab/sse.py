"""An incremental server-sent-events parser over raw bytes.

This sits on the hot path of every streamed answer (one call per network chunk), so it
works on ``bytes`` with C-level ``split``/``find`` and never decodes to ``str``: the JSON
payloads go straight to orjson. It returns only the ``data`` of each event because that
is all an OpenAI-compatible stream carries; comments (``: ping``), ``event:``, ``id:``
and ``retry:`` lines are read and dropped.

What real servers send and this accepts: ``\\n``, ``\\r\\n`` and lone ``\\r`` line ends,
an event split across any number of network chunks, several events in one chunk,
multi-line ``data`` (joined with ``\\n`` as the SSE spec says), ``data:`` with or without
the space, and llama.cpp's ``data: [DONE]`` with no blank line after it.
"""

from __future__ import annotations

from itertools import repeat
from operator import contains

#: The payload that ends an OpenAI-style stream.
DONE = b"[DONE]"

_DONE_LINE = b"data: " + DONE
#: What separates one-line data events: the blank line, then the next one's field name.
_SEP = b"\n\ndata: "
#: A first line at least this long takes the long-event path (see _long_events).
_LONG = 512


class SSEParser:
    """Feed it network chunks; it hands back the ``data`` payload of each completed event.

    >>> p = SSEParser()
    >>> p.feed(b'data: {"a": 1}\\n\\ndata: {"b"')
    [b'{"a": 1}']
    >>> p.feed(b': 2}\\n\\n')
    [b'{"b": 2}']
    """

    __slots__ = ("_buf", "_cr", "truncated")

    def __init__(self) -> None:
        self._buf = b""
        self._cr = False  # sticky once a \r is seen (_feed_cr)
        #: Set by :meth:`flush` when the stream ended inside an unterminated line.
        self.truncated: bytes = b""

    def feed(self, data: bytes) -> list[bytes]:
        """Parse one chunk; return the payloads of the events it completed, in order."""
        if self._buf:
            data = self._buf + data
            self._buf = b""
        if self._cr or 13 in data:  # int membership is a memchr: the cheapest test
            return self._feed_cr(data)
        # Fast path 1: the chunk is exactly one one-line event, "data: {...}\n\n" (what a
        # server writes per token).
        n = data.find(b"\n")
        if n == len(data) - 2 and data[-1] == 10 and data.startswith(b"data: "):
            return [data[6:n]]
        return self._events(data, n)

    def single(self, data: bytes) -> int:
        """Where the payload ends when ``data`` is exactly one one-line ``data:`` event
        and nothing is pending: the payload is then ``data[6:end]`` and the chunk is taken
        (do not feed it). -1 otherwise: feed it. For a caller that cuts the payload up
        itself, so that it need not be copied out of the chunk first."""
        if self._buf or self._cr or 13 in data:
            return -1
        n = data.find(b"\n")
        if n == len(data) - 2 and data[-1] == 10 and data.startswith(b"data: "):
            return n
        return -1

    def _feed_cr(self, data: bytes) -> list[bytes]:
        self._cr = True  # sticky once a \r is seen: normalize line ends from then on
        hold = b""
        if data[-1:] == b"\r":  # may be the first half of a \r\n split across chunks
            data, hold = data[:-1], b"\r"
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        out = self._events(data, data.find(b"\n"))
        self._buf += hold
        return out

    def _events(self, data: bytes, n: int) -> list[bytes]:
        """Several events (a fast server, a proxy, or one HTTP chunk holding many): ``n``
        is the first line end. One-line ``data:`` events back to back take one of two
        fast paths, by the length of the first line; anything else the general one."""
        if n < 0 or not data.startswith(b"data: "):
            return self._split(data)
        if n == len(data) - 2 and data[-1] == 10:
            return [data[6:n]]
        if n < _LONG:
            return self._short_events(data)
        return self._long_events(data, n)

    def _short_events(self, data: bytes) -> list[bytes]:
        """Fast path 2, short events: splitting on the separator hands back the payloads
        themselves, one copy each. Checked afterwards: no part may hold a line end (each
        test a memchr)."""
        parts = data.split(_SEP)
        if data.endswith(b"\n\n"):
            parts[-1] = parts[-1][:-2]
            tail = b""
        else:
            tail = parts.pop()
            if parts:
                tail = b"data: " + tail
        if parts:
            parts[0] = parts[0][6:]
        if any(map(contains, parts, repeat(10))):
            return self._split(data)  # comments, other fields, multi-line data, blank runs
        if 10 in tail:  # whole lines after the last separator (a ping, [DONE], an event)
            parts += self._split(tail)
        else:
            self._buf = tail
        return parts

    def _long_events(self, data: bytes, n: int) -> list[bytes]:
        """Fast path 3, long events (log-probabilities make them ~2 KB): the separator is
        found from each line end, and line ends by memchr (``find`` of one byte), ~10x
        cheaper per byte than ``split`` on the separator. ``n`` is the first line end."""
        out: list[bytes] = []
        append = out.append
        find = data.find
        startswith = data.startswith
        pos = 0
        # Invariant: data[pos:n] is one "data: " line (n its line end, no \n inside).
        while startswith(_SEP, n):
            append(data[pos + 6 : n])
            pos = n + 2
            n = find(b"\n", pos + 6)
            if n < 0:  # the rest is an unfinished "data: " line
                self._buf = data[pos:]
                return out
        if n == len(data) - 2 and data[-1] == 10:  # the last event, whole
            append(data[pos + 6 : n])
        else:  # anything else after an event, or the chunk ends inside the separator
            out += self._split(data[pos:])
        return out

    def _split(self, data: bytes) -> list[bytes]:
        parts = data.split(b"\n\n")
        tail = parts.pop()
        out: list[bytes] = []
        for block in parts:
            if 10 not in block and block.startswith(b"data: "):
                out.append(block[6:])
            elif block:
                _parse_block(block, out)
        if tail[-1:] == b"\n" and tail.rstrip(b"\n") == _DONE_LINE:
            # llama.cpp may end with "data: [DONE]\n" and no blank line: don't wait for one.
            out.append(DONE)
            tail = b""
        self._buf = tail
        return out

    def flush(self) -> list[bytes]:
        """At end of stream: the payloads of a last event that had no blank line after it.

        Complete lines are taken as a complete event. An unterminated last line counts
        only when it is ``data: [DONE]``; anything else is kept in :attr:`truncated`
        (the connection dropped mid-line) and not returned.
        """
        buf, self._buf = self._buf, b""
        if self._cr:
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        out: list[bytes] = []
        if not buf.strip():
            return out
        cut = buf.rfind(b"\n")
        last = buf[cut + 1 :]
        if last.strip() in (_DONE_LINE, b"data:" + DONE):
            cut = len(buf)
        elif last.strip():
            self.truncated = last
        if cut > 0:
            _parse_block(buf[:cut].strip(b"\n"), out)
        return out


def _parse_block(block: bytes, out: list[bytes]) -> None:
    """The general path: any mix of lines, comments, fields and blank lines."""
    data: list[bytes] | None = None
    for line in block.split(b"\n"):
        if not line:  # a blank line inside the block dispatches what came before
            if data is not None:
                out.append(b"\n".join(data))
                data = None
            continue
        if line[:1] == b":":  # comment / keep-alive ping
            continue
        name, sep, value = line.partition(b":")
        if name != b"data":
            continue  # event:, id:, retry: and unknown fields carry nothing we use
        if not sep:
            value = b""
        elif value[:1] == b" ":
            value = value[1:]
        if data is None:
            data = [value]
        else:
            data.append(value)
    if data is not None:
        out.append(b"\n".join(data))
