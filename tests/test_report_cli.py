"""``quantlab report``: every format from a real session file, -o, and clear exits on bad
input (a message and status 2, never a traceback)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from report_sessions import CAND, build_full

from quantlab.cli import main


@pytest.fixture(scope="module")
def session_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_full(tmp_path_factory.mktemp("cli") / "full.json")


def test_md_to_stdout_by_default(session_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(session_file)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# quantlab report: awq vs bf16 (reference)")
    assert "## Reference vs candidate, paired" in out


@pytest.mark.parametrize("fmt", ["longctx", "json"])
def test_json_formats_parse(
    fmt: str, session_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(session_file), "--format", fmt]) == 0
    doc = json.loads(capsys.readouterr().out)
    if fmt == "longctx":
        assert isinstance(doc, list) and doc[0]["context_tokens"] == 1000
        assert "quant_output" in doc[0]
    else:
        assert doc["reference"] == "bf16" and doc["candidates"] == [CAND]


def test_csv_and_brief(session_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(session_file), "-f", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and rows[0]["exchange_id"]
    assert main(["report", str(session_file), "-f", "brief"]) == 0
    assert capsys.readouterr().out.startswith("# Quantization risk brief (draft)")


def test_output_file_and_session_flag(session_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.md"
    assert main(["report", "--session", str(session_file), "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8").startswith("# quantlab report")
    assert not list(tmp_path.glob(".r.md.tmp-*"))  # the temp file was renamed away


def test_gpu_hour_price_overrides_the_run(
    session_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(session_file), "-f", "json", "--gpu-hour-price", "2"]) == 0
    doc = json.loads(capsys.readouterr().out)
    row = doc["capacity"]["lanes"]["bf16"][0]
    assert doc["capacity"]["gpu_hour_price"] == 2.0
    # 2 USD/h / (64 tok/s * 3600) * 1e6
    assert row["cost_per_1m_output_usd"] == pytest.approx(2 / (64 * 3600) * 1e6, rel=1e-3)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such session file"),
        (b"", "empty"),
        (b'{"schema": "quantlab.session/1", "exchanges": [', "cut short"),
        (b'{"hello": 1}', "not a quantlab session"),
        (b'{"schema": "quantlab.session/1", "exchanges": [{"prompt": "x"}]}', "malformed"),
    ],
)
def test_bad_session_is_a_message_and_exit_2(
    content: bytes | None, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "bad.json"
    if content is not None:
        p.write_bytes(content)
    assert main(["report", str(p)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("quantlab report: ")
    assert message in captured.err
    assert "Traceback" not in captured.err


def test_a_broken_value_is_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads(build_full(tmp_path / "f.json").read_text())
    for ex in doc["exchanges"]:
        if ex["suite"] == "concurrency":
            ex["meta"]["concurrency"] = "eight"
    bad = tmp_path / "edited.json"
    bad.write_text(json.dumps(doc))
    assert main(["report", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "a value in the session cannot be used" in err and "eight" in err


def test_unwritable_output_and_no_session(
    session_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(session_file), "-o", str(tmp_path / "no" / "dir.md")]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert main(["report"]) == 2
    assert "name a session file" in capsys.readouterr().err


def test_as_a_subprocess_with_a_closed_pipe(session_file: Path) -> None:
    """The real entry point: exit 2 and one line for a corrupt file; `| head` is quiet."""
    bad = session_file.with_name("cut.json")
    bad.write_bytes(session_file.read_bytes()[:200])
    proc = subprocess.run(
        [sys.executable, "-m", "quantlab", "report", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "cut short" in proc.stderr
    head = subprocess.run(
        f"{sys.executable} -m quantlab report {session_file} -f csv | head -n 1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert head.stdout.startswith("exchange_id,")
    assert "Traceback" not in head.stderr


@pytest.mark.slow
def test_run_then_report_on_the_local_pair(local_pair: list, tmp_path: Path) -> None:
    """The acceptance flow: a headless sanity run on the real pair, then the md report and
    the other formats of that same session, as a user types them."""
    session = tmp_path / "s.json"
    eps = [f"{e.name}={e.base_url}" for e in local_pair]
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "quantlab",
            "run",
            "sanity",
            "--quick",
            "--session",
            str(session),
            "--endpoint",
            eps[0],
            "--endpoint",
            eps[1],
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode in (0, 1), run.stderr
    rep = subprocess.run(
        [sys.executable, "-m", "quantlab", "report", str(session), "--format", "md"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rep.returncode == 0, rep.stderr
    text = rep.stdout
    ref, cand = local_pair[0].name, local_pair[1].name
    assert text.startswith(f"# quantlab report: {cand} vs {ref} (reference)")
    assert "Over 8 quality cases" in text
    assert "| sanity | cases | 8 | " in text
    assert "GGUF Q4_0: block-wise 4-bit round-to-nearest" in text
    assert "## Reference vs candidate, paired" in text and "McNemar exact p" in text
    # 8 cases can never show a difference: the report must say so.
    assert "Not enough cases to tell" in text
    assert "Not run (no long-context suite in this session)." in text
    assert "## Latency (one request at a time)" in text
    # The other formats of the same real session.
    from quantlab.reports import csv_export
    from quantlab.session import load_session

    s = load_session(session)
    rows = list(csv.DictReader(io.StringIO(csv_export.render(s))))
    assert len(rows) == 16 and {r["lane"] for r in rows} == {ref, cand}
    assert all(float(r["ttft_ms"]) > 0 for r in rows if not r["error"])
