"""Session files: round trips, reopening, bad files, torn journals, secrets, the follower."""

from __future__ import annotations

import errno
import random
import re
import shutil
import threading
from pathlib import Path

import orjson
import pytest

from quantlab import fsio
from quantlab.records import (
    Annotation,
    Endpoint,
    Exchange,
    Finding,
    LaneError,
    LaneResult,
    SamplingParams,
    Timing,
)
from quantlab.session import (
    SCHEMA,
    Session,
    SessionError,
    SessionFollower,
    SessionStore,
    default_session_path,
    journal_path,
    load_session,
)
from quantlab.session.store import exchange_json

KEY = "sk-test-9f8e7d6c5b4a39281706"


def endpoints() -> list[Endpoint]:
    return [
        Endpoint("bf16", "http://127.0.0.1:8000", model="m", role="reference"),
        Endpoint("q4_0", "http://127.0.0.1:8001", model="m-q4", api_key_env="QL_TEST_KEY"),
    ]


def make_exchange(i: int = 0, lanes: tuple[str, ...] = ("bf16", "q4_0")) -> Exchange:
    ex = Exchange(
        prompt=f"What is {i} + {i}? ünïcode 東京",
        params=SamplingParams(temperature=0.0, max_tokens=64, seed=1, system_prompt="Be brief."),
        source="suite:sanity/add",
        case_id=f"add-{i}",
        suite="sanity",
        meta={"rep": i},
    )
    for lane in lanes:
        ex.messages[lane] = [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": ex.prompt},
        ]
        ex.results[lane] = LaneResult(
            lane=lane,
            model="m",
            text=f"{2 * i}" + " and so on" * 20,
            finish_reason="stop",
            usage={"prompt_tokens": 20, "completion_tokens": 41},
            timing=Timing(ttft_ms=12.5, itl_ms=[1.5, 2.25, 3.0], e2e_ms=99.0, output_tokens=41),
            findings=[Finding("repetition", lane, "warn", 0.5, "'and so on' x20")],
            server_timings={"predicted_ms": 80.0},
        )
    ex.results[lanes[-1]].error = LaneError("http", "boom", 500)
    ex.wall_ms = 120.0
    return ex


def test_exchange_json_is_to_dict() -> None:
    """The store writes exchanges through orjson's dataclass path: it must be the very
    document ``to_dict`` defines, or files would drift from the records' format."""
    ex = make_exchange(3)
    assert orjson.loads(exchange_json(ex)) == ex.to_dict()


def test_round_trip_every_record_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QL_TEST_KEY", KEY)
    path = tmp_path / "deep" / "er" / "s.json"
    store = SessionStore.open(
        path, endpoints=endpoints(), machine={"host": "box", "gpus": []}, meta={"suite": "x"}
    )
    a = make_exchange(1)
    store.append_exchange(a)
    b = make_exchange(2)
    store.save_lane(b, "bf16")  # lane by lane: only bf16 is done
    store.save_lane(b, "q4_0")
    b.wall_ms = 555.0
    store.update_exchange(b)
    store.set_finding_status(a.id, "bf16", "repetition", "confirmed")
    store.set_finding_status(a.id, "q4_0", "repetition", "dismissed")
    ann = Annotation(a.id, "q4_0", ["repetition loop"], severity=2, note="loops")
    store.add_annotation(ann)
    ann.note = "loops, edited"
    store.add_annotation(ann)
    gone = Annotation(b.id, "*", ["other"])
    store.add_annotation(gone)
    store.remove_annotation(gone.id)
    store.add_telemetry([{"t": 1.0, "gpu": 0, "util": 50}, {"t": 2.0, "gpu": 0, "util": 55}])
    store.set_endpoints([Endpoint("awq", "http://127.0.0.1:8002", model="m-awq")])
    store.set_machine({"ram_gb": 24})
    store.update_meta({"concurrency": 8})

    live = load_session(path)  # snapshot + journal while the writer is open
    store.close()
    assert not journal_path(path).exists()  # a closed session is one file
    s = load_session(path)
    for loaded in (live, s):
        assert loaded.notes == []
        assert [e.name for e in loaded.endpoints] == ["bf16", "q4_0", "awq"]
        assert loaded.machine == {"host": "box", "gpus": [], "ram_gb": 24}
        assert loaded.meta == {"suite": "x", "concurrency": 8}
        assert [ex.id for ex in loaded.exchanges] == [a.id, b.id]
        got_a = loaded.exchange(a.id)
        assert got_a is not None
        assert got_a.results["bf16"].findings[0].status == "confirmed"
        assert got_a.results["q4_0"].findings[0].status == "dismissed"
        got_a.results["bf16"].findings[0].status = "open"
        got_a.results["q4_0"].findings[0].status = "open"
        assert got_a == a  # every field, lane results, timing, error
        assert loaded.exchange(b.id) == b
        assert loaded.annotations_for(a.id) == [ann]
        assert loaded.annotations_for(b.id) == []
        assert loaded.telemetry == [
            {"t": 1.0, "gpu": 0, "util": 50},
            {"t": 2.0, "gpu": 0, "util": 55},
        ]
        assert [c["status"] for c in loaded.finding_status] == ["confirmed", "dismissed"]
    assert orjson.loads(path.read_bytes())["schema"] == SCHEMA


def test_save_lane_saves_only_finished_lanes(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = SessionStore.open(path)
    ex = make_exchange(1)
    store.save_lane(ex, "bf16")  # q4_0 is still streaming (its result is half-done)
    s = load_session(path)
    assert list(s.exchanges[0].results) == ["bf16"]
    store.save_lane(ex, "q4_0", ex.results["q4_0"])
    assert list(load_session(path).exchanges[0].results) == ["bf16", "q4_0"]
    with pytest.raises(ValueError, match="no result for lane"):
        store.save_lane(ex, "nope")
    store.close()


def test_memory_is_a_copy_of_what_was_written(tmp_path: Path) -> None:
    store = SessionStore.open(tmp_path / "s.json")
    ex = make_exchange(1)
    store.append_exchange(ex)
    ex.results["bf16"].text = "changed after saving"  # not saved: not in the session
    got = store.session.exchange(ex.id)
    assert got is not None and got.results["bf16"].text != "changed after saving"
    store.close()


def test_finding_status_survives_a_replaced_exchange(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = SessionStore.open(path)
    ex = make_exchange(1)
    store.append_exchange(ex)
    store.set_finding_status(ex.id, "bf16", "repetition", "dismissed")
    store.update_exchange(make_exchange_like(ex))  # detectors re-run: statuses "open"
    got = store.session.exchange(ex.id)
    assert got is not None and got.results["bf16"].findings[0].status == "dismissed"
    store.close()
    got = load_session(path).exchange(ex.id)
    assert got is not None and got.results["bf16"].findings[0].status == "dismissed"


def make_exchange_like(ex: Exchange) -> Exchange:
    fresh = make_exchange(1)
    fresh.id = ex.id
    return fresh


def test_finding_status_rejects_what_is_not_there(tmp_path: Path) -> None:
    store = SessionStore.open(tmp_path / "s.json")
    ex = make_exchange(1)
    store.append_exchange(ex)
    with pytest.raises(ValueError, match="status must be one of"):
        store.set_finding_status(ex.id, "bf16", "repetition", "maybe")
    with pytest.raises(ValueError, match="no exchange"):
        store.set_finding_status("nope", "bf16", "repetition", "confirmed")
    with pytest.raises(ValueError, match="no lane"):
        store.set_finding_status(ex.id, "awq", "repetition", "confirmed")
    with pytest.raises(ValueError, match="no collapse finding"):
        store.set_finding_status(ex.id, "bf16", "collapse", "confirmed")
    store.close()


def test_reopen_and_append(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    with SessionStore.open(path, endpoints=endpoints()[:1], meta={"run": 1}) as store:
        first = [make_exchange(i) for i in range(2)]
        for ex in first:
            store.append_exchange(ex)
        created = store.session.created_at
        sid = store.session.id
    with SessionStore.open(path, endpoints=endpoints(), meta={"run": 2}) as store:
        assert [ex.id for ex in store.session.exchanges] == [ex.id for ex in first]
        later = make_exchange(9)
        store.append_exchange(later)
    s = load_session(path)
    assert [ex.id for ex in s.exchanges] == [first[0].id, first[1].id, later.id]
    assert [e.name for e in s.endpoints] == ["bf16", "q4_0"]
    assert s.meta == {"run": 2}
    assert (s.created_at, s.id) == (created, sid)


def crash_image(path: Path, dest: Path) -> Path:
    """The files a kill -9 would leave now: snapshot and journal as they are on disk."""
    dest.mkdir()
    shutil.copy(path, dest / path.name)
    if journal_path(path).exists():
        shutil.copy(journal_path(path), dest / journal_path(path).name)
    return dest / path.name


def test_reopen_after_crash_folds_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "live" / "s.json"
    store = SessionStore.open(path)
    ids = []
    for i in range(3):
        ex = make_exchange(i)
        store.append_exchange(ex)
        ids.append(ex.id)
    crashed = crash_image(path, tmp_path / "crashed")
    store.close()
    assert [ex.id for ex in load_session(crashed).exchanges] == ids
    with SessionStore.open(crashed) as again:
        assert [ex.id for ex in again.session.exchanges] == ids
        # folded at once: the snapshot alone already holds everything
        snap = orjson.loads(crashed.read_bytes())
        assert [e["id"] for e in snap["exchanges"]] == ids
        again.append_exchange(make_exchange(7))
    assert len(load_session(crashed).exchanges) == 4


def test_compaction_bounds_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = SessionStore.open(path, compact_min_bytes=8 * 1024)
    ids = []
    for i in range(60):
        ex = make_exchange(i)
        store.append_exchange(ex)
        ids.append(ex.id)
        assert journal_path(path).stat().st_size < max(8 * 1024, path.stat().st_size // 2) + 4096
    assert store.compactions > 3
    assert [ex.id for ex in load_session(path).exchanges] == ids
    store.close()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "the file is empty, not a quantlab session"),
        (b"   \n", "the file is empty, not a quantlab session"),
        (b"hello, world", "not JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"[1, 2, 3]", "not a quantlab session (the JSON is a list"),
        (b'{"exchanges": []}', 'not a quantlab session (no "schema" field)'),
        (b'{"schema": "other.tool/1"}', "its schema is 'other.tool/1'"),
        (
            b'{"schema": "quantlab.session/9"}',
            "schema quantlab.session/9 is newer than this quantlab",
        ),
        (b'{"schema": "quantlab.session/x"}', "unreadable schema version"),
        (b'{"schema": "quantlab.session/1", "exchanges": 5}', '"exchanges" is a number'),
        (
            b'{"schema": "quantlab.session/1", "exchanges": [{"prompt": "x"}]}',
            "exchange #1 is malformed: missing field 'id'",
        ),
        (b'{"schema": "quantlab.session/1", "x": 1,, }', "corrupt JSON at byte 40"),
    ],
)
def test_bad_files_give_one_clear_sentence(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(SessionError) as err:
        load_session(path)
    msg = str(err.value)
    assert msg.startswith(str(path) + ": ")
    assert expected in msg
    assert "\n" not in msg


def test_truncated_session_says_so(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    with SessionStore.open(path) as store:
        for i in range(3):
            store.append_exchange(make_exchange(i))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SessionError, match=r"ends early at byte \d+: the file was cut short"):
        load_session(path)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(SessionError, match="no such session file"):
        load_session(tmp_path / "nope.json")
    with pytest.raises(SessionError, match="is a folder"):
        load_session(tmp_path)


def test_open_never_overwrites_what_is_not_a_session(tmp_path: Path) -> None:
    path = tmp_path / "notes.json"
    path.write_bytes(b'{"my": "notes"}')
    with pytest.raises(SessionError, match="not a quantlab session"):
        SessionStore.open(path)
    assert path.read_bytes() == b'{"my": "notes"}'
    # and the failed open left no lock behind
    SessionStore.open(tmp_path / "fresh.json").close()
    assert not (tmp_path / "notes.json.lock").exists()


def test_torn_journal_tail_loses_only_that_record(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = SessionStore.open(path)
    ids = []
    for i in range(3):
        ex = make_exchange(i)
        store.append_exchange(ex)
        ids.append(ex.id)
    crashed = crash_image(path, tmp_path / "crashed")
    store.close()
    line = b'{"seq":4,"op":"exchange","exchange":' + exchange_json(make_exchange(4)) + b"}\n"
    with journal_path(crashed).open("ab") as f:
        f.write(line[: len(line) // 2])  # the write in flight when the process died
    s = load_session(crashed)
    assert [ex.id for ex in s.exchanges] == ids
    assert len(s.notes) == 1 and "ignored an incomplete last record" in s.notes[0]
    with SessionStore.open(crashed) as again:  # writing on goes on cleanly
        again.append_exchange(make_exchange(5))
    s = load_session(crashed)
    assert len(s.exchanges) == 4 and s.notes == []


def test_corrupt_journal_record_is_skipped_and_kept_aside(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = SessionStore.open(path)
    exs = [make_exchange(i) for i in range(3)]
    for ex in exs:
        store.append_exchange(ex)
    crashed = crash_image(path, tmp_path / "crashed")
    store.close()
    jp = journal_path(crashed)
    lines = jp.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b',"op"', b',,"op"', 1)  # the second exchange record
    jp.write_bytes(b"\n".join(lines))
    s = load_session(crashed)
    assert [ex.id for ex in s.exchanges] == [exs[0].id, exs[2].id]
    assert any("skipped an unreadable record at byte" in n for n in s.notes)
    SessionStore.open(crashed).close()
    assert list(crashed.parent.glob("s.json.journal.damaged-*"))


def test_journal_of_another_session_is_ignored(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "s.json", tmp_path / "b" / "s.json"
    sa, sb = SessionStore.open(a), SessionStore.open(b)
    sa.append_exchange(make_exchange(1))
    sb.append_exchange(make_exchange(2))
    shutil.copy(journal_path(b), journal_path(a))  # a user's copy gone wrong
    s = load_session(a)
    assert s.exchanges == [] and "belongs to another session" in s.notes[0]
    sa.close()
    sb.close()


def test_load_accepts_the_journal_path(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    with SessionStore.open(path) as store:
        store.append_exchange(make_exchange(1))
        assert len(load_session(journal_path(path)).exchanges) == 1


def test_no_secret_in_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QL_TEST_KEY", KEY)
    path = tmp_path / "s.json"
    eps = endpoints()
    eps[1].base_url = f"http://user:{KEY}@127.0.0.1:8001"
    store = SessionStore.open(
        path,
        endpoints=eps,
        meta={"headers": {"Authorization": f"Bearer {KEY}"}, "api_key": "other-secret-123"},
    )
    ex = make_exchange(1)
    ex.prompt = f"my key is {KEY}, keep it"  # pasted by mistake
    ex.results["q4_0"].error = LaneError("http", f"401: bad key {KEY}", 401)
    store.append_exchange(ex)
    store.save_lane(make_exchange(2), "bf16")
    store.add_annotation(Annotation(ex.id, "*", ["other"], note=f"{KEY}!"))
    store.update_meta({"X-Api-Key": KEY, "nested": [{"password": "hunter22"}], "n": KEY})
    written = path.read_bytes() + journal_path(path).read_bytes()
    store.close()
    written += path.read_bytes()
    for secret in (KEY, "other-secret-123", "hunter22"):
        assert secret.encode() not in written
    s = load_session(path)
    assert s.exchanges[0].prompt == "my key is [redacted], keep it"
    assert s.endpoints[1].base_url == "http://127.0.0.1:8001"
    assert s.endpoints[1].api_key_env == "QL_TEST_KEY"  # the variable's name is kept
    assert s.meta == {"headers": {}, "nested": [{}], "n": "[redacted]"}
    assert store.session.exchanges[0].prompt == "my key is [redacted], keep it"


def test_second_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = SessionStore.open(path)
    with pytest.raises(SessionError, match="another quantlab process"):
        SessionStore.open(path)
    store.close()
    SessionStore.open(path).close()  # free again after close


def test_closed_store_refuses_writes(tmp_path: Path) -> None:
    store = SessionStore.open(tmp_path / "s.json")
    store.close()
    store.close()  # idempotent
    with pytest.raises(SessionError, match="closed"):
        store.append_exchange(make_exchange(1))


def test_failed_write_leaves_no_half_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.json"
    store = SessionStore.open(path)
    kept = make_exchange(1)
    store.append_exchange(kept)
    real = fsio.write_all

    def half_then_fail(fd: int, data: bytes) -> None:
        real(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsio, "write_all", half_then_fail)
    lost = make_exchange(2)
    with pytest.raises(
        SessionError, match=r"disk full: this exchange was not saved; 1 exchange saved"
    ):
        store.append_exchange(lost)
    monkeypatch.setattr(fsio, "write_all", real)
    assert store.session.exchange(lost.id) is None
    after = make_exchange(3)
    store.append_exchange(after)
    s = load_session(path)
    assert [ex.id for ex in s.exchanges] == [kept.id, after.id] and s.notes == []
    store.close()


def test_threads_can_share_a_store(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = SessionStore.open(path, durability="os", compact_min_bytes=16 * 1024)
    ids: list[str] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        for i in range(15):
            ex = make_exchange(k * 100 + i)
            store.append_exchange(ex)
            store.add_telemetry([{"t": float(i), "k": k}])
            with lock:
                ids.append(ex.id)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = load_session(path)
    assert sorted(ex.id for ex in s.exchanges) == sorted(ids)
    assert len(s.telemetry) == 60
    store.close()


def test_default_session_path(tmp_path: Path) -> None:
    p = default_session_path(tmp_path)
    assert p.parent == tmp_path
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d_[0-9a-f]{6}\.json", p.name)
    assert default_session_path().parent == Path("sessions")
    assert default_session_path(tmp_path) != p


def test_follower_sees_every_change_once(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = SessionStore.open(path, endpoints=endpoints(), compact_min_bytes=4 * 1024)
    first = make_exchange(0)
    store.append_exchange(first)
    follower = SessionFollower(path)
    u = follower.poll()
    assert u.reset and [ex.id for ex in u.exchanges] == [first.id]
    assert [e.name for e in u.endpoints or []] == ["bf16", "q4_0"]
    assert not follower.poll()  # nothing new: an empty update

    seen: list[str] = []
    compactions = store.compactions
    for i in range(1, 25):  # several compactions happen under the follower
        ex = make_exchange(i)
        store.append_exchange(ex)
        if i % 3 == 0:
            u = follower.poll()
            assert not u.reset
            seen += [e.id for e in u.exchanges]
    seen += [e.id for e in follower.poll().exchanges]
    assert store.compactions > compactions + 2
    assert seen == [ex.id for ex in store.session.exchanges[1:]]  # each once, in order

    ex = store.session.exchanges[0]
    store.set_finding_status(ex.id, "bf16", "repetition", "confirmed")
    ann = Annotation(ex.id, "bf16", ["repetition loop"])
    store.add_annotation(ann)
    store.add_telemetry([{"t": 1.0}])
    store.update_meta({"k": 1})
    u = follower.poll()
    assert [e.id for e in u.exchanges] == [ex.id]
    assert u.exchanges[0].results["bf16"].findings[0].status == "confirmed"
    assert u.annotations == [ann] and u.telemetry == [{"t": 1.0}] and u.meta == {"k": 1}
    store.remove_annotation(ann.id)
    store.compact()
    u = follower.poll()
    assert u.removed_annotations == [ann.id] and u.exchanges == []
    late = make_exchange(99)
    store.append_exchange(late)
    store.close()  # final snapshot, journal removed
    u = follower.poll()
    assert [e.id for e in u.exchanges] == [late.id]
    assert not follower.poll()
    assert follower.session is not None and len(follower.session.exchanges) == 26
    follower.close()


def test_follower_waits_for_a_line_being_written(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = SessionStore.open(path)
    follower = SessionFollower(path)
    follower.poll()
    line = b'{"seq":1,"op":"telemetry","points":[{"t":5}]}\n'
    with journal_path(path).open("ab") as f:  # as if the writer were mid-write
        f.write(line[:20])
        f.flush()
        assert not follower.poll()
        f.write(line[20:])
    assert follower.poll().telemetry == [{"t": 5}]
    follower.close()
    store.close()


def test_follower_on_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SessionError, match="no such session file"):
        SessionFollower(tmp_path / "nope.json").poll()


def test_any_damage_is_a_session_error_or_a_recovery(tmp_path: Path) -> None:
    """Random byte damage to the snapshot or the journal: loading either recovers or says
    what is wrong with a SessionError, never another exception."""
    path = tmp_path / "live" / "s.json"
    store = SessionStore.open(path, endpoints=endpoints(), meta={"k": [1, 2]})
    for i in range(3):
        store.append_exchange(make_exchange(i))
    store.compact()
    store.add_annotation(Annotation(store.session.exchanges[0].id, "*", ["other"]))
    store.append_exchange(make_exchange(5))
    crashed = crash_image(path, tmp_path / "crashed")
    store.close()
    originals = {p: p.read_bytes() for p in (crashed, journal_path(crashed))}
    rng = random.Random(5)
    outcomes = {"error": 0, "loaded": 0}
    for _ in range(200):
        target = rng.choice(list(originals))
        data = bytearray(originals[target])
        how = rng.randrange(4)
        at = rng.randrange(len(data))
        if how == 0:
            del data[at:]
        elif how == 1:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif how == 2:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            del data[at : at + rng.randint(1, 200)]
        target.write_bytes(bytes(data))
        try:
            load_session(crashed)
            outcomes["loaded"] += 1
        except SessionError as exc:
            assert str(exc).startswith(str(crashed)), exc
            outcomes["error"] += 1
        target.write_bytes(originals[target])
    assert outcomes["error"] > 25 and outcomes["loaded"] > 25, outcomes


def test_undecodable_text_is_saved_and_unwritable_values_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = SessionStore.open(path)
    ex = make_exchange(1)
    ex.results["bf16"].text = "ok \udc80 then"  # a lone surrogate from undecodable bytes
    store.append_exchange(ex)
    with pytest.raises(SessionError, match="cannot write this into a session file"):
        store.update_meta({"handle": object()})
    store.close()
    s = load_session(path)
    got = s.exchange(ex.id)
    assert got is not None and got.results["bf16"].text == "ok \ufffd then"
    assert s.meta == {} and s.notes == []


@pytest.mark.parametrize("durability", ["fsync", "group", "os"])
def test_every_durability_writes_the_same_session(tmp_path: Path, durability: str) -> None:
    path = tmp_path / "s.json"
    store = SessionStore.open(path, durability=durability)  # type: ignore[arg-type]
    exs = [make_exchange(i) for i in range(5)]
    for ex in exs:
        store.append_exchange(ex)
    store.sync()  # returns once everything written is on disk
    if durability == "group":
        assert store._syncs_done == store._syncs_requested == 5
    assert [ex.id for ex in load_session(path).exchanges] == [ex.id for ex in exs]
    store.close()
    if store._syncer is not None:
        store._syncer.join(5)
        assert not store._syncer.is_alive()  # the background syncer ends with the store
    assert [ex.id for ex in load_session(path).exchanges] == [ex.id for ex in exs]
    with pytest.raises(ValueError, match="durability must be one of"):
        SessionStore.open(tmp_path / "t.json", durability="sometimes")  # type: ignore[arg-type]


def test_session_lookup_copes_with_outside_edits() -> None:
    s = Session()
    a, b = make_exchange(1), make_exchange(2)
    s._put_exchange(a)
    assert s.exchange(a.id) is a and s.exchange("nope") is None
    s.exchanges.append(b)  # a caller edits the list directly
    assert s.exchange(b.id) is b
    s.exchanges.reverse()
    assert s.exchange(a.id) is a and s.exchange(b.id) is b
    s.exchanges[0] = c = make_exchange(3)  # replaced in place: same length
    assert s.exchange(c.id) is c and s.exchange(b.id) is None
