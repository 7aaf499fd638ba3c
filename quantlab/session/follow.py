"""Follow a session that another process is writing (a headless ``quantlab run``).

:class:`SessionFollower` loads the session once, then on each :meth:`~SessionFollower.poll`
reads only the bytes appended to the journal since the last poll (an ``fstat`` and a
``pread``; nothing at all when nothing changed), so the TUI can call it twice a second.
When the writer compacts (new snapshot renamed in, journal replaced), the journal the
follower holds open stops growing and the path names a new file: the follower notices the
inode change, reloads snapshot + journal and reports the difference, so nothing is missed or
reported twice.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any

from quantlab.records import Annotation, Endpoint, Exchange
from quantlab.session.file import (
    LoadInfo,
    apply_lines,
    decode_snapshot,
    gc_paused,
    replay_journal,
)
from quantlab.session.journal import Changes
from quantlab.session.model import Session, SessionError, journal_path, snapshot_path


@dataclass
class FollowUpdate:
    """What changed since the last poll. ``exchanges`` holds the current state of every
    exchange that is new or changed (a lane added, a finding's status…), in session order.
    ``reset`` is True on the first poll (everything is "new") and when the file became a
    different session: the caller should rebuild its view from ``follower.session``."""

    exchanges: list[Exchange] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    removed_annotations: list[str] = field(default_factory=list)
    telemetry: list[dict[str, Any]] = field(default_factory=list)
    finding_status: list[dict[str, Any]] = field(default_factory=list)
    endpoints: list[Endpoint] | None = None
    machine: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    reset: bool = False
    notes: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.reset
            or self.exchanges
            or self.annotations
            or self.removed_annotations
            or self.telemetry
            or self.finding_status
            or self.endpoints is not None
            or self.machine is not None
            or self.meta is not None
            or self.notes
        )


class SessionFollower:
    """Read-only, incremental view of a session file that may still be written."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = snapshot_path(path)
        self.journal_path = journal_path(self.path)
        self.session: Session | None = None
        self._fd: int | None = None  # the journal file we read, held open across polls
        self._ino: int | None = None
        self._offset = 0  # bytes of that journal already consumed (complete lines)

    def poll(self) -> FollowUpdate:
        """Changes since the last poll (everything, with ``reset``, on the first).
        Raises :class:`SessionError` when the session file cannot be read."""
        if self.session is None:
            session = self._reload()
            self.session = session
            return _everything(session)
        update = FollowUpdate()
        changes = Changes()
        self._read_new(changes, update)
        if self._journal_replaced():
            old = self.session
            new = self._reload()
            self.session = new
            if new.id != old.id:
                return _everything(new)
            _diff(old, new, changes)
            update.notes.extend(n for n in new.notes if n not in old.notes)
        _fill(update, self.session, changes)
        return update

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # ------------------------------------------------------------------ internals

    def _journal_replaced(self) -> bool:
        try:
            st = os.stat(self.journal_path)
        except FileNotFoundError:
            # No journal: closed by its writer (or never had one). Reload once if we
            # were reading one, since the final snapshot may hold records we never saw.
            return self._fd is not None
        except OSError:
            return False
        return st.st_ino != self._ino

    def _read_new(self, changes: Changes, update: FollowUpdate) -> None:
        if self._fd is None or self.session is None:
            return
        size = os.fstat(self._fd).st_size
        if size <= self._offset:
            return
        data = os.pread(self._fd, size - self._offset, self._offset)
        notes_before = len(self.session.notes)
        info = LoadInfo()
        end = apply_lines(self.session, data, 0, self.journal_path, info, changes)
        self._offset += end  # an incomplete last line waits for the next poll
        update.notes.extend(self.session.notes[notes_before:])

    def _reload(self) -> Session:
        """Journal first, then snapshot: a snapshot read after the journal was opened is
        at least as new as that journal's base, so no record can fall in between."""
        with gc_paused():
            return self._reload_once()

    def _reload_once(self) -> Session:
        self.close()
        self._ino = None
        self._offset = 0
        for _ in range(20):
            fd = None
            with contextlib.suppress(FileNotFoundError):
                fd = os.open(self.journal_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                try:
                    data = self.path.read_bytes()
                except FileNotFoundError:
                    raise SessionError(f"{self.path}: no such session file") from None
                except OSError as exc:
                    raise SessionError(f"{self.path}: cannot read it ({exc.strerror})") from None
                session = decode_snapshot(data, self.path)
                if fd is None:
                    return session
                jdata = _read_all(fd)
                info = LoadInfo()
                end = replay_journal(session, jdata, self.journal_path, info, final=False)
                if info.header is not None and info.header.base_seq > session.journal_seq:
                    # The snapshot we read predates this journal: read both again.
                    os.close(fd)
                    fd = None
                    continue
                self._fd, fd = fd, None
                self._ino = os.fstat(self._fd).st_ino
                self._offset = end
                return session
            finally:
                if fd is not None:
                    os.close(fd)
        raise SessionError(f"{self.path}: the session keeps changing under the reader")


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0) if size else b""


def _everything(session: Session) -> FollowUpdate:
    return FollowUpdate(
        exchanges=list(session.exchanges),
        annotations=list(session.annotations),
        telemetry=list(session.telemetry),
        finding_status=list(session.finding_status),
        endpoints=list(session.endpoints),
        machine=dict(session.machine),
        meta=dict(session.meta),
        reset=True,
        notes=list(session.notes),
    )


def _diff(old: Session, new: Session, changes: Changes) -> None:
    """Record in ``changes`` what ``new`` (reloaded) holds that ``old`` did not."""
    old_ex = {ex.id: ex for ex in old.exchanges}
    for ex in new.exchanges:
        if old_ex.get(ex.id) != ex:
            changes.exchanges[ex.id] = None
    old_ann = {a.id: a for a in old.annotations}
    new_ids = set()
    for a in new.annotations:
        new_ids.add(a.id)
        if old_ann.get(a.id) != a:
            changes.annotations[a.id] = None
    changes.removed_annotations.extend(i for i in old_ann if i not in new_ids)
    if len(new.telemetry) > len(old.telemetry):
        changes.telemetry.extend(new.telemetry[len(old.telemetry) :])
    if len(new.finding_status) > len(old.finding_status):
        changes.finding_status.extend(new.finding_status[len(old.finding_status) :])
    changes.endpoints |= new.endpoints != old.endpoints
    changes.machine |= new.machine != old.machine
    changes.meta |= new.meta != old.meta


def _fill(update: FollowUpdate, session: Session, changes: Changes) -> None:
    order = {ex.id: i for i, ex in enumerate(session.exchanges)} if changes.exchanges else {}
    ids = sorted((i for i in changes.exchanges if i in order), key=order.__getitem__)
    update.exchanges = [session.exchanges[order[i]] for i in ids]
    present = {a.id for a in session.annotations}
    update.annotations = [a for a in session.annotations if a.id in changes.annotations]
    update.removed_annotations = [
        i for i in dict.fromkeys(changes.removed_annotations) if i not in present
    ]
    update.telemetry = changes.telemetry
    update.finding_status = changes.finding_status
    if changes.endpoints:
        update.endpoints = list(session.endpoints)
    if changes.machine:
        update.machine = dict(session.machine)
    if changes.meta:
        update.meta = dict(session.meta)
