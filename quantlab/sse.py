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

#: The payload that ends an OpenAI-style stream.
DONE = b"[DONE]"

_DONE_LINE = b"data: " + DONE


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
        self._cr = False  # sticky once a \r is seen: normalize line ends from then on
        #: Set by :meth:`flush` when the stream ended inside an unterminated line.
        self.truncated: bytes = b""

    def feed(self, data: bytes) -> list[bytes]:
        """Parse one chunk; return the payloads of the events it completed, in order."""
        if self._buf:
            data = self._buf + data
            self._buf = b""
        if self._cr or 13 in data:  # int membership is a memchr: the cheapest test
            self._cr = True
            hold = b""
            if data[-1:] == b"\r":  # may be the first half of a \r\n split across chunks
                data, hold = data[:-1], b"\r"
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            out = self._split(data)
            self._buf += hold
            return out
        # Fast path 1: the chunk is exactly one one-line event, "data: {...}\n\n" (what a
        # server writes per token).
        n = data.find(b"\n")
        if n == len(data) - 2 and data[-1] == 10 and data.startswith(b"data: "):
            return [data[6:n]]
        # Fast path 2: many one-line data events back to back (a fast server, a proxy):
        # splitting on the separator hands back the payloads themselves, one copy each.
        # Checked afterwards by counting newlines: each complete event has exactly two.
        if not data.startswith(b"data: "):
            return self._split(data)
        parts = data.split(b"\n\ndata: ")
        if data.endswith(b"\n\n"):
            parts[-1] = parts[-1][:-2]
            tail = b""
        else:
            tail = parts.pop()
            if parts:
                tail = b"data: " + tail
        if parts:
            parts[0] = parts[0][6:]
        if data.count(10) != 2 * len(parts) + tail.count(10):
            return self._split(data)  # comments, other fields, multi-line data, blank runs
        if tail and tail[-1] == 10 and tail.rstrip(b"\n") == _DONE_LINE:
            parts.append(DONE)
            tail = b""
        self._buf = tail
        return parts

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
