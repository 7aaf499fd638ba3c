"""The detectors on answers the real local pair gives right now (not the recorded file):
the Q4_0 lane's loop and wrong arithmetic are caught, the BF16 answer to the same prompt
is not flagged as a loop. Runs against the session-scoped ``local_pair`` fixture."""

from __future__ import annotations

import httpx
import pytest

from quantlab.detectors import detect
from quantlab.records import Case, Endpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pair(request: pytest.FixtureRequest) -> list[Endpoint]:
    try:
        return request.getfixturevalue("local_pair")
    except pytest.FixtureLookupError:
        pytest.skip("the local_pair fixture (tests/conftest.py) is not available")


def ask(endpoint: Endpoint, prompt: str, max_tokens: int) -> tuple[str, str | None]:
    body = {
        "model": endpoint.model or "local",
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "top_p": 1,
        "seed": 0,
        "max_tokens": max_tokens,
    }
    reply = httpx.post(f"{endpoint.base_url}/v1/chat/completions", json=body, timeout=300)
    reply.raise_for_status()
    choice = reply.json()["choices"][0]
    return choice["message"]["content"] or "", choice.get("finish_reason")


def both(pair: list[Endpoint], case: Case, max_tokens: int) -> dict[str, list]:
    bf16, q4 = pair[0], pair[1]
    ref_text, ref_finish = ask(bf16, case.prompt, max_tokens)
    q4_text, q4_finish = ask(q4, case.prompt, max_tokens)
    return {
        "bf16": detect(ref_text, case=case, finish_reason=ref_finish, lane="bf16"),
        "q4_0": detect(
            q4_text, case=case, reference=ref_text, finish_reason=q4_finish, lane="q4_0"
        ),
    }


def test_live_q4_loop_is_flagged_and_bf16_is_not(pair: list[Endpoint]) -> None:
    case = Case(id="tiger", messages=[{"role": "user", "content": "Describe a tiger in detail."}])
    found = both(pair, case, max_tokens=200)
    q4_rep = [f for f in found["q4_0"] if f.detector == "repetition"]
    assert q4_rep and q4_rep[0].severity == "fail"
    assert "majestic" in q4_rep[0].evidence
    assert not [f for f in found["bf16"] if f.detector in ("repetition", "collapse")]
    assert [f.severity for f in found["q4_0"] if f.detector == "divergence"] == ["info"]


def test_live_wrong_arithmetic_is_flagged(pair: list[Endpoint]) -> None:
    case = Case(
        id="sub", messages=[{"role": "user", "content": "What is 100 minus 37?"}], expect="63"
    )
    found = both(pair, case, max_tokens=64)
    wrong = [f for f in found["q4_0"] if f.detector == "expected_answer"]
    assert wrong and wrong[0].severity == "fail"
    assert "expected 63" in wrong[0].evidence
