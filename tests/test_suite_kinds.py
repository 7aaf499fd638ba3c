"""Suite kinds as types, and the kind stored in the session rather than guessed."""

from __future__ import annotations

from quantlab import suites
from quantlab.records import Exchange, SamplingParams
from quantlab.reports.analysis import suite_kind
from quantlab.session import Session
from quantlab.suites.kinds import KINDS, kind_of


def _ex(suite: str, **meta: object) -> Exchange:
    return Exchange(
        prompt="p", params=SamplingParams(), source=f"suite:{suite}/c", suite=suite, meta=dict(meta)
    )


def test_every_kind_a_suite_file_may_name_has_a_module() -> None:
    assert set(KINDS) == set(suites.KINDS)
    for name in suites.KINDS:
        assert kind_of(name).name == name


def test_the_stored_kind_wins_over_the_meta_keys() -> None:
    session = Session()
    # A cases suite whose exchanges carry facts would be guessed long_context.
    assert suite_kind(session, _ex("mine", facts=[], suite_kind="cases")) == "cases"
    session.meta["runs"] = [{"run_id": "r", "kinds": {"ramp": "capacity"}}]
    assert suite_kind(session, _ex("ramp")) == "capacity"


def test_old_sessions_without_the_field_are_still_read_by_guessing() -> None:
    session = Session()
    assert suite_kind(session, _ex("x", ttft_mode="cold", lane="a")) == "capacity"
    assert suite_kind(session, _ex("x", length_label="1K")) == "long_context"
    assert suite_kind(session, _ex("concurrency")) == "concurrency"
    assert suite_kind(session, _ex("sanity")) == "cases"
    chat = Exchange(prompt="p", params=SamplingParams(), source="chat")
    assert suite_kind(session, chat) == "chat"
