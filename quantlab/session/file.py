"""Reading session files: the snapshot, then the journal replayed on it.

The on-disk format is described in :mod:`quantlab.session`. The checks here turn a bad
file into one clear sentence (a :class:`SessionError` naming the file); a bad journal
never loses the snapshot.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from quantlab import __version__
from quantlab.records import Annotation, Endpoint, Exchange, new_id
from quantlab.session.journal import (
    Changes,
    JournalHeader,
    RecordError,
    apply_record,
    describe,
    iter_lines,
    parse_header,
    parse_record,
)
from quantlab.session.model import (
    SCHEMA,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    Session,
    SessionError,
    journal_path,
    snapshot_path,
)


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
        raise SessionError(f"{p}: malformed session: {describe(exc)}") from None
    for i, d in enumerate(exchanges):
        try:
            ex = Exchange.from_dict(d)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            ident = d.get("id") if isinstance(d, dict) else None
            raise SessionError(
                f"{p}: exchange #{i + 1}{f' (id {ident})' if ident else ''} is malformed: "
                f"{describe(exc)}"
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
