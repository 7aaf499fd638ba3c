"""Session storage faults: private files, a full disk, files that are not ours to overwrite.

A full disk is made two ways: through the one write seam (:func:`quantlab.fsio.write_all`,
patched to refuse with ENOSPC after a byte budget, so it runs anywhere) and, where this
process may mount, on a real 64 KiB tmpfs (skipped when mounting is not permitted).
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from session_writer_proc import exchange
from standin import Reply, StandIn

from quantlab import fsio
from quantlab.cli import main
from quantlab.session import SessionError, SessionStore, SessionWriteError, load_session

ROOT = Path(__file__).resolve().parent.parent


def mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which a plain open() would create 0644 files."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


class DiskFull:
    """``fsio.write_all`` that writes ``budget`` bytes in all, then fails like a full disk
    (the write that crosses the budget lands partly, as a real one does)."""

    def __init__(self, budget: int) -> None:
        self.left = budget
        self.real = fsio.write_all

    def __call__(self, fd: int, data: bytes) -> None:
        if len(data) > self.left:
            self.real(fd, bytes(data[: self.left]))
            self.left = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.left -= len(data)
        self.real(fd, data)


def no_temps(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if fsio.TEMP_MARK in p.name]


# ------------------------------------------------------------------ permissions


def test_session_files_and_new_folders_are_private(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "a" / "b" / "s.json"
    os.chmod(tmp_path, 0o755)
    store = SessionStore.open(path)
    store.append_exchange(exchange(random.Random(1), "p-0"))
    assert mode(tmp_path / "a") == 0o700 and mode(tmp_path / "a" / "b") == 0o700
    assert mode(tmp_path) == 0o755  # an existing folder is left as it was
    for p in (path, store.journal_path, path.with_name("s.json.lock")):
        assert mode(p) == 0o600, (p, oct(mode(p)))
    store.compact()
    assert mode(path) == 0o600 and mode(store.journal_path) == 0o600
    store.close()
    assert mode(path) == 0o600


def test_an_existing_session_is_never_loosened(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "s.json"
    SessionStore.open(path).close()
    os.chmod(path, 0o644)  # e.g. written by an older quantlab
    with SessionStore.open(path) as store:
        store.append_exchange(exchange(random.Random(2), "p-1"))
    assert mode(path) == 0o600
    os.chmod(path, 0o400)  # a user made it read-only to themselves: rewriting keeps it tight
    with SessionStore.open(path):
        pass
    assert mode(path) & 0o077 == 0


def test_report_output_is_private(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "s.json"
    with SessionStore.open(path) as store:
        store.append_exchange(exchange(random.Random(3), "p-2"))
    out = tmp_path / "report.md"
    assert main(["report", str(path), "-o", str(out)]) == 0
    assert mode(out) == 0o600 and out.read_text().strip()


# ------------------------------------------------------------------ a full disk


@pytest.mark.parametrize("seed", range(6))
def test_a_full_disk_is_one_typed_error_and_damages_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    path = tmp_path / "s.json"
    store = SessionStore.open(path, compact_min_bytes=rng.choice([16 << 10, 1 << 20]))
    monkeypatch.setattr(fsio, "write_all", DiskFull(rng.randrange(5_000, 150_000)))
    saved: list[str] = []
    with pytest.raises(SessionWriteError) as err:
        for i in range(1000):
            ex = exchange(rng, f"d-{i}")
            if i % 2:
                store.append_exchange(ex)
            else:
                store.save_lane(ex, "bf16")
                store.update_exchange(ex)
            saved.append(ex.id)
    e = err.value
    assert e.errno == errno.ENOSPC and e.disk_full and e.path == path
    assert "disk full" in str(e) and str(path) in str(e)
    # A save_lane that landed before its update_exchange failed is a saved exchange too.
    assert e.saved in (len(saved), len(saved) + 1) and e.saved == store.saved
    with pytest.raises(SessionWriteError, match="disk full"):
        store.close()  # the final snapshot cannot be written either: still an error, typed
    assert store.closed
    monkeypatch.undo()
    s = load_session(path)  # what was saved still loads, every exchange of it
    assert [ex.id for ex in s.exchanges][: len(saved)] == saved
    assert len(s.exchanges) == e.saved
    assert [n for n in s.notes if "incomplete last record" not in n] == []
    assert no_temps(tmp_path)
    with SessionStore.open(path) as store:  # space again: the same file takes more
        store.append_exchange(exchange(rng, "after"))
    assert [ex.id for ex in load_session(path).exchanges][-1] == "after"
    assert not path.with_name("s.json.journal").exists()


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB file system, as root on Linux; skipped where mount is not permitted."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    try:
        res = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=20)


def test_a_real_full_file_system(tiny_fs: Path) -> None:
    path = tiny_fs / "s.json"
    rng = random.Random(7)
    store = SessionStore.open(path, compact_min_bytes=8 << 10)
    saved: list[str] = []
    with pytest.raises(SessionWriteError) as err:
        for i in range(100):
            ex = exchange(rng, f"t-{i}")
            store.append_exchange(ex)
            saved.append(ex.id)
    assert err.value.disk_full and err.value.saved == len(saved) > 0
    with contextlib.suppress(SessionWriteError):
        store.close()
    s = load_session(path)
    assert [ex.id for ex in s.exchanges] == saved
    assert no_temps(tiny_fs)


@pytest.fixture
def server() -> Iterator[StandIn]:
    """Answers of ~12 KB per lane, so a few exchanges fill a small disk."""
    with StandIn(Reply(tokens=["word " * 80], n_tokens=30)) as s:
        yield s


def _lanes(s: StandIn) -> list[str]:
    return ["--endpoint", f"a={s.url}", "--endpoint", f"b={s.url}"]


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("QUANTLAB_SUITES", raising=False)
    monkeypatch.chdir(tmp_path)


def test_run_on_a_full_disk_says_so_and_exits_1(
    server: StandIn,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    isolated: None,
) -> None:
    path = tmp_path / "run.json"
    monkeypatch.setattr(fsio, "write_all", DiskFull(60_000))
    rc = main(["run", "sanity", *_lanes(server), "--session", str(path)])
    err = capsys.readouterr().err
    monkeypatch.undo()
    n = len(load_session(path).exchanges)
    assert rc == 1, err
    assert 0 < n < 8  # some saved, not all: the run stopped at the full disk
    what = "exchange" if n == 1 else "exchanges"
    assert f"disk full: {n} {what} saved in {path}; the rest was not run/saved" in err


def test_run_on_a_real_full_disk_has_no_traceback(
    server: StandIn, tiny_fs: Path, tmp_path: Path
) -> None:
    path = tiny_fs / "run.json"
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "cfg"), "PYTHONPATH": str(ROOT)}
    env.pop("QUANTLAB_SUITES", None)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "quantlab",
            "run",
            "sanity",
            *_lanes(server),
            "--session",
            str(path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    n = len(load_session(path).exchanges)
    assert n > 0
    assert f"disk full: {n} exchange" in res.stderr and "the rest was not run/saved" in res.stderr


def test_ask_exits_1_when_its_save_failed(
    server: StandIn,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    isolated: None,
) -> None:
    path = tmp_path / "asks.json"
    assert main(["ask", "first", *_lanes(server), "--session", str(path)]) == 0
    size = path.stat().st_size
    for budget in (0, size + 500):  # the open fails; the open works, the exchange does not
        monkeypatch.setattr(fsio, "write_all", DiskFull(budget))
        rc = main(["ask", "again", *_lanes(server), "--session", str(path)])
        out = capsys.readouterr()
        monkeypatch.undo()
        assert rc == 1
        assert "could not save" in out.err and "disk full" in out.err
        assert "word" in out.out  # the answers are shown all the same
        assert [ex.prompt for ex in load_session(path).exchanges] == ["first"]


# ------------------------------------------------------------------ files not ours


def _bad_files(tmp_path: Path) -> list[tuple[Path, str]]:
    good = tmp_path / "good.json"
    with SessionStore.open(good) as store:
        for i in range(3):
            store.append_exchange(exchange(random.Random(i), f"g-{i}"))
    data = good.read_bytes()
    files = {
        "corrupt.json": (data[:300] + b"\x00garbage" + data[310:], "corrupt JSON"),
        "truncated.json": (data[: len(data) // 2], "the file was cut short"),
        "newer.json": (
            data.replace(b'"quantlab.session/1"', b'"quantlab.session/2"', 1),
            "is newer than this quantlab",
        ),
        "other.json": (b'{"my": "notes"}', "not a quantlab session"),
    }
    out = []
    for name, (content, expected) in files.items():
        p = tmp_path / name
        p.write_bytes(content)
        out.append((p, expected))
    return out


def test_bad_session_files_are_refused_and_never_overwritten(tmp_path: Path) -> None:
    for path, expected in _bad_files(tmp_path):
        before = path.read_bytes()
        for attempt in (load_session, SessionStore.open):
            with pytest.raises(SessionError) as err:
                attempt(path)
            assert expected in str(err.value) and str(path) in str(err.value)
        assert path.read_bytes() == before
        for leftover in (".journal", ".lock"):
            assert not path.with_name(path.name + leftover).exists()
    assert no_temps(tmp_path)


def test_commands_refuse_bad_session_files_and_leave_them(
    server: StandIn,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    isolated: None,
) -> None:
    for path, expected in _bad_files(tmp_path):
        before = path.read_bytes()
        assert main(["run", "sanity", "--quick", *_lanes(server), "--session", str(path)]) == 2
        assert expected in capsys.readouterr().err
        assert main(["ask", "hi", *_lanes(server), "--session", str(path)]) == 1
        assert expected in capsys.readouterr().err
        assert main(["report", str(path)]) == 2
        assert expected in capsys.readouterr().err
        assert path.read_bytes() == before


async def test_the_tui_chat_on_a_full_disk_says_so_and_keeps_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 9.3 in the TUI: the save error is shown, the app goes on answering, and what
    was saved before the disk filled still loads."""
    from quantlab.records import Endpoint
    from tui.app import QuantlabApp

    path = tmp_path / "s.json"
    with StandIn(Reply(tokens=["ok"])) as s:
        store = SessionStore.open(path)
        app = QuantlabApp(endpoints=[Endpoint("a", s.url, role="reference")], store=store)
        async with app.run_test(size=(120, 30)) as pilot:
            chat = app.chat
            assert chat is not None

            async def ask(prompt: str) -> None:
                before = len(chat.exchanges)
                chat.send(prompt)
                for _ in range(200):
                    await pilot.pause(0.05)
                    if len(chat.exchanges) > before and not chat.busy:
                        break
                await pilot.pause(0.2)

            for _ in range(100):
                await pilot.pause(0.05)
                if all(p.header.status != "connecting" for p in chat.panes):
                    break
            await ask("first")
            monkeypatch.setattr(fsio, "write_all", DiskFull(0))
            await ask("second")
            assert chat.save_errors and "disk full" in chat.save_errors[0]
            notes = [n.message for n in app._notifications]
            assert any("disk full" in str(m) for m in notes)
            await ask("third")  # still answering
            assert app.is_running and len(chat.exchanges) == 3
            assert chat.exchanges[-1].results["a"].text == "ok"
        monkeypatch.undo()
        with contextlib.suppress(SessionError):
            store.close()
    assert [ex.prompt for ex in load_session(path).exchanges] == ["first"]
