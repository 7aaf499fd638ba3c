"""Journal records: what each one does to a session, and how journal lines are parsed.

:func:`apply_record` is the single place that says what a record does (the writer applies
its own records through it too, so what it holds in memory is what a reload produces).
Each ``op`` has one small handler in :data:`HANDLERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from quantlab.records import Annotation, Endpoint, Exchange, LaneResult
from quantlab.session.model import FINDING_STATUSES, Session, set_status


@dataclass
class Changes:
    """What a run of :func:`apply_record` calls changed (the follower reports these)."""

    exchanges: dict[str, None] = field(default_factory=dict)  # ordered set of ids
    annotations: dict[str, None] = field(default_factory=dict)
    removed_annotations: list[str] = field(default_factory=list)
    telemetry: list[dict[str, Any]] = field(default_factory=list)
    finding_status: list[dict[str, Any]] = field(default_factory=list)
    endpoints: bool = False
    machine: bool = False
    meta: bool = False


class RecordError(ValueError):
    """A journal record that parses as JSON but does not make sense."""


Handler = Callable[[Session, dict[str, Any], Changes], None]


def apply_record(session: Session, rec: dict[str, Any], changes: Changes | None = None) -> None:
    """Apply one journal record to ``session``. Raises :class:`RecordError` for a record
    that cannot apply (unknown op, missing fields); the session is then unchanged."""
    op = rec.get("op")
    handler = HANDLERS.get(op) if isinstance(op, str) else None
    if handler is None:
        raise RecordError(f"unknown record op {op!r} (written by a newer quantlab?)")
    try:
        handler(session, rec, changes if changes is not None else Changes())
    except RecordError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RecordError(f"{op} record: {describe(exc)}") from exc


def _exchange(session: Session, rec: dict[str, Any], changes: Changes) -> None:
    ex = Exchange.from_dict(rec["exchange"])
    session._put_exchange(ex)
    changes.exchanges[ex.id] = None


def _lane(session: Session, rec: dict[str, Any], changes: Changes) -> None:
    ex_id = rec["exchange_id"]
    ex = session.exchange(ex_id)
    if ex is None:
        raise RecordError(f"lane result for unknown exchange {ex_id}")
    result = LaneResult.from_dict(rec["result"])
    ex.results[rec["lane"]] = result
    session._reapply_statuses(ex)
    changes.exchanges[ex_id] = None


def _annotation(session: Session, rec: dict[str, Any], changes: Changes) -> None:
    a = Annotation.from_dict(rec["annotation"])
    for i, old in enumerate(session.annotations):
        if old.id == a.id:
            session.annotations[i] = a
            break
    else:
        session.annotations.append(a)
    changes.annotations[a.id] = None


def _annotation_removed(session: Session, rec: dict[str, Any], changes: Changes) -> None:
    aid = rec["id"]
    session.annotations = [a for a in session.annotations if a.id != aid]
    changes.annotations.pop(aid, None)
    changes.removed_annotations.append(aid)


def _finding_status(session: Session, rec: dict[str, Any], changes: Changes) -> None:
    change = dict(rec["change"])
    if change.get("status") not in FINDING_STATUSES:
        raise RecordError(f"unknown finding status {change.get('status')!r}")
    lane, detector, status = change["lane"], change["detector"], change["status"]
    ex = session.exchange(change["exchange_id"])
    session.finding_status.append(change)
    changes.finding_status.append(change)
    if ex is not None:
        set_status(ex, lane, detector, status)
        changes.exchanges[ex.id] = None


def _telemetry(session: Session, rec: dict[str, Any], changes: Changes) -> None:
    points = rec["points"]
    if not isinstance(points, list):
        raise RecordError("telemetry points are not a list")
    session.telemetry.extend(points)
    changes.telemetry.extend(points)


def _endpoints(session: Session, rec: dict[str, Any], changes: Changes) -> None:
    _merge_endpoints(session, [Endpoint.from_dict(d) for d in rec["endpoints"]])
    changes.endpoints = True


def _machine(session: Session, rec: dict[str, Any], changes: Changes) -> None:
    session.machine.update(_as_dict(rec["machine"], "machine"))
    changes.machine = True


def _meta(session: Session, rec: dict[str, Any], changes: Changes) -> None:
    session.meta.update(_as_dict(rec["meta"], "meta"))
    changes.meta = True


#: One handler per record ``op``; a new op is one function and one line here.
HANDLERS: dict[str, Handler] = {
    "exchange": _exchange,
    "lane": _lane,
    "annotation": _annotation,
    "annotation_removed": _annotation_removed,
    "finding_status": _finding_status,
    "telemetry": _telemetry,
    "endpoints": _endpoints,
    "machine": _machine,
    "meta": _meta,
}


def _merge_endpoints(session: Session, endpoints: list[Endpoint]) -> None:
    """Same name: replaced; new name: added. Lanes no longer configured stay, because
    earlier exchanges still refer to them."""
    by_name = {e.name: i for i, e in enumerate(session.endpoints)}
    for e in endpoints:
        if e.name in by_name:
            session.endpoints[by_name[e.name]] = e
        else:
            by_name[e.name] = len(session.endpoints)
            session.endpoints.append(e)


def _as_dict(v: Any, what: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise RecordError(f"{what} is not an object")
    return v


def describe(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    return str(exc) or type(exc).__name__


@dataclass
class JournalHeader:
    session: str | None
    base_seq: int


def parse_header(line: bytes) -> JournalHeader | None:
    """The journal's first line, or None when it is not a header."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or "journal" not in doc:
        return None
    base = doc.get("base_seq")
    return JournalHeader(session=doc.get("session"), base_seq=base if isinstance(base, int) else 0)


def iter_lines(buf: bytes, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """(offset, line) for every complete (newline-ended) line of ``buf`` from ``start``."""
    pos = start
    while True:
        nl = buf.find(b"\n", pos)
        if nl < 0:
            return
        yield pos, buf[pos:nl]
        pos = nl + 1


def parse_record(line: bytes) -> dict[str, Any] | None:
    """A journal record, or None when the line is not one (unparseable or shapeless)."""
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("seq"), int) or "op" not in rec:
        return None
    return rec
