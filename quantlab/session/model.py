"""The Session record, the schema names and the session errors: what every part shares.

The on-disk format is described in :mod:`quantlab.session`; reading it is
:mod:`quantlab.session.file`, what a journal record does is :mod:`quantlab.session.journal`,
writing is :mod:`quantlab.session.store`.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantlab import __version__
from quantlab.records import Annotation, Endpoint, Exchange, new_id

SCHEMA_NAME = "quantlab.session"
SCHEMA_VERSION = 1
SCHEMA = f"{SCHEMA_NAME}/{SCHEMA_VERSION}"
JOURNAL_SCHEMA = "quantlab.session.journal/1"
FINDING_STATUSES = ("open", "confirmed", "dismissed")


class SessionError(Exception):
    """A session file that cannot be read or written; the message names the file and says
    what is wrong, fit to print as is (no traceback needed)."""


class SessionWriteError(SessionError):
    """A write the file system refused (disk full, quota, I/O error). Nothing already saved
    is damaged: the session still loads and holds ``saved`` exchanges. ``errno`` is the OS
    error number (``errno.ENOSPC`` for a full disk), ``path`` the session file."""

    def __init__(self, path: Path, exc: OSError, saved: int, what: str) -> None:
        self.path = path
        self.errno = exc.errno
        self.saved = saved
        self.disk_full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        reason = "disk full" if self.disk_full else (exc.strerror or str(exc))
        self.reason = reason
        super().__init__(
            f"{path}: {reason}: {what} was not saved; {saved} exchange"
            f"{'' if saved == 1 else 's'} saved before it are kept"
        )


def journal_path(path: Path) -> Path:
    """``X.json`` -> ``X.json.journal``."""
    return path.with_name(path.name + ".journal")


def snapshot_path(path: str | os.PathLike[str]) -> Path:
    """The session file a user names, also when they name its journal."""
    p = Path(path)
    return p.with_name(p.name[: -len(".journal")]) if p.name.endswith(".journal") else p


@dataclass
class Session:
    """Everything one session file holds, in memory.

    ``finding_status`` is the log of a person's confirm/dismiss decisions (each
    ``{"exchange_id", "lane", "detector", "status", "time"}``); they are also applied to
    the matching :class:`Finding` objects, and re-applied when an exchange is replaced.
    ``notes`` says what loading had to skip or repair (empty for a clean file).
    A session held by a :class:`SessionStore` or a follower is theirs to change: read it,
    and write through the store.
    """

    endpoints: list[Endpoint] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)
    exchanges: list[Exchange] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    telemetry: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    path: Path | None = None
    finding_status: list[dict[str, Any]] = field(default_factory=list)
    id: str = field(default_factory=new_id)
    quantlab_version: str = __version__
    updated_at: float | None = None
    notes: list[str] = field(default_factory=list)
    journal_seq: int = 0  # last journal record folded into this state
    _index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def exchange(self, exchange_id: str) -> Exchange | None:
        """The exchange with this id, or None."""
        i = self._position(exchange_id)
        return None if i is None else self.exchanges[i]

    def annotations_for(self, exchange_id: str, lane: str | None = None) -> list[Annotation]:
        """Annotations of one exchange (of one lane, plus those on all lanes, if given)."""
        return [
            a
            for a in self.annotations
            if a.exchange_id == exchange_id and (lane is None or a.lane in (lane, "*"))
        ]

    def annotation(self, annotation_id: str) -> Annotation | None:
        return next((a for a in self.annotations if a.id == annotation_id), None)

    def endpoint(self, name: str) -> Endpoint | None:
        return next((e for e in self.endpoints if e.name == name), None)

    @property
    def lanes(self) -> list[str]:
        """Lane names: the endpoints' order, then any lane seen only in exchanges."""
        names = [e.name for e in self.endpoints]
        seen = set(names)
        for ex in self.exchanges:
            for lane in ex.results:
                if lane not in seen:
                    seen.add(lane)
                    names.append(lane)
        return names

    def to_dict(self) -> dict[str, Any]:
        """The snapshot document (what ``X.json`` holds), as plain data."""
        return {
            "schema": SCHEMA,
            "quantlab_version": __version__,
            "session": self.id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "journal_seq": self.journal_seq,
            "endpoints": [e.to_dict() for e in self.endpoints],
            "machine": self.machine,
            "meta": self.meta,
            "exchanges": [ex.to_dict() for ex in self.exchanges],
            "annotations": [a.to_dict() for a in self.annotations],
            "finding_status": self.finding_status,
            "telemetry": self.telemetry,
        }

    # -- mutation used by apply_record ------------------------------------------------

    def _position(self, exchange_id: str, *, trust: bool = False) -> int | None:
        """Index lookup. A hit is always verified; a miss is believed only with ``trust``
        (internal writes, which keep the index current) and when the lengths agree,
        because a caller may have edited ``exchanges`` in place."""
        i = self._index.get(exchange_id)
        n = len(self.exchanges)
        if i is not None and i < n and self.exchanges[i].id == exchange_id:
            return i
        if i is None and trust and len(self._index) == n:
            return None
        self._index = {ex.id: k for k, ex in enumerate(self.exchanges)}
        return self._index.get(exchange_id)

    def _put_exchange(self, ex: Exchange) -> None:
        i = self._position(ex.id, trust=True)
        if i is None:
            self._index[ex.id] = len(self.exchanges)
            self.exchanges.append(ex)
        else:
            self.exchanges[i] = ex
        self._reapply_statuses(ex)

    def _reapply_statuses(self, ex: Exchange) -> None:
        """A person's confirm/dismiss outlives a re-run of the detectors on the exchange."""
        for change in self.finding_status:
            if change.get("exchange_id") == ex.id:
                set_status(ex, change["lane"], change["detector"], change["status"])


def set_status(ex: Exchange, lane: str, detector: str, status: str) -> int:
    result = ex.results.get(lane)
    if result is None:
        return 0
    n = 0
    for f in result.findings:
        if f.detector == detector:
            f.status = status  # type: ignore[assignment]
            n += 1
    return n
