"""The Session record and reading session files: the snapshot, then the journal replayed on it.

The on-disk format is described in :mod:`quantlab.session`. This module holds what every
reader and the writer share: the :class:`Session` dataclass, :class:`SessionError`, the
checks that turn a bad file into one clear sentence, and :func:`apply_record`, the single
place that says what a journal record does to a session (the writer applies its own records
through it too, so what it holds in memory is what a reload produces).
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from quantlab import __version__
from quantlab.records import Annotation, Endpoint, Exchange, LaneResult, new_id

SCHEMA_NAME = "quantlab.session"
SCHEMA_VERSION = 1
SCHEMA = f"{SCHEMA_NAME}/{SCHEMA_VERSION}"
JOURNAL_SCHEMA = "quantlab.session.journal/1"
FINDING_STATUSES = ("open", "confirmed", "dismissed")


class SessionError(Exception):
    """A session file that cannot be read or written; the message names the file and says
    what is wrong, fit to print as is (no traceback needed)."""


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
                _set_status(ex, change["lane"], change["detector"], change["status"])


def _set_status(ex: Exchange, lane: str, detector: str, status: str) -> int:
    result = ex.results.get(lane)
    if result is None:
        return 0
    n = 0
    for f in result.findings:
        if f.detector == detector:
            f.status = status  # type: ignore[assignment]
            n += 1
    return n


# ------------------------------------------------------------------ journal records


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


def apply_record(session: Session, rec: dict[str, Any], changes: Changes | None = None) -> None:
    """Apply one journal record to ``session``. Raises :class:`RecordError` for a record
    that cannot apply (unknown op, missing fields); the session is then unchanged."""
    op = rec.get("op")
    try:
        if op == "exchange":
            ex = Exchange.from_dict(rec["exchange"])
            session._put_exchange(ex)
            if changes is not None:
                changes.exchanges[ex.id] = None
        elif op == "lane":
            ex_id = rec["exchange_id"]
            ex = session.exchange(ex_id)
            if ex is None:
                raise RecordError(f"lane result for unknown exchange {ex_id}")
            result = LaneResult.from_dict(rec["result"])
            ex.results[rec["lane"]] = result
            session._reapply_statuses(ex)
            if changes is not None:
                changes.exchanges[ex_id] = None
        elif op == "annotation":
            a = Annotation.from_dict(rec["annotation"])
            for i, old in enumerate(session.annotations):
                if old.id == a.id:
                    session.annotations[i] = a
                    break
            else:
                session.annotations.append(a)
            if changes is not None:
                changes.annotations[a.id] = None
        elif op == "annotation_removed":
            aid = rec["id"]
            session.annotations = [a for a in session.annotations if a.id != aid]
            if changes is not None:
                changes.annotations.pop(aid, None)
                changes.removed_annotations.append(aid)
        elif op == "finding_status":
            change = dict(rec["change"])
            if change.get("status") not in FINDING_STATUSES:
                raise RecordError(f"unknown finding status {change.get('status')!r}")
            ex = session.exchange(change["exchange_id"])
            session.finding_status.append(change)
            if ex is not None:
                _set_status(ex, change["lane"], change["detector"], change["status"])
            if changes is not None:
                changes.finding_status.append(change)
                if ex is not None:
                    changes.exchanges[ex.id] = None
        elif op == "telemetry":
            points = rec["points"]
            if not isinstance(points, list):
                raise RecordError("telemetry points are not a list")
            session.telemetry.extend(points)
            if changes is not None:
                changes.telemetry.extend(points)
        elif op == "endpoints":
            _merge_endpoints(session, [Endpoint.from_dict(d) for d in rec["endpoints"]])
            if changes is not None:
                changes.endpoints = True
        elif op == "machine":
            session.machine.update(_as_dict(rec["machine"], "machine"))
            if changes is not None:
                changes.machine = True
        elif op == "meta":
            session.meta.update(_as_dict(rec["meta"], "meta"))
            if changes is not None:
                changes.meta = True
        else:
            raise RecordError(f"unknown record op {op!r} (written by a newer quantlab?)")
    except RecordError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RecordError(f"{op} record: {_describe(exc)}") from exc


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


def _describe(exc: Exception) -> str:
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


# ------------------------------------------------------------------ loading


@dataclass
class LoadInfo:
    """What loading saw besides the session (the writer needs it when it reopens)."""

    journal_size: int = 0
    journal_damaged: bool = False  # records were skipped (beyond a torn last line)
    last_seq: int = 0
    header: JournalHeader | None = None


def load_session(path: str | os.PathLike[str]) -> Session:
    """Read a session file (and replay its journal, if one is beside it).

    Raises :class:`SessionError` with a message that names the file and the problem. A bad
    journal never loses the snapshot: unreadable records are skipped and listed in
    ``session.notes``.
    """
    return load_with_info(path)[0]


def load_with_info(path: str | os.PathLike[str]) -> tuple[Session, LoadInfo]:
    p = snapshot_path(path)
    with gc_paused():
        return _load(p)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Parsing a large session allocates millions of objects that all live on; the cyclic
    collector would scan them again and again (about a third of the load time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _load(p: Path) -> tuple[Session, LoadInfo]:
    data = _read(p)
    session = decode_snapshot(data, p)
    info = LoadInfo(last_seq=session.journal_seq)
    jp = journal_path(p)
    try:
        jdata = jp.read_bytes()
    except FileNotFoundError:
        return session, info
    except OSError as exc:
        session.notes.append(f"{jp}: could not read the journal ({exc.strerror}); ignored it")
        info.journal_damaged = True
        return session, info
    replay_journal(session, jdata, jp, info)
    return session, info


def _read(p: Path) -> bytes:
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise SessionError(f"{p}: no such session file") from None
    except IsADirectoryError:
        raise SessionError(f"{p}: is a folder, not a session file") from None
    except OSError as exc:
        raise SessionError(f"{p}: cannot read it ({exc.strerror})") from None


def replay_journal(
    session: Session,
    data: bytes,
    jp: Path,
    info: LoadInfo,
    changes: Changes | None = None,
    *,
    final: bool = True,
) -> int:
    """Apply the journal bytes ``data`` (the whole file) to ``session``.

    Returns how many bytes were consumed: everything when ``final`` (a torn last line is
    noted and dropped), else up to the last complete line (a live writer may be mid-write).
    """
    info.journal_size = len(data)
    if not data:
        return 0
    first_nl = data.find(b"\n")
    header = parse_header(data[:first_nl] if first_nl >= 0 else data)
    start = 0
    if header is not None:
        info.header = header
        if header.session and header.session != session.id:
            session.notes.append(
                f"{jp}: the journal belongs to another session ({header.session}, not "
                f"{session.id}); ignored it"
            )
            info.journal_damaged = True
            return len(data)
        start = first_nl + 1 if first_nl >= 0 else len(data)
        if header.base_seq > session.journal_seq:
            session.notes.append(
                f"{jp}: the journal starts after record {header.base_seq} but the snapshot "
                f"holds records up to {session.journal_seq}; records in between are missing"
            )
            info.journal_damaged = True
    else:
        session.notes.append(f"{jp}: the journal has no header line; read its records anyway")
    end = apply_lines(session, data, start, jp, info, changes)
    if end < len(data) and final:
        tail = data[end:]
        rec = parse_record(tail)
        if rec is not None:  # complete record, only its newline missing
            _apply_checked(session, rec, end, jp, info, changes)
        else:
            session.notes.append(
                f"{jp}: ignored an incomplete last record ({len(tail)} bytes at byte {end}): "
                "the write in flight when the writer stopped"
            )
        return len(data)
    return end


def apply_lines(
    session: Session,
    data: bytes,
    start: int,
    jp: Path,
    info: LoadInfo,
    changes: Changes | None = None,
) -> int:
    """Apply every complete line of ``data`` from ``start``; return the offset after the
    last complete line."""
    end = start
    for offset, line in iter_lines(data, start):
        end = offset + len(line) + 1
        if not line.strip():
            continue
        rec = parse_record(line)
        if rec is None:
            session.notes.append(f"{jp}: skipped an unreadable record at byte {offset}")
            info.journal_damaged = True
            continue
        _apply_checked(session, rec, offset, jp, info, changes)
    return end


def _apply_checked(
    session: Session,
    rec: dict[str, Any],
    offset: int,
    jp: Path,
    info: LoadInfo,
    changes: Changes | None,
) -> None:
    seq = rec["seq"]
    if seq <= session.journal_seq:
        return  # already folded into the snapshot (a compaction was cut short)
    try:
        apply_record(session, rec, changes)
    except RecordError as exc:
        session.notes.append(f"{jp}: skipped record {seq} at byte {offset}: {exc}")
        info.journal_damaged = True
    session.journal_seq = seq
    info.last_seq = seq


def decode_snapshot(data: bytes, p: Path) -> Session:
    """The snapshot document -> Session. Strict: a snapshot is written atomically by
    quantlab, so anything malformed is reported, never silently dropped."""
    if not data.strip():
        raise SessionError(f"{p}: the file is empty, not a quantlab session")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SessionError(f"{p}: {json_problem(exc, data)}") from None
    if not isinstance(doc, dict):
        raise SessionError(
            f"{p}: not a quantlab session (the JSON is {_kind(doc)}, not an object with a "
            f'"schema" field)'
        )
    check_schema(doc.get("schema"), p)
    try:
        session = Session(
            endpoints=[Endpoint.from_dict(e) for e in _list(doc, "endpoints")],
            machine=_obj(doc, "machine"),
            exchanges=[],
            annotations=[Annotation.from_dict(a) for a in _list(doc, "annotations")],
            telemetry=_list(doc, "telemetry"),
            meta=_obj(doc, "meta"),
            created_at=_num(doc, "created_at", 0.0),
            path=p,
            finding_status=[dict(c) for c in _list(doc, "finding_status")],
            id=str(doc.get("session") or new_id()),
            quantlab_version=str(doc.get("quantlab_version") or "unknown"),
            updated_at=doc.get("updated_at"),
            journal_seq=int(doc.get("journal_seq") or 0),
        )
        exchanges = _list(doc, "exchanges")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SessionError(f"{p}: malformed session: {_describe(exc)}") from None
    for i, d in enumerate(exchanges):
        try:
            ex = Exchange.from_dict(d)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            ident = d.get("id") if isinstance(d, dict) else None
            raise SessionError(
                f"{p}: exchange #{i + 1}{f' (id {ident})' if ident else ''} is malformed: "
                f"{_describe(exc)}"
            ) from None
        session._put_exchange(ex)
    return session


def check_schema(schema: Any, p: Path) -> None:
    if schema is None:
        raise SessionError(f'{p}: not a quantlab session (no "schema" field)')
    if not isinstance(schema, str) or "/" not in schema:
        raise SessionError(f"{p}: not a quantlab session (schema {schema!r})")
    name, _, ver = schema.rpartition("/")
    if name != SCHEMA_NAME:
        raise SessionError(f"{p}: not a quantlab session (its schema is {schema!r})")
    try:
        version = int(ver)
    except ValueError:
        raise SessionError(f"{p}: unreadable schema version in {schema!r}") from None
    if version > SCHEMA_VERSION:
        raise SessionError(
            f"{p}: schema {schema} is newer than this quantlab ({__version__} reads "
            f"{SCHEMA}); upgrade quantlab to open it"
        )
    if version < 1:
        raise SessionError(f"{p}: unknown schema version {schema!r}")


def json_problem(exc: orjson.JSONDecodeError, data: bytes) -> str:
    """One sentence for a JSON parse error: where, and what it probably means."""
    pos = exc.pos
    msg = exc.msg
    if "UTF-8" in msg:
        return f"not UTF-8 text (at byte {pos}): not a session file"
    if "end of data" in msg or pos >= len(data.rstrip()):
        return (
            f"the JSON ends early at byte {len(data)}: the file was cut short (an incomplete copy?)"
        )
    if pos == 0 or data.lstrip()[:1] not in (b"{", b"["):
        return f"not JSON ({msg} at byte {pos}): not a quantlab session"
    return f"corrupt JSON at byte {pos} (line {exc.lineno}, column {exc.colno}): {msg}"


class ShapeError(ValueError):
    """A snapshot field of the wrong JSON type."""


def _kind(v: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number"}.get(
        type(v), "null" if v is None else type(v).__name__
    )


def _list(doc: dict[str, Any], key: str) -> list[Any]:
    v = doc.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        raise ShapeError(f'"{key}" is {_kind(v)}, not a list')
    return v


def _obj(doc: dict[str, Any], key: str) -> dict[str, Any]:
    v = doc.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ShapeError(f'"{key}" is {_kind(v)}, not an object')
    return v


def _num(doc: dict[str, Any], key: str, default: float) -> float:
    v = doc.get(key, default)
    if not isinstance(v, int | float):
        raise ShapeError(f'"{key}" is {_kind(v)}, not a number')
    return float(v)
