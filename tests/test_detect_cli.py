"""``quantlab detect FILE.jsonl``: JSON lines in, one JSON line per finding out, bad lines
reported with their number while the rest is processed."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from quantlab.cli import main

DATA = Path(__file__).parent / "data" / "pair_outputs.jsonl"
KEYS = {"id", "lane", "detector", "severity", "score", "evidence"}


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict], str]:
    rc = main(["detect", *args])
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    return rc, rows, err


def write(tmp_path: Path, lines: list[object]) -> Path:
    path = tmp_path / "in.jsonl"
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def test_recorded_pair_outputs(capsys: pytest.CaptureFixture[str]) -> None:
    rc, rows, err = run_cli(capsys, str(DATA))
    # The Q4_0 lane has fail findings: the default gate (--fail-on fail) exits 1.
    assert rc == 1, err
    assert err.startswith("quantlab detect: ") and "q4_0: " in err and "exit status 1" in err
    assert rows and all(set(r) == KEYS for r in rows)
    assert {r["lane"] for r in rows} == {"bf16", "q4_0"}
    # bf16 is the first lane: the reference, never compared with itself.
    assert {r["lane"] for r in rows if r["detector"] == "divergence"} == {"q4_0"}
    tiger = [r for r in rows if r["id"] == "long-describe-tiger" and r["detector"] == "repetition"]
    assert [r["lane"] for r in tiger] == ["q4_0"]
    assert tiger[0]["severity"] == "fail" and "majestic" in tiger[0]["evidence"]


def test_first_lane_is_the_reference_whatever_its_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rec = {
        "id": "x",
        "prompt": "What is 2 + 2?",
        "expect": 4,
        "zeta": {"text": "2 + 2 = 4.", "finish_reason": "stop"},
        "alpha": {"text": "2 + 2 = 5.", "finish_reason": "stop"},
        "mid": {"text": "2 + 2 = 4.", "finish_reason": "stop"},
    }
    rc, rows, _ = run_cli(capsys, str(write(tmp_path, [rec])), "--fail-on", "never")
    assert rc == 0
    assert {(r["lane"], r["detector"]) for r in rows} == {
        ("alpha", "expected_answer"),
        ("alpha", "divergence"),
    }


def test_record_checks_map_to_the_case(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rec = {
        "id": "ctx",
        "prompt": "Notes: code 4417, fruit mango. What are they?",
        "facts": [
            {"key": "code", "value": "4417", "depth": 0.2},
            {"key": "fruit", "value": "mango"},
        ],
        "format": "one_line",
        "expect_regex": "4417",
        "max_tokens": 12,
        "ref": {"text": "The code is 4417 and the fruit is mango.", "finish_reason": "stop"},
        "cand": {"text": "The code is 4471.\nThe fruit is", "finish_reason": "length"},
    }
    rc, rows, _ = run_cli(capsys, str(write(tmp_path, [rec])), "--fail-on", "never")
    assert rc == 0
    cand = {r["detector"]: r for r in rows if r["lane"] == "cand"}
    assert set(cand) == {"truncation", "fact_recall", "expected_answer", "format", "divergence"}
    assert "capped at max_tokens (12)" in cand["truncation"]["evidence"]
    assert cand["fact_recall"]["score"] == 0.0
    assert not [r for r in rows if r["lane"] == "ref"]


def test_bad_lines_are_reported_and_the_rest_processed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    good = {"id": "g", "a": {"text": "", "finish_reason": "stop"}}
    path = write(
        tmp_path,
        [
            good,
            "{not json",
            {"id": "nolanes", "prompt": "hi"},
            "[1, 2]",
            "",
            {"id": "badregex", "expect_regex": "(", "a": {"text": ""}},
            {"a": {"text": "the the the the the the"}},
            {"id": "badlane", "a": {"text": None}, "b": {"text": "fine"}},
        ],
    )
    rc, rows, err = run_cli(capsys, str(path))
    assert rc == 2
    assert f"{path}:2: not JSON" in err
    assert f"{path}:3: no lanes" in err
    assert f"{path}:4: not a JSON object" in err
    assert f"{path}:6: " in err and "expect_regex" in err
    assert f'{path}:7: no usable "id"' in err
    assert f'{path}:8: lane "a"' in err
    assert "Traceback" not in err
    ids = {r["id"] for r in rows}
    assert {"g", "badregex", "line 7"} <= ids
    assert ("g", "collapse") in {(r["id"], r["detector"]) for r in rows}
    assert "nolanes" not in ids


def test_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, rows, err = run_cli(capsys, str(tmp_path / "nope.jsonl"))
    assert rc == 2 and rows == []
    assert "cannot read" in err and "nope.jsonl" in err
    assert "Traceback" not in err


def test_filters(capsys: pytest.CaptureFixture[str]) -> None:
    rc, rows, _ = run_cli(capsys, str(DATA), "--min-severity", "fail")
    assert rc == 1 and rows and {r["severity"] for r in rows} == {"fail"}
    rc, rows, err = run_cli(capsys, str(DATA), "--detector", "truncation", "--summary")
    assert rc in (0, 1) and {r["detector"] for r in rows} == {"truncation"}
    assert "truncation" in err and "findings per lane" in err


def test_stdin_through_the_real_entry_point() -> None:
    rec = {"id": "s", "ref": {"text": "Paris."}, "cand": {"text": "so far away, " * 6}}
    proc = subprocess.run(
        [sys.executable, "-m", "quantlab", "detect", "-", "--fail-on", "never"],
        input=json.dumps(rec) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in io.StringIO(proc.stdout)]
    assert ("cand", "repetition") in {(r["lane"], r["detector"]) for r in rows}


TRUNCATED = {  # a warn finding only (truncation), nothing at fail
    "id": "t",
    "max_tokens": 8,
    "ref": {"text": "Paris is the capital of France.", "finish_reason": "stop"},
    "cand": {"text": "Paris is the capital of", "finish_reason": "length"},
}
LOOPING = {"id": "loop", "ref": {"text": "Paris."}, "cand": {"text": "so far away, " * 8}}
CLEAN = {"id": "ok", "ref": {"text": "Paris."}, "cand": {"text": "Paris."}}


@pytest.mark.parametrize(
    ("records", "flag", "status"),
    [
        ([CLEAN], [], 0),
        ([CLEAN, TRUNCATED], [], 0),
        ([CLEAN, TRUNCATED], ["--fail-on", "warn"], 1),
        ([CLEAN, LOOPING], [], 1),
        ([CLEAN, LOOPING], ["--fail-on", "never"], 0),
        ([LOOPING, "{not json"], [], 2),  # bad input says so first
    ],
)
def test_fail_on_gates_the_exit_status(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    records: list[object],
    flag: list[str],
    status: int,
) -> None:
    rc, _rows, err = run_cli(capsys, str(write(tmp_path, records)), *flag)
    assert rc == status, err
    gate = [line for line in err.splitlines() if "exit status 1" in line]
    assert len(gate) == (1 if status == 1 else 0)
    if status == 1:
        assert "cand: " in gate[0] and "--fail-on never" in gate[0]


def test_fail_on_is_in_the_help_and_only_detects_own_flags(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["detect", "--help"])
    out = capsys.readouterr().out
    assert "--fail-on {warn,fail,never}" in out and "examples:" in out
    # The lane, session and theme flags do nothing here: not offered.
    for flag in ("--endpoint", "--session", "--theme", "--stall-timeout"):
        assert flag not in out
