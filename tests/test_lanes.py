"""The lane rules written once in quantlab.lanes (and the ETA in progress_line)."""

from __future__ import annotations

from quantlab.lanes import lane_row, reference_lane
from quantlab.progress_line import eta_seconds
from quantlab.records import Endpoint, Finding, LaneError, LaneResult


def _ep(name: str, role: str = "candidate") -> Endpoint:
    return Endpoint(name=name, base_url=f"http://{name}", role=role)


def test_reference_is_the_last_runs_then_the_role_then_the_first_lane() -> None:
    eps = [_ep("a"), _ep("b", "reference")]
    assert reference_lane(eps) == "b"
    assert reference_lane([_ep("a"), _ep("b")]) == "a"
    assert reference_lane([]) is None
    runs = [{"reference": "a"}, {"reference": "gone"}]
    assert reference_lane(eps, ["a", "b"], runs) == "a"  # "gone" is not a lane: skipped
    assert reference_lane(eps, ["c", "a"]) == "c"  # b is not among the session's lanes


def test_a_dismissed_finding_is_neither_a_flag_nor_a_warning() -> None:
    r = LaneResult(lane="q", text="x")
    r.findings = [
        Finding("repetition", "q", "fail", 1.0, "loop"),
        Finding("collapse", "q", "fail", 1.0, "gone", status="dismissed"),
        Finding("truncation", "q", "warn", 0.5, "cut"),
        Finding("language_switch", "q", "warn", 0.5, "fr", status="dismissed"),
    ]
    row = lane_row(r)
    assert (row.status, row.flags, row.warnings) == ("done", ["repetition"], ["truncation"])
    failed = LaneResult(lane="q", error=LaneError("http", "500"))
    assert lane_row(failed).status == "failed" and lane_row(failed).error


def test_eta_from_the_pace_so_far() -> None:
    assert eta_seconds(30.0, 3, 6) == 60.0
    assert eta_seconds(30.0, 0, 6) is None
    assert eta_seconds(30.0, 3, 0) == 0.0
