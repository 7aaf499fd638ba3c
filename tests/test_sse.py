"""The SSE parser: every framing real servers produce, split at every possible byte."""

from __future__ import annotations

import pytest

from quantlab.sse import DONE, SSEParser

VLLM = (
    b'data: {"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
    b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'
    b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"lo\\n"}}]}\n\n'
    b'data: {"id":"c","choices":[],"usage":{"completion_tokens":3}}\n\n'
    b"data: [DONE]\n\n"
)
VLLM_PAYLOADS = [
    b'{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}',
    b'{"id":"c","choices":[{"index":0,"delta":{"content":"Hel"}}]}',
    b'{"id":"c","choices":[{"index":0,"delta":{"content":"lo\\n"}}]}',
    b'{"id":"c","choices":[],"usage":{"completion_tokens":3}}',
    DONE,
]


def parse_all(chunks: list[bytes]) -> list[bytes]:
    p = SSEParser()
    out: list[bytes] = []
    for c in chunks:
        out.extend(p.feed(c))
    out.extend(p.flush())
    return out


def test_whole_stream_in_one_chunk() -> None:
    assert parse_all([VLLM]) == VLLM_PAYLOADS


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_split_at_every_byte_for_every_line_ending(newline: bytes) -> None:
    stream = VLLM.replace(b"\n", newline)
    for cut in range(1, len(stream)):
        assert parse_all([stream[:cut], stream[cut:]]) == VLLM_PAYLOADS, (newline, cut)


def test_one_byte_at_a_time_with_crlf() -> None:
    stream = VLLM.replace(b"\n", b"\r\n")
    assert parse_all([stream[i : i + 1] for i in range(len(stream))]) == VLLM_PAYLOADS


def test_done_without_trailing_blank_line_is_seen_without_waiting() -> None:
    p = SSEParser()
    assert p.feed(b'data: {"a":1}\n\ndata: [DONE]\n') == [b'{"a":1}', DONE]
    assert p.flush() == []


def test_done_without_any_newline_is_taken_at_end_of_stream() -> None:
    p = SSEParser()
    assert p.feed(b'data: {"a":1}\n\ndata: [DONE]') == [b'{"a":1}']
    assert p.flush() == [DONE]
    assert p.truncated == b""


def test_comments_pings_and_other_fields_are_dropped() -> None:
    stream = (
        b": ping - 2024-01-01 00:00:00\n\n"
        b'event: message\nid: 7\nretry: 100\ndata: {"x":1}\n\n'
        b":keepalive\n\n"
        b'data:{"y":2}\n\n'
    )
    assert parse_all([stream]) == [b'{"x":1}', b'{"y":2}']


def test_multi_line_data_is_joined_with_newlines() -> None:
    assert parse_all([b'data: {"a":\ndata: 1}\n\n']) == [b'{"a":\n1}']


def test_extra_blank_lines_between_events() -> None:
    assert parse_all([b"\n\ndata: a\n\n\n\ndata: b\n\n\n"]) == [b"a", b"b"]


def test_only_the_first_space_after_the_colon_is_removed() -> None:
    assert parse_all([b"data:  two\n\n"]) == [b" two"]


def test_an_event_with_no_blank_line_at_end_of_stream_counts_when_its_line_is_whole() -> None:
    p = SSEParser()
    assert p.feed(b'data: {"last":true}\n') == []
    assert p.flush() == [b'{"last":true}']


def test_a_line_cut_by_the_end_of_the_stream_is_reported_not_returned() -> None:
    p = SSEParser()
    assert p.feed(b'data: {"a":1}\n\ndata: {"choi') == [b'{"a":1}']
    assert p.flush() == []
    assert p.truncated == b'data: {"choi'


def test_empty_chunks_change_nothing() -> None:
    p = SSEParser()
    assert p.feed(b"") == []
    assert p.feed(b"data: a\n") == []
    assert p.feed(b"") == []
    assert p.feed(b"\n") == [b"a"]


@pytest.mark.parametrize(
    ("stream", "payloads"),
    [
        (b'data: {"x":1}\n\n: ping\n\ndata: {"y":2}\n\n', [b'{"x":1}', b'{"y":2}']),
        (b"data: a\n\n\n\ndata: b\n\n", [b"a", b"b"]),
        (b'data: {"a":\ndata: 1}\n\ndata: 2\n\n', [b'{"a":\n1}', b"2"]),
        (b"data: a\n\nevent: x\ndata: b\n\n", [b"a", b"b"]),
        (b"data: a\n\ndata: [DONE]\n", [b"a", DONE]),
        (b"data: a\n\ndata: b\n\ndata: c", [b"a", b"b"]),
    ],
)
def test_many_events_in_one_chunk_with_anything_between_them(
    stream: bytes, payloads: list[bytes]
) -> None:
    assert SSEParser().feed(stream) == payloads


def reference_parse(stream: bytes) -> list[bytes]:
    """The SSE spec's algorithm, line by line, slow and plain: what SSEParser must match."""
    out: list[bytes] = []
    data: list[bytes] | None = None
    lines = stream.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    for line in lines[:-1]:  # the last piece has no line end yet
        if not line:
            if data is not None:
                out.append(b"\n".join(data))
            data = None
        elif line.startswith(b":"):
            continue
        else:
            name, _, value = line.partition(b":")
            if name == b"data":
                value = value[1:] if value.startswith(b" ") else value
                data = [*(data or []), value]
    return out


def test_random_streams_and_random_cuts_match_the_spec() -> None:
    import random

    rng = random.Random(20260101)
    forms = [
        lambda i: b'data: {"i":%d}\n\n' % i,
        lambda i: b'data:{"i":%d}\n\n' % i,
        lambda i: b": ping %d\n\n" % i,
        lambda i: b"event: e\nid: %d\ndata: %d\n\n" % (i, i),
        lambda i: b"data: line%d\ndata: more\n\n" % i,
        lambda i: b"\n",
    ]
    for _ in range(300):
        events = b"".join(rng.choice(forms)(i) for i in range(rng.randint(1, 30)))
        newline = rng.choice([b"\n", b"\n", b"\r\n", b"\r"])
        stream = events.replace(b"\n", newline)
        cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randint(0, 8))))
        chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        p = SSEParser()
        got = [x for c in chunks for x in p.feed(c)]
        # A final lone \r is held until the next byte says whether \n follows: flush.
        assert [*got, *p.flush()] == reference_parse(stream), (stream, cuts)
        if not stream.endswith(b"\r"):
            assert p.truncated == b""
