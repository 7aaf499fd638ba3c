"""``quantlab ask`` as a user runs it: a subprocess against the real local pair."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from quantlab.records import Endpoint

LANE_KEYS = {
    "tpot_ms",
    "ttfc_ms",
    "last_byte_ms",
    "cut_off",
    "notes",
    "name",
    "model",
    "text",
    "finish_reason",
    "usage",
    "ttft_ms",
    "itl_ms",
    "e2e_ms",
    "output_tokens",
    "tokens_per_s",
    "error",
    "agreement",
}


def ask(
    *argv: str, columns: int = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``quantlab ask``; without ``cwd`` or ``--session`` it adds ``--no-save`` (every
    ask is logged by default: not into the checkout's sessions/ folder from a test)."""
    env = {**os.environ, "COLUMNS": str(columns)}
    if cwd is None and "--session" not in argv and "--no-save" not in argv:
        argv = ("--no-save", *argv)
    return subprocess.run(
        [sys.executable, "-m", "quantlab", "ask", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
    )


def flags(eps: list[Endpoint]) -> list[str]:
    return [a for e in eps for a in ("--endpoint", f"{e.name}={e.base_url}")]


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_json_answer_of_both_lanes(local_pair: list[Endpoint]) -> None:
    p = ask("--json", "--max-tokens", "24", *flags(local_pair), "What is the capital of France?")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)  # exactly one JSON object on stdout
    assert set(out) == {"wall_ms", "lanes"}
    assert [lane["name"] for lane in out["lanes"]] == [e.name for e in local_pair]
    for lane, ep in zip(out["lanes"], local_pair, strict=True):
        assert set(lane) == LANE_KEYS
        assert lane["model"] == ep.model  # learned by discovery: the flags give no model
        assert lane["error"] is None and lane["text"]
        assert lane["finish_reason"] in ("stop", "length")
        assert lane["output_tokens"] == lane["usage"]["completion_tokens"] <= 24
        assert 0 < lane["ttft_ms"] <= lane["e2e_ms"] <= out["wall_ms"]
        assert len(lane["itl_ms"]) >= 1 and lane["tokens_per_s"] > 0
    ref, cand = out["lanes"]
    assert ref["agreement"] is None and cand["agreement"]["method"] == "shared-prefix"


def test_a_lane_that_is_down_fails_the_command_but_not_the_other_lane(
    local_pair: list[Endpoint],
) -> None:
    ref = local_pair[0]
    p = ask(
        "--json",
        "--max-tokens",
        "8",
        "--endpoint",
        f"{ref.name}={ref.base_url}/v1",
        "--endpoint",
        f"gone={dead_url()}",
        "Say hi.",
    )
    assert p.returncode == 1, p.stderr
    ok, down = json.loads(p.stdout)["lanes"]
    assert ok["error"] is None and ok["text"]
    assert isinstance(down["error"], str) and down["error"].startswith("connect")
    assert "refused" in down["error"] and down["text"] == ""


def test_columns_side_by_side_and_stacked(local_pair: list[Endpoint]) -> None:
    args = ("--max-tokens", "12", "--system", "Answer in one short sentence.", *flags(local_pair))
    ref, cand = (e.name for e in local_pair)
    wide = ask(*args, "Name a fruit.", columns=120)
    assert wide.returncode == 0, wide.stderr
    first = wide.stdout.splitlines()[0]
    assert ref in first and cand in first  # both lane headers on one row
    assert wide.stdout.count("TTFT") == 2 and "wall" in wide.stdout
    assert max(len(line) for line in wide.stdout.splitlines()) <= 120
    narrow = ask(*args, "Name a fruit.", columns=50)
    lines = narrow.stdout.splitlines()
    assert lines[0].startswith(ref) and not any(cand in x for x in lines[:3])
    assert any(line.startswith(cand) for line in lines)


def test_bad_input_is_a_message_and_status_2() -> None:
    p = ask("--endpoint", "nonsense", "hi")
    assert p.returncode == 2
    assert "expected NAME=URL" in p.stderr and "Traceback" not in p.stderr
    p = ask("--endpoint", "a=http://127.0.0.1:1", "--max-tokens", "0", "hi")
    assert p.returncode == 2 and "--max-tokens" in p.stderr


def test_session_flag_appends_each_exchange(local_pair: list[Endpoint], tmp_path: Path) -> None:
    from quantlab.session import load_session

    path = tmp_path / "asks.json"
    for prompt in ("Name a planet.", "Name a river."):
        p = ask("--json", "--max-tokens", "8", "--session", str(path), *flags(local_pair), prompt)
        assert p.returncode == 0, p.stderr
    session = load_session(path)
    names = [e.name for e in local_pair]
    assert [e.name for e in session.endpoints] == names
    assert [ex.prompt for ex in session.exchanges] == ["Name a planet.", "Name a river."]
    for ex in session.exchanges:
        assert ex.source == "ask" and list(ex.results) == names
        assert all(r.ok and r.text for r in ex.results.values())


def test_session_exchange_has_the_detectors_findings(
    local_pair: list[Endpoint], tmp_path: Path
) -> None:
    """ask goes through the same pipeline as the chat: the saved exchange is judged."""
    from quantlab.session import load_session

    path = tmp_path / "judged.json"
    prompt = "Write a long story about a river, at least three paragraphs."
    p = ask("--json", "--max-tokens", "4", "--session", str(path), *flags(local_pair), prompt)
    assert p.returncode == 0, p.stderr
    (ex,) = load_session(path).exchanges
    for lane, r in ex.results.items():
        assert r.finish_reason == "length", lane
        assert "truncation" in {f.detector for f in r.findings}, (lane, r.findings)


def test_every_ask_is_logged_to_the_sessions_folder_unless_no_save(
    local_pair: list[Endpoint], tmp_path: Path
) -> None:
    """As ``llm`` logs every prompt: a plain ask leaves a session file in ./sessions and
    says where on stderr in one line; --no-save leaves nothing."""
    from quantlab.session import load_session

    p = ask("--json", "--max-tokens", "6", *flags(local_pair), "Name a colour.", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    (path,) = (tmp_path / "sessions").glob("*.json")
    logged = [line for line in p.stderr.splitlines() if "logged to" in line]
    assert logged == [f"quantlab ask: logged to {Path('sessions') / path.name}"]
    (ex,) = load_session(path).exchanges
    assert ex.prompt == "Name a colour." and ex.source == "ask"
    assert [lane["text"] for lane in json.loads(p.stdout)["lanes"]] == [
        r.text for r in ex.results.values()
    ]

    quiet = tmp_path / "quiet"
    quiet.mkdir()
    p = ask("--no-save", "--max-tokens", "6", *flags(local_pair), "Name a colour.", cwd=quiet)
    assert p.returncode == 0, p.stderr
    assert list(quiet.iterdir()) == [] and "logged" not in p.stderr


def test_no_save_with_session_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    p = ask("--no-save", "--session", str(tmp_path / "s.json"), "--endpoint", "a=http://h:1", "hi")
    assert p.returncode == 2 and "contradict" in p.stderr
    assert not (tmp_path / "s.json").exists()
