"""kill -9 a real writer process at random moments: the session must always load and hold
everything whose save had returned; a follower in another process sees it all, live."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from quantlab.session import SessionFollower, load_session

WRITER = Path(__file__).with_name("session_writer_proc.py")
ROOT = Path(__file__).resolve().parent.parent


class Writer:
    """The writer subprocess, its printed lines collected by a thread."""

    def __init__(self, path: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(path), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode().strip())

    def wait_for(self, line: str, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while line not in self.lines:
            if self.proc.poll() is not None and line not in self.lines:
                self._thread.join(5)
                if line in self.lines:
                    return
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"writer exited before {line!r}: {err}")
            assert time.monotonic() < end, f"no {line!r} from the writer"
            time.sleep(0.01)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._thread.join(10)
        if self.proc.stderr:
            self.proc.stderr.close()

    def saved(self, kind: str) -> list[str]:
        return [ln.split(" ", 1)[1] for ln in self.lines if ln.startswith(kind + " ")]


def _in_flight_ok(extra: set[str], tag: str, printed: list[str]) -> bool:
    """An item in the file that was never reported must be the one save in flight."""
    nxt = f"{tag}-{len(printed)}"
    return extra <= {nxt}


def test_kill_9_at_random_moments_loses_nothing_that_returned(tmp_path: Path) -> None:
    rng = random.Random(20261125)
    path = tmp_path / "sessions" / "crash.json"
    must_have: dict[str, set[str]] = {"ex": set(), "ann": set(), "fs": set(), "tel": set()}
    rounds = 7
    for r in range(rounds):
        tag = f"r{r}"
        w = Writer(
            path,
            "--tag",
            tag,
            "--durability",
            ("fsync", "group", "os")[r % 3],
            "--compact-bytes",
            str(rng.choice([16 * 1024, 64 * 1024])),  # compactions often: kills land in them
        )
        w.wait_for("ready")
        time.sleep(rng.uniform(0.05, 0.7))
        w.kill()
        printed = w.saved("ex")
        assert printed, "the writer saved nothing before the kill: the test proves nothing"
        for kind in must_have:
            must_have[kind].update(w.saved(kind))

        s = load_session(path)  # must load, every time
        ids = {ex.id for ex in s.exchanges}
        assert must_have["ex"] <= ids, f"round {r}: lost {must_have['ex'] - ids}"
        extra = {i for i in ids - must_have["ex"] if i.startswith(tag + "-")}
        assert _in_flight_ok(extra, tag, printed), f"round {r}: unexpected {extra}"
        for ex_id in must_have["ex"]:  # whole exchanges: every lane that was saved
            ex = s.exchange(ex_id)
            assert ex is not None and set(ex.results) == {"bf16", "q4_0"}
        assert must_have["ann"] <= {a.id for a in s.annotations}
        for ex_id in must_have["fs"]:
            ex = s.exchange(ex_id)
            assert ex is not None and ex.results["q4_0"].findings[0].status == "confirmed"
        assert must_have["tel"] <= {p["t"] for p in s.telemetry}
        notes = [n for n in s.notes if "incomplete last record" not in n]
        assert notes == [], notes  # at most a torn last line, nothing else

    # A kill while the writer is starting (importing, or folding the journal on reopen).
    for delay in (0.0, 0.15, 0.3):
        w = Writer(path, "--tag", f"start{delay}")
        time.sleep(delay)
        w.kill()
        s = load_session(path)
        assert must_have["ex"] <= {ex.id for ex in s.exchanges}

    # A clean run at the end folds everything into the one file and removes the journal.
    w = Writer(path, "--tag", "last", "--count", "3")
    assert w.proc.wait(60) == 0
    w.kill()  # (already exited) collects its output
    assert any(ln.startswith("closed") for ln in w.lines)
    s = load_session(path)
    assert must_have["ex"] <= {ex.id for ex in s.exchanges}
    assert not path.with_name("crash.json.journal").exists()
    assert s.notes == []


def test_follower_in_another_process_sees_everything_live(tmp_path: Path) -> None:
    path = tmp_path / "live.json"
    w = Writer(
        path,
        "--tag",
        "f",
        "--mode",
        "append",
        "--count",
        "150",
        "--delay",
        "0.004",
        "--compact-bytes",
        str(32 * 1024),
    )
    w.wait_for("ready")
    follower = SessionFollower(path)
    seen: list[str] = []
    resets = 0
    polls_with_news = 0
    while w.proc.poll() is None:
        u = follower.poll()
        resets += u.reset
        polls_with_news += bool(u.exchanges)
        seen += [ex.id for ex in u.exchanges]
        time.sleep(0.02)
    w.kill()  # already gone: collects its output
    u = follower.poll()
    seen += [ex.id for ex in u.exchanges]
    done = [ln for ln in w.lines if ln.startswith("closed")]
    assert done, w.lines[-3:]
    compactions = int(done[0].split("=")[1])
    assert compactions >= 5  # the follower really crossed compactions
    assert resets == 1  # only the first poll; compactions are diffs, not resets
    assert polls_with_news > 5  # it followed live, not just at the end
    assert seen == w.saved("ex")  # every exchange, once each, in order
    follower.close()


def test_kill_9_of_quantlab_run_keeps_every_saved_exchange(tmp_path: Path) -> None:
    """The real ``quantlab run`` process, killed at random moments of a run with 4 in
    flight: the session always loads, and every exchange a reader had seen in the file
    before the kill is still there, whole."""
    from standin import Reply, StandIn

    rng = random.Random(20261202)
    path = tmp_path / "run.json"
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "cfg"), "PYTHONPATH": str(ROOT)}
    env.pop("QUANTLAB_SUITES", None)
    seen: set[str] = set()
    with StandIn(Reply(tokens=["tok "], n_tokens=40, tokens_per_s=400)) as server:
        lanes = ["--endpoint", f"a={server.url}", "--endpoint", f"b={server.url}"]
        # --fail-on never: the stand-in's answers fail checks; this test is about saving.
        argv = [sys.executable, "-m", "quantlab", "run", "sanity", "--fail-on", "never"]
        argv += ["--repeat", "40"]
        for r in range(5):
            proc = subprocess.Popen(
                [*argv, "--concurrency", "4", *lanes, "--session", str(path)],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            follower = SessionFollower(path)
            started = time.monotonic()
            end: float | None = None  # the kill: a random moment after this run's start
            while (end is None or time.monotonic() < end) and proc.poll() is None:
                assert time.monotonic() - started < 120, "the run never started"
                if path.exists():
                    u = follower.poll()
                    seen |= {ex.id for ex in u.exchanges if set(ex.results) == {"a", "b"}}
                    runs = (follower.session.meta if follower.session else {}).get("runs", [])
                    if end is None and len(runs) > r:
                        end = time.monotonic() + rng.uniform(0.05, 3.0)
                time.sleep(rng.uniform(0.005, 0.05))
            assert proc.poll() is None, "the run ended before the kill: the test proves nothing"
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            follower.close()
            s = load_session(path)  # must load, every time
            ids = {ex.id for ex in s.exchanges}
            assert seen <= ids, f"round {r}: lost {seen - ids}"
            assert all(set(s.exchange(i).results) == {"a", "b"} for i in seen)  # type: ignore[union-attr]
            assert [n for n in s.notes if "incomplete last record" not in n] == [], s.notes
        assert len(seen) > 10, "too few saves seen before the kills: the test proves little"
        # A clean run on the same file folds what the kills left into one plain file.
        done = subprocess.run(
            [*argv[:-2], "--quick", *lanes, "--session", str(path)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    s = load_session(path)
    assert seen <= {ex.id for ex in s.exchanges}
    assert not path.with_name("run.json.journal").exists() and s.notes == []
