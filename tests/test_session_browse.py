"""The session browser's core (quantlab.session.browse): listing and searching the session
files of a folder written by a real SessionStore."""

from __future__ import annotations

from pathlib import Path

from report_sessions import CAND, REF, build_small, endpoints, exchange, result

from quantlab.session import SessionStore
from quantlab.session.browse import list_sessions, search_sessions, summarize_session


def _chat_session(path: Path, prompts: list[str], at: float) -> Path:
    store = SessionStore.open(path, endpoints=endpoints(), durability="os")
    try:
        for i, p in enumerate(prompts):
            ex = exchange("chat", f"c{i}", {REF: result(REF, "a"), CAND: result(CAND, "b")})
            ex.prompt, ex.started_at, ex.id = p, at + i, f"chat-{at}-{i}"
            store.append_exchange(ex)
    finally:
        store.close()
    return path


def test_the_folder_is_listed_newest_first_with_lanes_count_and_first_prompt(
    tmp_path: Path,
) -> None:
    old = _chat_session(tmp_path / "a.json", ["Why is the sky blue?", "And at dusk?"], 1000.0)
    new = _chat_session(tmp_path / "b.json", ["Write a haiku about rust"], 2000.0)
    build_small(tmp_path / "c.json", [(True, False)] * 3)  # suite exchanges at T0 (newest)
    (tmp_path / "notes.json").write_text("{not a session", encoding="utf-8")
    (tmp_path / "readme.txt").write_text("not json", encoding="utf-8")
    found, problems = list_sessions(tmp_path)
    assert [s.path.name for s in found] == ["c.json", "b.json", "a.json"]
    a = next(s for s in found if s.path == old)
    assert (a.exchanges, a.first_prompt, set(a.lanes)) == (2, "Why is the sky blue?", {REF, CAND})
    assert found[0].exchanges == 3 and found[0].first_prompt == "prompt of k0"
    assert len(problems) == 1 and "notes.json" in problems[0]
    assert summarize_session(new).started == 2000.0


def test_search_needs_every_word_in_one_prompt_and_ignores_case(tmp_path: Path) -> None:
    _chat_session(tmp_path / "a.json", ["Why is the sky blue?", "And at dusk?"], 1000.0)
    _chat_session(tmp_path / "b.json", ["Write a haiku about rust"], 2000.0)
    found, _ = list_sessions(tmp_path)
    assert [s.path.name for s in search_sessions(found, "DUSK")] == ["a.json"]
    assert [s.path.name for s in search_sessions(found, "haiku rust")] == ["b.json"]
    assert search_sessions(found, "sky dusk") == []  # the words are in two prompts
    assert len(search_sessions(found, "  ")) == 2


def test_a_missing_folder_is_a_message(tmp_path: Path) -> None:
    found, problems = list_sessions(tmp_path / "nope")
    assert found == [] and "no such folder" in problems[0]
