"""The client's limits against misbehaving stand-in servers (issue 9: survive the night).

Runaway answers are cut and the connection closed; invalid UTF-8 costs one replacement
character, not the lane; hung, dripping and absent servers fail fast with a message that
says what happened; the timing follows ``vllm bench serve`` even with a late usage chunk.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from standin import Reply, StandIn

from quantlab.client import LaneClient
from quantlab.detectors import detect_exchange
from quantlab.fanout import fanout
from quantlab.limits import ClientLimits, token_cap
from quantlab.records import Endpoint, SamplingParams
from quantlab.session import SessionStore, load_session

HELLO = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with StandIn(max_model_len=10**9) as s:
        yield s


def client_for(s: StandIn, **kw: object) -> LaneClient:
    return LaneClient(Endpoint("lane", s.url, model=s.model), **kw)  # type: ignore[arg-type]


async def wait_until(cond: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.02)
    return False


# ------------------------------------------------------------------ runaway (9.1)


async def test_a_server_that_ignores_max_tokens_is_cut_and_its_connection_closed(
    standin: StandIn,
) -> None:
    standin.script = Reply(tokens=["loop "], runaway=True)
    async with client_for(standin) as c:
        r = await c.chat(HELLO, SamplingParams(max_tokens=16))
        cap = token_cap(16)
        assert cap == 96
        assert r.error is None and r.cut_off is not None
        assert "cut off by quantlab" in r.cut_off and "96 content chunks" in r.cut_off
        # Text up to the cap is kept, and no more.
        assert r.text.startswith("loop loop") and len(r.text) <= (cap + 1) * len("loop ")
        # The server saw the hang-up: its stream ended while it still had tokens to send.
        assert await wait_until(lambda: standin.counters.running == 0)
        # The same client goes on serving the next request.
        standin.script = Reply(tokens=["fine"])
        ok = await c.chat(HELLO, SamplingParams(max_tokens=16))
    assert ok.ok and ok.text == "fine" and ok.cut_off is None


async def test_the_byte_cap_bounds_an_answer_whatever_max_tokens_says(
    standin: StandIn,
) -> None:
    standin.script = Reply(tokens=["x" * 500], runaway=True, bulk=True)
    limits = ClientLimits(max_answer_bytes=64 * 1024)
    async with client_for(standin, limits=limits) as c:
        # No logprobs: then nearly every byte on the wire is answer text.
        r = await c.chat(HELLO, SamplingParams(max_tokens=10**7, top_logprobs=None))
    assert r.error is None and r.cut_off is not None
    assert "65536 bytes" in r.cut_off
    assert 10_000 < len(r.text) < 64 * 1024
    assert await wait_until(lambda: standin.counters.running == 0)


async def test_logprobs_do_not_count_against_the_byte_cap(standin: StandIn) -> None:
    """Top-20 logprobs make each chunk ~2 KB: counted, the default 8 MiB cap cut a
    4,300-token answer as a runaway (found by benchmarks/ui_lag.py). The text's bytes
    count; the logprobs are bounded by the chunk cap."""
    words = [f" w{i % 50}" for i in range(600)]
    standin.script = Reply(tokens=words)
    limits = ClientLimits(max_answer_bytes=256 * 1024)  # the rest of a chunk: ~300 bytes
    async with client_for(standin, limits=limits) as c:
        r = await c.chat(HELLO, SamplingParams(max_tokens=1000, top_logprobs=20))
    assert r.error is None and r.cut_off is None
    assert r.text == "".join(words) and r.logprobs is not None
    assert sum(len(x) for x in r.logprobs.chunks) > 256 * 1024  # the cap would have cut


async def test_a_cut_lane_gets_a_runaway_finding_and_the_session_keeps_why(
    standin: StandIn, tmp_path: Path
) -> None:
    standin.script = Reply(tokens=["again "], runaway=True)
    ep = Endpoint("lane", standin.url, model=standin.model)
    async with LaneClient(ep) as c:
        ex = await fanout([c], {"lane": HELLO}, SamplingParams(max_tokens=8), prompt="Say hello")
    detect_exchange(ex)
    r = ex.results["lane"]
    assert [f.detector for f in r.findings if f.severity == "fail"].count("runaway") == 1
    path = tmp_path / "s.json"
    store = SessionStore.open(path, endpoints=[ep])
    store.append_exchange(ex)
    store.close()
    kept = load_session(path).exchanges[0].results["lane"]
    assert kept.cut_off == r.cut_off and kept.text == r.text
    assert any(f.detector == "runaway" for f in kept.findings)


# ------------------------------------------------------------------ invalid UTF-8 (9.5)


@pytest.mark.parametrize("split_every", [None, 1, 7], ids=["whole", "every-byte", "7-bytes"])
async def test_one_invalid_utf8_byte_costs_a_replacement_character_not_the_lane(
    standin: StandIn, split_every: int | None
) -> None:
    toks = ["Grüß", " dich", " 日本", " ok", " end"]
    standin.script = Reply(tokens=toks, bad_utf8_at=1, split_every=split_every)
    async with client_for(standin) as c:
        r = await c.chat(HELLO, SamplingParams(max_tokens=64))
    assert r.ok and r.finish_reason == "stop"
    assert r.text == "Grüß d\ufffdich 日本 ok end"
    assert len(r.notes) == 1 and "invalid UTF-8" in r.notes[0] and "1 data line" in r.notes[0]
    assert r.to_dict()["notes"] == r.notes


async def test_multibyte_characters_split_across_chunks_are_not_a_protocol_note(
    standin: StandIn,
) -> None:
    standin.script = Reply(tokens=["日本語", " ünïcödé", " 🙂"], split_every=1)
    async with client_for(standin) as c:
        r = await c.chat(HELLO, SamplingParams(max_tokens=64))
    assert r.ok and r.text == "日本語 ünïcödé 🙂" and r.notes == []


# ------------------------------------------------------------------ timeouts (9.7)


async def test_a_server_that_never_answers_fails_on_the_stall_timeout() -> None:
    with socket.socket() as sock:  # accepts connections (kernel backlog), never a byte back
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        limits = ClientLimits(stall_s=0.3, total_s=30)
        started = time.monotonic()
        async with LaneClient(Endpoint("hung", url), limits=limits) as c:
            r = await c.chat(HELLO, SamplingParams())
        took = time.monotonic() - started
    assert r.error is not None and r.error.kind == "timeout"
    assert "no bytes for 0.3 s after the request" in r.error.message
    assert took < 20  # the stall timeout, not the total one, ended it


async def test_a_stream_that_stalls_mid_answer_says_so_and_keeps_its_text(
    standin: StandIn,
) -> None:
    standin.script = Reply(fault="stall", stall_s=10)
    async with client_for(standin, limits=ClientLimits(stall_s=0.3)) as c:
        r = await c.chat(HELLO, SamplingParams())
    assert r.error is not None and r.error.kind == "timeout"
    assert "no bytes for 0.3 s in the middle of the answer" in r.error.message
    assert r.text == "Hello,"


async def test_a_slow_drip_with_pings_is_ended_by_the_total_timeout(standin: StandIn) -> None:
    # Bytes keep coming (pings), so the stall timeout never fires; the total one does.
    standin.script = Reply(tokens=["z"], n_tokens=1000, tokens_per_s=4, ping_every_s=0.05)
    limits = ClientLimits(stall_s=0.5, total_s=1.0)
    async with client_for(standin, limits=limits) as c:
        r = await c.chat(HELLO, SamplingParams(max_tokens=1000))
    assert r.error is not None and r.error.kind == "timeout"
    assert "within 1 s" in r.error.message
    assert 0 < len(r.text) < 1000


async def test_a_server_down_at_start_and_up_later_is_served_by_the_same_client() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    async with LaneClient(Endpoint("late", f"http://127.0.0.1:{port}")) as c:
        first = await c.chat(HELLO, SamplingParams())
        assert first.error is not None and first.error.kind == "connect"
        assert "refused" in first.error.message
        with StandIn(Reply(tokens=["up", " now"]), port=port):
            second = await c.chat(HELLO, SamplingParams())
    assert second.ok and second.text == "up now"


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="stall_s"):
        ClientLimits(stall_s=0)
    with pytest.raises(ValueError, match="max_answer_bytes"):
        ClientLimits(max_answer_bytes=10)
    assert token_cap(None) is None and token_cap(100) == 264


# ------------------------------------------------------------------ vLLM timing (8.3)


async def test_a_late_usage_chunk_counts_as_vllm_bench_counts_it(standin: StandIn) -> None:
    """vllm bench serve (openai-chat) ends its latency at the last data line other than
    [DONE], so a late usage chunk is in e2e and TPOT; quantlab's decode rate
    (tokens_per_s) is taken between chunks with choices only and does not drop."""
    standin.script = Reply(tokens=["a", "b", "c"], tokens_per_s=100, usage_delay_s=0.6)
    async with client_for(standin) as c:
        r = await c.chat(HELLO, SamplingParams(max_tokens=64))
    t = r.timing
    assert r.ok and r.usage is not None and t.output_tokens == 4
    assert t.e2e_ms is not None and t.last_byte_ms is not None and t.ttft_ms is not None
    assert t.e2e_ms >= 550  # the usage chunk came 0.6 s after the finish chunk
    assert t.last_byte_ms >= t.e2e_ms
    assert t.tpot_ms == pytest.approx((t.e2e_ms - t.ttft_ms) / 3, rel=1e-3)
    assert t.tokens_per_s is not None and t.tokens_per_s > 1000 / 550 * 3


def test_ask_with_a_short_stall_timeout_fails_a_hung_lane_fast_and_says_why() -> None:
    import subprocess
    import sys

    with socket.socket() as sock, StandIn(Reply(tokens=["fine"])) as ok:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        hung = f"http://127.0.0.1:{sock.getsockname()[1]}"
        started = time.monotonic()
        flags = ["--endpoint", f"ok={ok.url}", "--endpoint", f"hung={hung}"]
        flags += ["--stall-timeout", "0.5", "--json", "--no-save"]
        proc = subprocess.run(
            [sys.executable, "-m", "quantlab", "ask", *flags, "hi"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        took = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr
    lanes = {lane["name"]: lane for lane in orjson.loads(proc.stdout)["lanes"]}
    assert lanes["ok"]["error"] is None and lanes["ok"]["text"] == "fine"
    assert "no bytes for 0.5 s after the request" in lanes["hung"]["error"]
    assert took < 60
