"""`quantlab run` as a person runs it: a subprocess, a session file, Ctrl+C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quantlab.records import Endpoint
from quantlab.session import SessionError, load_session

pytestmark = pytest.mark.slow


def _env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "cfg"), "PYTHONUNBUFFERED": "1"}
    env.pop("QUANTLAB_SUITES", None)
    return env


def _flags(pair: list[Endpoint]) -> list[str]:
    return [f for e in pair for f in ("--endpoint", f"{e.name}={e.base_url}")]


def test_run_sanity_demo_writes_a_session_that_loads(tmp_path: Path) -> None:
    path = tmp_path / "demo.json"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "quantlab",
            "run",
            "sanity",
            "--demo",
            "--quick",
            "--session",
            str(path),
        ],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in res.stderr
    assert f"session: {path}" in res.stderr
    assert "8/8 exchanges" in res.stderr
    # The summary on stdout: one line per lane of the sanity table.
    assert "sanity [cases]" in res.stdout and "bf16" in res.stdout and "q4_0" in res.stdout
    s = load_session(path)
    assert not path.with_name(path.name + ".journal").exists(), "closed: one plain file"
    assert len(s.exchanges) == 8
    assert {e.name for e in s.endpoints} == {"bf16", "q4_0"}
    assert all(set(ex.results) == {"bf16", "q4_0"} for ex in s.exchanges)
    assert s.meta["runs"][-1]["quick"] is True and s.meta["results"]["sanity"]["exchanges"] == 8
    # The detectors ran: the Q4_0 lane has findings in the file.
    assert any(ex.results["q4_0"].findings for ex in s.exchanges)
    # The exit status follows the findings gate (--fail-on fail by default): the tiny
    # models' answers vary with the servers' cache state, so read what the file holds.
    fails = [f for ex in s.exchanges for r in ex.results.values() for f in r.findings]
    fails = [f for f in fails if f.severity == "fail"]
    assert res.returncode == (1 if fails else 0), res.stderr
    assert ("exit status 1 (--fail-on never" in res.stderr) == bool(fails)


def _gate_run(tmp_path: Path, *flag: str) -> subprocess.CompletedProcess[str]:
    """A one-case user suite on scripted servers: the candidate gets "2+2" wrong (an
    expected_answer fail)."""
    import json

    from standin import Reply, StandIn

    suite = tmp_path / "gate.json"
    suite.write_text(
        json.dumps(
            {
                "name": "gate",
                "description": "one wrong sum",
                "cases": [
                    {"id": "sum", "messages": [{"role": "user", "content": "2+2?"}], "expect": "4"}
                ],
            }
        )
    )

    with StandIn(Reply(tokens=["4"])) as ref, StandIn(Reply(tokens=["5"])) as cand:
        lanes = ["--endpoint", f"ref={ref.url}", "--endpoint", f"cand={cand.url}"]
        session = ["--session", str(tmp_path / "gate-session.json")]
        return subprocess.run(
            [sys.executable, "-m", "quantlab", "run", str(suite), *flag, *lanes, *session],
            cwd=tmp_path,
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
        )


def test_a_fail_finding_fails_the_run_unless_fail_on_never(tmp_path: Path) -> None:
    res = _gate_run(tmp_path)
    assert res.returncode == 1, res.stderr
    gate = [line for line in res.stderr.splitlines() if "exit status 1" in line]
    assert gate == [
        "quantlab run: 1 fail finding (cand: expected_answer ×1); exit status 1 "
        "(--fail-on never ignores them)"
    ]
    assert "1/1 exchanges" in res.stderr  # the run itself finished
    quiet = _gate_run(tmp_path, "--fail-on", "never")
    assert quiet.returncode == 0, quiet.stderr
    assert "exit status 1" not in quiet.stderr


def test_ctrl_c_stops_cleanly_and_keeps_finished_exchanges(
    local_pair: list[Endpoint], tmp_path: Path
) -> None:
    path = tmp_path / "stopped.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "quantlab",
            "run",
            "sanity",
            "distribution",
            *_flags(local_pair),
            "--session",
            str(path),
        ],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        seen = 0
        while time.monotonic() < deadline and seen < 3:
            time.sleep(0.3)
            try:
                seen = len(load_session(path).exchanges)
            except SessionError:
                continue
        assert seen >= 3, "the run wrote exchanges while it went"
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "stopping; finished exchanges are kept" in err
    assert f"session: {path}" in err
    s = load_session(path)
    assert not path.with_name(path.name + ".journal").exists()
    total = 22 + 45
    assert seen <= len(s.exchanges) < total
    assert all(set(ex.results) == {"bf16", "q4_0"} for ex in s.exchanges)
    run = s.meta["runs"][-1]
    assert run["cancelled"] is True and run["total"] == total
    assert s.meta["results"]["sanity"]["exchanges"] >= 3
    assert "stopped" in err


def test_no_lane_answering_is_said_plainly(tmp_path: Path) -> None:
    path = tmp_path / "down.json"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "quantlab",
            "run",
            "sanity",
            "--endpoint",
            "a=http://127.0.0.1:9",
            "--session",
            str(path),
        ],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1
    assert "connection refused" in res.stderr and "nothing was sent" in res.stderr
    assert "Traceback" not in res.stderr
