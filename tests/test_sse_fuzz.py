"""Property tests (hypothesis) of the SSE parser and the client's event handling.

The parser never raises on any bytes in any chunking, and on any well-formed stream
(LF, CRLF or CR line ends, comments, other fields, multi-line data, blank-line runs,
several events a chunk, no ``[DONE]``) it returns what the SSE spec's line-by-line
algorithm returns, however the bytes are cut. The client's stream state turns any
payload (broken JSON, empty or odd ``choices``, invalid UTF-8, deep nesting) into a
:class:`~quantlab.records.LaneError` value of its own kinds, never an exception.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sse import reference_parse

from quantlab.client import _Stream
from quantlab.records import LaneError
from quantlab.sse import SSEParser

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KINDS = {"protocol", "stream", "context"}


def parse_chunks(chunks: list[bytes]) -> list[bytes]:
    p = SSEParser()
    out: list[bytes] = []
    for c in chunks:
        got = p.feed(c)
        assert isinstance(got, list) and all(isinstance(x, bytes) for x in got)
        out.extend(got)
    out.extend(p.flush())
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@FUZZ
@given(st.binary(max_size=400), st.lists(st.integers(min_value=0), max_size=12))
def test_any_bytes_in_any_chunks_never_raise(data: bytes, cuts: list[int]) -> None:
    parse_chunks(split(data, cuts))


_value = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=20
).map(str.encode)
_event = st.one_of(
    _value.map(lambda v: b"data: " + v + b"\n\n"),
    _value.map(lambda v: b"data:" + v + b"\n\n"),
    st.lists(_value, min_size=1, max_size=3).map(
        lambda vs: b"".join(b"data: " + v + b"\n" for v in vs) + b"\n"
    ),
    _value.map(lambda v: b": " + v + b"\n\n"),  # comment / ping
    _value.map(lambda v: b"event: " + v + b"\nid: 1\ndata: x\n\n"),
    st.just(b"\n"),  # blank-line runs
    st.just(b"retry: 10\n\n"),
    st.just(b"data: [DONE]\n\n"),
)


def _parses_as_the_spec_says(events: list[bytes], newline: bytes, cuts: list[int]) -> None:
    """The stream these events make, with this newline, parses as the reference parser
    says, both cut at ``cuts`` and whole."""
    stream = b"".join(events).replace(b"\n", newline)
    expected = reference_parse(stream)
    assert parse_chunks(split(stream, cuts)) == expected
    assert parse_chunks([stream]) == expected


@FUZZ
@given(
    st.lists(_event, max_size=25),
    st.sampled_from([b"\n", b"\r\n", b"\r"]),
    st.lists(st.integers(min_value=0), max_size=12),
)
def test_well_formed_streams_parse_as_the_spec_says_however_cut(
    events: list[bytes], newline: bytes, cuts: list[int]
) -> None:
    _parses_as_the_spec_says(events, newline, cuts)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
_choice = st.fixed_dictionaries(
    {},
    optional={
        "delta": st.one_of(
            _json,
            st.fixed_dictionaries({}, optional={"content": _json, "role": _json}),
        ),
        "finish_reason": _json,
        "index": _json,
    },
)
_chunk = st.fixed_dictionaries(
    {},
    optional={
        "choices": st.one_of(_json, st.lists(st.one_of(_choice, _json), max_size=3)),
        "usage": st.one_of(_json, st.fixed_dictionaries({"completion_tokens": _json})),
        "error": _json,
        "object": st.sampled_from(["error", "chat.completion.chunk"]),
        "message": _json,
        "model": _json,
        "timings": _json,
    },
)


def _check(stream: _Stream) -> None:
    if stream.error is not None:
        assert isinstance(stream.error, LaneError) and stream.error.kind in KINDS
        assert isinstance(stream.error.message, str)
    assert all(isinstance(p, str) and p for p in stream.parts)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_chunk, max_size=5))
def test_any_chunk_shapes_become_values_never_exceptions(chunks: list[dict]) -> None:
    s = _Stream(None, token_cap=100)
    for i, c in enumerate(chunks):
        if s.event(json.dumps(c).encode(), i):
            break
    _check(s)


@FUZZ
@given(st.lists(st.binary(max_size=60), max_size=8))
def test_any_payload_bytes_become_values_never_exceptions(payloads: list[bytes]) -> None:
    s = _Stream(None, token_cap=None)
    for i, p in enumerate(payloads):
        if s.event(p, i):
            break
    _check(s)


def test_deep_nesting_and_broken_json_are_protocol_errors() -> None:
    for payload in (b"[" * 100_000, b'{"choices": [{"delta": {"content": "x', b"{}}"):
        s = _Stream(None, token_cap=None)
        assert s.event(payload, 0) is True
        assert s.error is not None and s.error.kind == "protocol"


_long_value = st.builds(
    lambda v, n: (v * (n // max(1, len(v)) + 1))[:n],
    _value.filter(bool),
    st.integers(min_value=480, max_value=2600),
)
_long_event = st.one_of(
    _long_value.map(lambda v: b"data: " + v + b"\n\n"),
    st.lists(_long_value, min_size=1, max_size=2).map(
        lambda vs: b"".join(b"data: " + v + b"\n" for v in vs) + b"\n"
    ),
    _event,
)


@FUZZ
@given(
    st.lists(_long_event, max_size=12),
    st.sampled_from([b"\n", b"\r\n", b"\r"]),
    st.lists(st.integers(min_value=0), max_size=12),
)
def test_long_events_parse_as_the_spec_says_however_cut(
    events: list[bytes], newline: bytes, cuts: list[int]
) -> None:
    """Events of ~0.5-2.6 KB (what top-20 log-probabilities make) take the long-event path:
    mixed with short ones, comments and fields, cut anywhere, it matches the spec."""
    _parses_as_the_spec_says(events, newline, cuts)
