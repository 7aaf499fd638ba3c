"""Writing a session: every change is one journal record, durable when the call returns.

:class:`SessionStore` is the only writer of a session file. Each change (an exchange, one
lane's result, an annotation, a finding's status, telemetry points…) is appended to
``X.json.journal`` as one JSON line with a single ``write`` (and, by default, an
``fdatasync``) before the call returns. The snapshot ``X.json`` is rewritten atomically
(temp file, fsync, rename) when the journal has grown past half the snapshot's size (at
least ``compact_min_bytes``), when the session is reopened, and at :meth:`close`, which
also removes the journal: a closed session is one plain JSON file. See
:mod:`quantlab.session` for the format and ``benchmarks/session_write.py`` for why a
journal and not a rewrite per exchange.

A lock file (``X.json.lock``, ``flock``) keeps two writers off one session; readers
(:func:`load_session`, :class:`SessionFollower`) never lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import orjson

from quantlab import __version__, fsio
from quantlab.records import Annotation, Endpoint, Exchange, LaneResult
from quantlab.session.file import load_with_info
from quantlab.session.journal import apply_record
from quantlab.session.model import (
    FINDING_STATUSES,
    JOURNAL_SCHEMA,
    SCHEMA,
    Session,
    SessionError,
    SessionWriteError,
    journal_path,
    snapshot_path,
)
from quantlab.session.secrets import redact, scrub, secret_values

#: "fsync": each record reaches the disk before the call returns (survives a power cut).
#: "group": each record reaches the kernel before the call returns (survives kill -9 and a
#: dropped SSH link, which end the process, not the kernel), and a background thread
#: fdatasyncs what was written, one sync for every record that arrived meanwhile (group
#: commit): a power cut loses at most the last sync's worth. For the UI loop, where a
#: slow disk's fsync (measured up to several ms here under load) must not stall a frame.
#: "os": like "group" without the background sync (the kernel writes back on its own).
#: Snapshots are fsynced in "fsync" and "group" modes.
Durability = Literal["fsync", "group", "os"]
DURABILITIES: tuple[str, ...] = ("fsync", "group", "os")

_DUMPS_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _default(obj: Any) -> Any:
    """What orjson cannot write by itself: numpy scalars, paths, sets, records."""
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"cannot write a {type(obj).__name__} into a session file")


def dumps(obj: Any) -> bytes:
    """JSON bytes for a session file. Text with lone surrogates (undecodable bytes a server
    sent) is written with U+FFFD in their place rather than refused; anything else that
    cannot be written is a :class:`SessionError` raised before a byte is written."""
    try:
        return orjson.dumps(obj, default=_default, option=_DUMPS_OPTS)
    except TypeError as exc:
        if "surrogates" not in str(exc):
            raise SessionError(f"cannot write this into a session file: {exc}") from None
    return orjson.dumps(_without_surrogates(obj), default=_default, option=_DUMPS_OPTS)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_surrogates(obj: Any) -> Any:
    if isinstance(obj, str):
        return _SURROGATE.sub("\ufffd", obj)
    if isinstance(obj, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_without_surrogates(v) for v in obj]
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return _without_surrogates(obj.to_dict())
    return obj


def exchange_json(ex: Exchange) -> bytes:
    """An exchange's JSON. orjson writes the dataclass fields itself: the same document as
    ``Exchange.to_dict()`` (tests/test_session.py pins that) at a fraction of the cost,
    since ``Timing.to_dict``'s ``dataclasses.asdict`` deep-copies every ITL float (~0.5 ms
    for 2 lanes x 300 ITLs, versus ~30 µs here)."""
    return dumps(ex)


class SessionBusy(SessionError):
    """Another process holds the session's write lock (e.g. a headless ``quantlab run``):
    the file can still be read and followed live, not written."""


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _acquire_lock(path: Path) -> int | None:
    """An exclusive flock on ``X.json.lock``; the lock dies with the process (kill -9)."""
    try:
        return fsio.acquire_lock(lock_path(path))
    except fsio.LockBusy as exc:
        raise SessionBusy(
            f"{path}: another quantlab process (pid {exc.holder}) is writing this session; "
            "open it read-only (follow it) or pick another file"
        ) from None
    except OSError as exc:
        raise SessionError(f"{path}: could not lock the session ({exc.strerror or exc})") from None


def writer_holds(path: str | os.PathLike[str]) -> bool:
    """Whether another process holds the session's write lock now (a headless run still
    writing): a probe, taken and let go at once, for a reader deciding what to offer."""
    p = snapshot_path(path)
    if not lock_path(p).exists():
        return False
    try:
        fd = fsio.acquire_lock(lock_path(p))
    except fsio.LockBusy:
        return True
    except OSError:
        return False
    fsio.release_lock(lock_path(p), fd)
    return False


def _release_lock(path: Path, fd: int | None) -> None:
    fsio.release_lock(lock_path(path), fd)


class SessionStore:
    """The writer of one session file. Use :meth:`open`; every method is durable on return
    and safe to call from several threads (one lock). Calls take tens of µs plus one
    fdatasync (see ``benchmarks/session_write.py``). From an asyncio loop, open the store
    with ``durability="group"`` (no fsync on the caller's thread; completed exchanges still
    survive kill -9) or call it through ``asyncio.to_thread``."""

    def __init__(
        self,
        path: Path,
        session: Session,
        *,
        durability: Durability,
        compact_min_bytes: int,
        lock_fd: int | None,
    ) -> None:
        self.path = path
        self.journal_path = journal_path(path)
        self.session = session
        self.durability: Durability = durability
        self.compact_min_bytes = compact_min_bytes
        self._lock = threading.RLock()
        self._lock_fd = lock_fd
        self._jfd: int | None = None
        self._journal_bytes = 0
        self._snapshot_bytes = 0
        self._records_since_compaction = 0
        self.compactions = 0  # snapshots written so far (opening counts one)
        self._ex_json: dict[str, bytes] = {}  # exchange id -> its JSON, reused by snapshots
        self._secret_env: set[str] = set()
        self._secrets: list[bytes] = []
        self._refresh_secrets()
        self._sync_wanted = threading.Event()
        self._syncs_requested = 0
        self._syncs_done = 0
        self._synced = threading.Condition(self._lock)
        self._syncer: threading.Thread | None = None
        if durability == "group":
            self._syncer = threading.Thread(
                target=self._sync_loop, name=f"session-sync:{path.name}", daemon=True
            )
            self._syncer.start()

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        endpoints: Iterable[Endpoint] | None = None,
        machine: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
        durability: Durability = "fsync",
        compact_min_bytes: int = 1 << 20,
    ) -> SessionStore:
        """Create the session at ``path`` (and its folders), or reopen it to append.

        Reopening replays the journal a crash may have left and folds it into a fresh
        snapshot first. ``endpoints`` are merged by name (lanes of earlier exchanges stay),
        ``machine`` and ``meta`` are merged key by key. Raises :class:`SessionError` when the
        file is not a session (it is never overwritten) or another process writes it.
        """
        if durability not in DURABILITIES:
            raise ValueError(f"durability must be one of {DURABILITIES}, not {durability!r}")
        p = snapshot_path(path)
        try:
            fsio.make_private_dirs(p.parent)
        except OSError as exc:
            raise SessionError(f"{p.parent}: cannot create the folder ({exc.strerror})") from None
        lock_fd = _acquire_lock(p)
        try:
            journal_damaged = False
            if p.exists():
                session, info = load_with_info(p)
                journal_damaged = info.journal_damaged
            elif journal_path(p).exists():
                raise SessionError(
                    f"{p}: missing, but its journal {journal_path(p).name} is there; move the "
                    "journal away or restore the session file before writing to it"
                )
            else:
                session = Session(path=p)
            store = cls(
                p,
                session,
                durability=durability,
                compact_min_bytes=compact_min_bytes,
                lock_fd=lock_fd,
            )
            with store._lock:
                if endpoints is not None:
                    store._merge_endpoints_in_memory(endpoints)
                if machine:
                    session.machine.update(scrub(dict(machine)))
                if meta:
                    session.meta.update(scrub(dict(meta)))
                store._remove_stale_temps()
                if journal_damaged and store.journal_path.exists():
                    aside = store.journal_path.with_name(
                        f"{store.journal_path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}"
                    )
                    os.replace(store.journal_path, aside)
                    session.notes.append(f"kept the damaged journal as {aside.name}")
                store._compact()
            return store
        except BaseException:
            _release_lock(p, lock_fd)
            raise

    def _remove_stale_temps(self) -> None:
        """Temp files a killed writer left behind (we hold the lock: none is in use)."""
        for name in (self.path.name, self.journal_path.name):
            fsio.clean_temp_files(self.path.parent, prefix=f".{name}{fsio.TEMP_MARK}")

    # ------------------------------------------------------------------ public writes

    def append_exchange(self, exchange: Exchange) -> None:
        """Save a whole exchange (all its lanes as they are now). An exchange with an id
        already in the session replaces it (same as :meth:`update_exchange`)."""
        data = exchange_json(exchange)
        with self._lock:
            data = redact(data, self._secrets)
            self._write("exchange", {"exchange": orjson.Fragment(data)})
            self._ex_json[exchange.id] = data
            if self._has_statuses(exchange.id):
                self._ex_json.pop(exchange.id, None)  # statuses re-applied: JSON differs

    update_exchange = append_exchange

    def save_lane(self, exchange: Exchange, lane: str, result: LaneResult | None = None) -> None:
        """Save one lane's result the moment it completes, before the other lanes finish.

        The first lane saved for an exchange writes the exchange with that lane only (other
        lanes still streaming are not saved half-done); later lanes add their result.
        ``result`` defaults to ``exchange.results[lane]``. Call :meth:`update_exchange`
        afterwards for exchange-wide changes (wall time, findings).
        """
        if result is None:
            try:
                result = exchange.results[lane]
            except KeyError:
                msg = f"exchange {exchange.id} has no result for lane {lane!r}"
                raise ValueError(msg) from None
        with self._lock:
            if self.session._position(exchange.id, trust=True) is None:
                first = dataclasses.replace(exchange, results={lane: result})
                data = redact(exchange_json(first), self._secrets)
                self._write("exchange", {"exchange": orjson.Fragment(data)})
                self._ex_json.pop(exchange.id, None)
            else:
                self._write("lane", {"exchange_id": exchange.id, "lane": lane, "result": result})
                self._ex_json.pop(exchange.id, None)

    def add_annotation(self, annotation: Annotation) -> None:
        """Save an annotation; one whose id is already there is replaced (an edit)."""
        with self._lock:
            self._write("annotation", {"annotation": annotation.to_dict()})

    def remove_annotation(self, annotation_id: str) -> None:
        with self._lock:
            if self.session.annotation(annotation_id) is None:
                raise ValueError(f"no annotation {annotation_id} in this session")
            self._write("annotation_removed", {"id": annotation_id})

    def set_finding_status(self, exchange_id: str, lane: str, detector: str, status: str) -> None:
        """Record a person's verdict on a detector's finding: "confirmed", "dismissed" or
        back to "open". Applies to every finding of ``detector`` on that lane."""
        if status not in FINDING_STATUSES:
            raise ValueError(f"status must be one of {', '.join(FINDING_STATUSES)}, not {status!r}")
        with self._lock:
            ex = self.session.exchange(exchange_id)
            if ex is None:
                raise ValueError(f"no exchange {exchange_id} in this session")
            if lane not in ex.results:
                raise ValueError(f"exchange {exchange_id} has no lane {lane!r}")
            if not any(f.detector == detector for f in ex.results[lane].findings):
                msg = f"lane {lane!r} of exchange {exchange_id} has no {detector} finding"
                raise ValueError(msg)
            change = {
                "exchange_id": exchange_id,
                "lane": lane,
                "detector": detector,
                "status": status,
                "time": time.time(),
            }
            self._write("finding_status", {"change": change})
            self._ex_json.pop(exchange_id, None)

    def add_telemetry(self, points: list[dict[str, Any]], *, sync: bool = False) -> None:
        """Append telemetry trace points (small dicts, e.g. one per second per GPU).

        Not fsynced by default: the points reach the kernel (they survive kill -9) and the
        next synced record carries them to disk; pass ``sync=True`` to force it."""
        if not points:
            return
        with self._lock:
            self._write("telemetry", {"points": list(points)}, sync=sync)

    def set_endpoints(self, endpoints: Iterable[Endpoint]) -> None:
        """Record the endpoints (merged by name: lanes of earlier exchanges stay)."""
        eps = list(endpoints)
        with self._lock:
            self._refresh_secrets(eps)
            self._write("endpoints", {"endpoints": [_endpoint_dict(e) for e in eps]})

    def set_machine(self, machine: Mapping[str, Any]) -> None:
        """Merge machine facts (host, CPU, RAM, GPUs…) key by key."""
        with self._lock:
            self._write("machine", {"machine": scrub(dict(machine))})

    def update_meta(self, meta: Mapping[str, Any]) -> None:
        """Merge ``meta`` (run config, notes…) key by key; secret-named keys are dropped."""
        with self._lock:
            self._write("meta", {"meta": scrub(dict(meta))})

    def compact(self) -> None:
        """Fold the journal into a fresh snapshot now (also done automatically)."""
        with self._lock:
            self._check_open()
            self._compact()

    def sync(self) -> None:
        """Block until every record written so far is on disk (a no-op in "fsync" mode;
        in "os" mode it syncs now)."""
        with self._lock:
            if self._jfd is None or self.durability == "fsync":
                return
            if self.durability == "os":
                fsio.sync_data(self._jfd)
                return
            target = self._syncs_requested
            self._sync_wanted.set()
            while self._syncs_done < target and self._syncer is not None:
                self._synced.wait(1.0)

    def close(self) -> None:
        """Write the final snapshot, remove the journal and the lock. Idempotent.

        When the final snapshot cannot be written (a full disk) the store is closed all
        the same (file, lock) and :class:`SessionWriteError` is raised; the journal stays
        beside the old snapshot, so the session still loads with everything saved."""
        with self._lock:
            if self._jfd is None:
                return
            try:
                self._compact(final=True)
            finally:
                if self._jfd is not None:
                    os.close(self._jfd)
                    self._jfd = None
                _release_lock(self.path, self._lock_fd)
                self._lock_fd = None
                self._sync_wanted.set()  # wakes the syncer, which sees the store closed

    def _sync_loop(self) -> None:
        """Group commit: one fdatasync covers every record written since the last one."""
        while True:
            self._sync_wanted.wait()
            self._sync_wanted.clear()
            with self._lock:
                if self._jfd is None:
                    self._syncs_done = self._syncs_requested
                    self._synced.notify_all()
                    return
                target = self._syncs_requested
                fd = os.dup(self._jfd)  # a compaction may close the original meanwhile
            try:
                fsio.sync_data(fd)
            except OSError as exc:  # pragma: no cover - disk errors
                note = f"{self.journal_path}: background sync failed ({exc.strerror})"
                if note not in self.session.notes:
                    self.session.notes.append(note)
            finally:
                os.close(fd)
            with self._lock:
                self._syncs_done = max(self._syncs_done, target)
                self._synced.notify_all()

    @property
    def closed(self) -> bool:
        return self._jfd is None

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    @property
    def saved(self) -> int:
        """Exchanges the session file holds now (each save that returned is in it)."""
        return len(self.session.exchanges)

    def _write_error(self, exc: OSError, what: str) -> SessionWriteError:
        return SessionWriteError(self.path, exc, self.saved, what)

    def _check_open(self) -> None:
        if self._jfd is None:
            raise SessionError(f"{self.path}: the session store is closed")

    def _has_statuses(self, exchange_id: str) -> bool:
        return any(c.get("exchange_id") == exchange_id for c in self.session.finding_status)

    def _refresh_secrets(self, endpoints: Iterable[Endpoint] = ()) -> None:
        self._secret_env.update(e.api_key_env for e in self.session.endpoints if e.api_key_env)
        self._secret_env.update(e.api_key_env for e in endpoints if e.api_key_env)
        self._secrets = secret_values(sorted(self._secret_env))

    def _merge_endpoints_in_memory(self, endpoints: Iterable[Endpoint]) -> None:
        eps = list(endpoints)
        self._refresh_secrets(eps)
        apply_record(
            self.session,
            {"op": "endpoints", "endpoints": [_endpoint_dict(e) for e in eps]},
        )

    def _write(self, op: str, fields: dict[str, Any], *, sync: bool = True) -> None:
        """Append one record, make it durable, then apply it (as parsed back from the
        bytes written, so memory holds exactly what a reload would)."""
        self._check_open()
        assert self._jfd is not None
        seq = self.session.journal_seq + 1
        line = dumps({"seq": seq, "op": op, **fields}) + b"\n"
        try:
            line = redact(line, self._secrets)
        except ValueError as exc:
            raise SessionError(f"{self.path}: not saved: {exc}") from None
        rec = orjson.loads(line)
        start = self._journal_bytes
        try:
            fsio.write_all(self._jfd, line)
            if sync and self.durability == "fsync":
                fsio.sync_data(self._jfd)
            elif self.durability == "group":
                self._syncs_requested += 1
                self._sync_wanted.set()
        except OSError as exc:
            with contextlib.suppress(OSError):  # leave no half record for the next one
                os.ftruncate(self._jfd, start)
            raise self._write_error(exc, f"this {op}") from None
        self._journal_bytes += len(line)
        self._records_since_compaction += 1
        apply_record(self.session, rec)
        self.session.journal_seq = seq
        if self._journal_bytes >= max(self.compact_min_bytes, self._snapshot_bytes // 2):
            try:
                self._compact()
            except SessionError as exc:  # the record itself is safe in the journal
                if str(exc) not in self.session.notes:
                    self.session.notes.append(str(exc))

    def _snapshot(self) -> bytes:
        s = self.session
        s.updated_at = time.time()
        exchanges = []
        for ex in s.exchanges:
            data = self._ex_json.get(ex.id)
            if data is None:
                data = exchange_json(ex)
                self._ex_json[ex.id] = data
            exchanges.append(orjson.Fragment(data))
        doc = {
            "schema": SCHEMA,
            "quantlab_version": __version__,
            "session": s.id,
            "created_at": s.created_at,
            "updated_at": s.updated_at,
            "journal_seq": s.journal_seq,
            "endpoints": [_endpoint_dict(e) for e in s.endpoints],
            "machine": scrub(s.machine),
            "meta": scrub(s.meta),
            "exchanges": exchanges,
            "annotations": [a.to_dict() for a in s.annotations],
            "finding_status": s.finding_status,
            "telemetry": s.telemetry,
        }
        return redact(dumps(doc), self._secrets)

    def _compact(self, *, final: bool = False) -> None:
        """Snapshot first, then a fresh journal (or none, at close). A crash between the
        two leaves an old journal whose records the snapshot already holds: skipped by seq."""
        fsync = self.durability != "os"
        snap = self._snapshot()
        try:
            fsio.atomic_write(self.path, snap, fsync=fsync)
            if final:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.journal_path)
                if fsync:
                    fsio.fsync_dir(self.path.parent)
                new_fd = None
            else:
                header = dumps(
                    {
                        "journal": JOURNAL_SCHEMA,
                        "session": self.session.id,
                        "base_seq": self.session.journal_seq,
                        "created_at": time.time(),
                    }
                )
                fsio.atomic_write(self.journal_path, header + b"\n", fsync=fsync)
                new_fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        except OSError as exc:  # the old snapshot and the journal are untouched
            raise self._write_error(exc, "the snapshot") from None
        if self._jfd is not None:
            os.close(self._jfd)
        self._jfd = new_fd
        self._snapshot_bytes = len(snap)
        self._journal_bytes = 0 if final else len(header) + 1
        self._records_since_compaction = 0
        self.compactions += 1


def _endpoint_dict(e: Endpoint) -> dict[str, Any]:
    """An endpoint as written: secret-named fields dropped, URL credentials cut out."""
    return scrub(e.to_dict())


__all__ = ["DURABILITIES", "Durability", "SessionBusy", "SessionStore", "dumps"]
