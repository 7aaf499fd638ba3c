"""Reports on realistic sessions written with the real SessionStore: every count is known
in advance from tests/report_sessions.py, and each format must carry it."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from report_sessions import (
    CAND,
    REF,
    SANITY_B,
    SANITY_C,
    SANITY_CAND_PASS,
    SANITY_P,
    SANITY_REF_PASS,
    build_full,
    build_small,
    fail,
    result,
)

from quantlab.records import Annotation, Exchange, LaneError, SamplingParams
from quantlab.reports import brief, csv_export, longctx, md
from quantlab.reports.analysis import analyze, telemetry
from quantlab.reports.methods import describe, method_of
from quantlab.reports.outcomes import judge, judge_cases
from quantlab.reports.stats import wilson_interval
from quantlab.session import Session, load_session


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Session:
    return load_session(build_full(tmp_path_factory.mktemp("rep") / "full.json"))


@pytest.fixture(scope="module")
def analysis(full: Session) -> dict:
    return analyze(full)


# ------------------------------------------------------------------ outcomes


def test_judge_definition() -> None:
    assert judge(result(REF, "ok")).outcome == "pass"
    assert judge(None).outcome == "not_judged"
    err = judge(result(CAND, "", error=LaneError("http", "boom", 500)))
    assert err.outcome == "fail" and err.reasons == ["error: http"]
    assert judge(result(CAND, "", error=LaneError("cancelled", "stop"))).outcome == "not_judged"
    f = fail("repetition", CAND, "loop")
    assert judge(result(CAND, "x", findings=[f])).reasons == ["repetition"]
    f.status = "dismissed"
    assert judge(result(CAND, "x", findings=[f])).outcome == "pass"
    w = fail("truncation", CAND, "capped", severity="warn")
    shaky = judge(result(CAND, "x", findings=[w]))
    assert shaky.outcome == "pass" and shaky.warnings == ["truncation"]
    w.status = "confirmed"
    assert judge(result(CAND, "x", findings=[w])).outcome == "fail"
    info = fail("divergence", CAND, "different", severity="info")
    info.status = "confirmed"
    assert judge(result(CAND, "x", findings=[info])).outcome == "pass"
    minor = Annotation(exchange_id="e", lane=CAND, tags=["other"], severity=1)
    major = Annotation(exchange_id="e", lane="*", tags=["forgot context"], severity=2)
    assert judge(result(CAND, "x"), [minor]).outcome == "pass"
    assert judge(result(CAND, "x"), [major]).reasons == ["annotation: forgot context (severity 2)"]


def test_repetitions_fail_the_case_when_any_fails() -> None:
    def ex(i: int, ok: bool) -> Exchange:
        return Exchange(
            prompt="p",
            params=SamplingParams(),
            results={CAND: result(CAND, "x", findings=[] if ok else [fail("collapse", CAND, "")])},
            id=f"e{i}",
            suite="sanity",
            case_id="k",
            meta={"repetition": i, "concurrency": 1},
        )

    cases = judge_cases([ex(0, True), ex(1, False), ex(2, True)], [], [CAND])
    assert len(cases) == 1
    assert cases[0].outcomes[CAND].outcome == "fail"
    assert cases[0].exchange_ids == ["e0", "e1", "e2"]


# ------------------------------------------------------------------ analysis numbers


def test_sanity_rates_and_pairs(analysis: dict) -> None:
    sanity = next(s for s in analysis["suites"] if s["suite"] == "sanity")
    assert sanity["lanes"][REF]["k"] == SANITY_REF_PASS and sanity["lanes"][REF]["n"] == 10
    assert sanity["lanes"][CAND]["k"] == SANITY_CAND_PASS
    low, high = wilson_interval(SANITY_REF_PASS, 10)
    assert sanity["lanes"][REF]["low"] == pytest.approx(low)
    assert sanity["lanes"][REF]["high"] == pytest.approx(high)
    cmp = sanity["comparisons"][0]
    assert (cmp["ref_only"], cmp["cand_only"]) == (SANITY_B, SANITY_C)
    assert cmp["mcnemar"]["p_value"] == pytest.approx(SANITY_P)
    assert cmp["verdict"] == "too_few"
    assert "sanity/s4" in cmp["lost_cases"]  # the severity-2 annotation
    assert "sanity/s3" not in cmp["lost_cases"]  # its only finding was dismissed


def test_overall_is_holm_corrected_and_counts_errors_not_cancels(analysis: dict) -> None:
    ov = analysis["overall"]
    # sanity 10 + distribution 8 + long-context 2 + chat 2 (load suites are left out)
    assert ov["cases"] == 22
    assert ov["lanes"][CAND]["not_judged"] == 1  # the cancelled chat answer
    assert ov["lanes"][CAND]["errors"] == 1  # the HTTP 500
    cmp = ov["comparisons"][0]
    # b: s0 s1 s2 s4, code-0..2, ctx-4K, chat-err = 9; c: s9 = 1
    assert (cmp["ref_only"], cmp["cand_only"], cmp["n_pairs"]) == (9, 1, 21)
    assert cmp["mcnemar"]["p_value"] == pytest.approx(2 * 11 / 1024)
    # Significant alone (p = 0.021), not once the report's 12 comparisons of this
    # candidate are one Holm family: the smallest p is multiplied by 12.
    assert cmp["family_size"] == 12
    assert cmp["p_holm"] == pytest.approx(12 * 2 * 11 / 1024)
    assert cmp["verdict"] == "too_few"
    assert "Holm" in cmp["sentence"] and "not by more than chance" in cmp["sentence"]


def test_groups_find_where_the_quant_breaks(analysis: dict) -> None:
    dist = next(g for g in analysis["groups"] if g["suite"] == "distribution")
    assert dist["breaks_first"][CAND][0] == {"group": "ood:code", "difference": -0.75}
    assert dist["groups"]["calibration"]["lanes"][CAND]["k"] == 4
    assert set(dist["families"]) == {"calibration", "ood"}


def test_long_context_recall(analysis: dict) -> None:
    lc = analysis["long_context"]
    by = {e["label"]: e for e in lc["by_length"]}
    assert [e["label"] for e in lc["by_length"]] == ["1K", "4K"]
    assert by["4K"]["lanes"][CAND]["facts"]["k"] == 1
    assert by["4K"]["lanes"][REF]["facts"]["k"] == 3
    facts = {f["key"]: f for f in lc["by_fact"]}
    assert facts["dock_code"]["lanes"][CAND]["k"] == 2
    assert facts["oncall_lead"]["lanes"][CAND]["k"] == 1
    d = lc["recall_difference"][0]
    assert d["mean_difference"] == pytest.approx(-1 / 3)
    assert lc["skipped"][0]["label"] == "8K"


def test_concurrency_capacity_latency_telemetry(analysis: dict) -> None:
    conc = analysis["concurrency"]
    assert conc["levels"] == [1, 8]
    assert conc["lanes"][REF]["identical"] == 2
    assert conc["lanes"][CAND]["differ"] == 1 and conc["lanes"][CAND]["first_diff_min"] == 10
    cap = analysis["capacity"]
    assert list(cap["lanes"]) == [REF, CAND]  # session order
    row = cap["lanes"][REF][0]
    assert row["concurrency"] == 1 and row["output_tokens"] == 128
    assert cap["gpu_hour_price"] == 0.5  # from the run record
    assert cap["ttft_mode"][CAND].startswith("cold")
    lat = analysis["latency"]["lanes"]
    assert lat[CAND]["tokens_per_s_p50"] == 90.0
    assert lat[REF]["ttft_p50_ms"] == 100.0  # long-context prefill kept out
    gpu = analysis["telemetry"]["gpus"]["0"]
    assert gpu["mem_used_peak_mib"] == 9400 and gpu["power_peak_w"] == 54.0


def test_failures_by_detector_and_tag(analysis: dict) -> None:
    f = analysis["failures"]
    ea = f["detectors"]["expected_answer"]
    assert ea["fail"] == {REF: 1, CAND: 6} and ea["dismissed"] == {CAND: 1}
    # Candidate failures where the reference passed come first.
    assert [e["lane"] for e in ea["examples"]] == [CAND, CAND, CAND]
    assert ea["examples"][0]["reference_output"] == "answer 0"
    assert f["annotations"]["repetition loop"]["failing"] == {CAND: 1}
    assert f["annotations"]["other"]["failing"] == {}


# ------------------------------------------------------------------ markdown


def test_markdown_reads(analysis: dict) -> None:
    text = md.render(analysis)
    assert text.startswith("# quantlab report: awq vs bf16 (reference)")
    assert "## Headline" in text and "more than chance explains" in text
    assert "| sanity | cases | 10 | 9/10 · 90 % (60–98) | 6/10 · 60 % (31–83) |" in text
    assert "Not enough cases to tell" not in text.split("## Reference vs candidate")[0]
    assert "not enough cases to tell" in text  # the sanity row of the paired table
    assert "activation-aware" in text  # AWQ described correctly
    assert "Gradient" not in text
    assert "- 8K (8,000 tokens): bf16: does not fit" in text
    assert "awq: 1 of 2 answers changed with the batch" in text
    assert "TTFT, every lane: cold" in text
    assert "9.2 / 16.0" in text  # GPU memory peak / total, GiB (9,400 MiB)
    assert "loops on 'the the the'" in text
    # Outputs holding ``` get a longer fence that they cannot close.
    assert "````text\n  The answer is 40. ```python" in text
    assert "## Definitions" in text and "Wilson" in text
    assert "**Draft verdict for awq: Not a safe default yet**" in text
    assert analysis["verdicts"][CAND]["verdict"] == "Not a safe default yet"


def test_a_win_with_warnings_is_marked(tmp_path: Path) -> None:
    s = load_session(build_small(tmp_path / "s.json", [(False, True), (True, True)]))
    ex = s.exchanges[0]
    ex.results[CAND].findings = [fail("truncation", CAND, "capped", severity="warn")]
    a = analyze(s)
    cmp = a["overall"]["comparisons"][0]
    assert cmp["won_cases"] == ["sanity/k0"]
    assert cmp["won_with_warnings"] == {"sanity/k0": ["truncation"]}
    assert "`sanity/k0` (passed with warnings: truncation)" in md.render(a)


def test_markdown_small_sample_says_too_few(tmp_path: Path) -> None:
    outcomes = [(True, True)] * 6 + [(True, False)] * 3 + [(False, False)]
    s = load_session(build_small(tmp_path / "s.json", outcomes))
    text = md.render(analyze(s))
    assert "Not enough cases to tell whether awq differs from bf16" in text
    assert "with 3 discordant pairs the exact test cannot reach p < 0.05" in text
    # Sections whose suites did not run say so, with no invented numbers.
    assert "Not run (no long-context suite in this session)." in text
    assert "Not run (no concurrency suite in this session)." in text
    assert "Not run (no capacity suite in this session)." in text
    assert "No telemetry recorded in this session." in text
    assert "No annotations" in text


def test_markdown_of_an_empty_session(tmp_path: Path) -> None:
    s = Session(path=tmp_path / "e.json")
    text = md.render(analyze(s))
    assert "nothing to report" in text
    assert "No exchanges in this session." in text


# ------------------------------------------------------------------ long context export


def test_longctx_pair_shape(full: Session) -> None:
    rows = longctx.rows(full)
    assert len(rows) == 2
    r = rows[1]
    assert list(r)[:4] == ["context_tokens", "prompt", "bf16_output", "quant_output"]
    assert r["context_tokens"] == 4000
    assert r["quant_output"] == r[f"{CAND}_output"] and r["quant_output"].startswith("1. 4417")
    assert r["bf16_output"] == r[f"{REF}_output"]
    assert r["recall"][CAND] == {"dock_code": True, "oncall_lead": False, "release_codename": False}
    assert r["messages"][0]["role"] == "user"
    json.dumps(rows)  # plain JSON


def test_longctx_three_lanes_one_field_each(tmp_path: Path, full: Session) -> None:
    s = load_session(build_full(tmp_path / "f.json"))
    for ex in s.exchanges:
        if ex.suite == "long-context":
            ex.results["gptq"] = result("gptq", "1. 4417")
    rows = longctx.rows(s)
    assert {"bf16_output", "awq_output", "gptq_output"} <= set(rows[0])
    assert "quant_output" not in rows[0]  # no single candidate to alias


# ------------------------------------------------------------------ csv and json


def test_csv_columns_and_rows(full: Session) -> None:
    text = csv_export.render(full)
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames or ()) == csv_export.COLUMNS
    rows = list(reader)
    assert len(rows) == sum(len(ex.results) for ex in full.exchanges)
    s0 = next(r for r in rows if r["exchange_id"] == "sani-s0" and r["lane"] == CAND)
    assert s0["outcome"] == "fail" and s0["failing_detectors"] == "expected_answer"
    assert s0["output"] == "The answer is 40. ```python\nprint(0)\n```"  # newline survives
    assert float(s0["ttft_ms"]) == 80.0 and s0["role"] == "candidate"
    err = next(r for r in rows if r["exchange_id"] == "chat-err" and r["lane"] == CAND)
    assert err["error_kind"] == "http" and err["outcome"] == "fail"
    s4 = next(r for r in rows if r["exchange_id"] == "sani-s4" and r["lane"] == CAND)
    assert s4["annotation_tags"] == "repetition loop" and s4["annotation_max_severity"] == "2"
    s3 = next(r for r in rows if r["exchange_id"] == "sani-s3" and r["lane"] == CAND)
    assert s3["outcome"] == "pass" and s3["findings"] == "expected_answer:fail:dismissed"


def test_json_carries_the_md_numbers(analysis: dict) -> None:
    from quantlab.reports import json_export

    doc = json.loads(json_export.render(analysis))
    assert doc["schema"] == "quantlab.report/1"
    cmp = doc["overall"]["comparisons"][0]
    assert (cmp["ref_only"], cmp["cand_only"]) == (9, 1)
    assert doc["headline"] == analysis["headline"]
    assert f"{cmp['mcnemar']['p_value']:.3g}" in md.render(analysis)


def test_json_never_writes_nan(tmp_path: Path) -> None:
    from quantlab.reports import json_export

    s = load_session(build_small(tmp_path / "s.json", [(True, True)]))
    s.exchanges[0].results[CAND].timing.tokens_per_s = float("inf")
    s.exchanges[0].results[REF].timing.ttft_ms = float("nan")
    a = analyze(s)
    doc = json.loads(json_export.render(a))
    assert doc["latency"]["lanes"][CAND]["tokens_per_s_p50"] is None
    assert "## Latency" in md.render(a) and brief.render(a)
    assert json_export.clean({"x": [float("nan"), 1.0]}) == {"x": [None, 1.0]}


# ------------------------------------------------------------------ brief


def test_brief_flags_the_measured_drop(analysis: dict) -> None:
    text = brief.render(analysis)
    assert "**Not a safe default yet**" in text
    assert "**all quality cases**" not in text  # scopes are suites and groups
    assert "**sanity / arithmetic**" in text or "**distribution / ood:code**" in text
    assert "- [ ] No significant drop in pass rate" in text
    assert "activation-aware" in text
    assert "from the literature (not measured here)" in text


def test_brief_not_enough_evidence(tmp_path: Path) -> None:
    outcomes = [(True, True)] * 8 + [(True, False)] + [(False, True)]
    text = brief.render(analyze(load_session(build_small(tmp_path / "s.json", outcomes))))
    assert "**Not enough evidence yet**" in text
    assert "long-context recall was not compared" in text


def test_brief_safe_when_many_cases_and_long_context_hold(tmp_path: Path) -> None:
    outcomes = [(True, True)] * 180 + [(True, False)] * 3 + [(False, True)] * 3
    s = load_session(build_small(tmp_path / "s.json", outcomes))
    from report_sessions import long_context_exchanges

    for ex in long_context_exchanges():
        ex.results[CAND] = result(CAND, ex.results[REF].text)  # no loss
        s._put_exchange(ex)
    text = brief.render(analyze(s))
    assert "**Safe default here, within what was measured**" in text


# ------------------------------------------------------------------ methods and telemetry


@pytest.mark.parametrize(
    ("quantization", "model", "expected"),
    [
        ("awq_marlin", "Qwen/Qwen2.5-1.5B-Instruct-AWQ", "awq"),
        (None, "Qwen/Qwen2.5-1.5B-Instruct-GPTQ-Int4", "gptq"),
        ("fp8", "meta-llama/Llama-3.1-8B", "fp8"),
        ("Q4_0", "smollm2-135m-q4_0", "q4_0"),
        (None, "model-Q4_K_M.gguf", "k-quant"),
        (None, "Qwen/Qwen2.5-1.5B-Instruct", None),
    ],
)
def test_method_of(quantization: str | None, model: str, expected: str | None) -> None:
    from quantlab.records import Endpoint

    ep = Endpoint(name="x", base_url="http://h", model=model, quantization=quantization)
    assert method_of(ep, "x") == expected


def test_method_descriptions_are_correct() -> None:
    gptq = describe("gptq") or ""
    assert "second-order" in gptq and "Hessian" in gptq and "calibration" in gptq
    assert "gradient" not in gptq.lower()
    awq = describe("awq") or ""
    assert "activation" in awq and "salient" in awq
    q4 = describe("q4_0") or ""
    assert "32 weights" in q4 and "round-to-nearest" in q4


def test_telemetry_nested_points_and_none() -> None:
    assert telemetry([]) is None
    t = telemetry(
        [
            {"t": 0, "gpus": [{"index": 0, "memory_used_bytes": 2 * 2**30, "power_mw": 100_000}]},
            {"t": 2, "gpus": [{"index": 0, "memory_used_bytes": 4 * 2**30, "power_mw": 200_000}]},
        ]
    )
    assert t is not None
    g = t["gpus"]["0"]
    assert g["mem_used_peak_mib"] == 4096 and g["power_mean_w"] == 150.0 and g["span_s"] == 2.0
    assert telemetry([{"t": 1, "cpu_pct": 5}])["gpus"] == {}  # type: ignore[index]
