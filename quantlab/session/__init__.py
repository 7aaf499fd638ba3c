"""Session files: what quantlab keeps of a chat or a run, crash-safe, shareable, followable.

This package's face: import from ``quantlab.session``. Inside, :mod:`~quantlab.session.model`
(the Session record, schema names, errors), :mod:`~quantlab.session.journal` (what each
journal record does), :mod:`~quantlab.session.file` (reading), :mod:`~quantlab.session.store`
(the one writer), :mod:`~quantlab.session.follow` (live reading of a file being written) and
:mod:`~quantlab.session.secrets` (keeping keys out).

A session is **one JSON file**, ``X.json`` (UTF-8, written with orjson, compact), plus,
while a writer has it open, a journal beside it, ``X.json.journal``. A closed session is
the JSON file alone; that is the file to keep and share.

``X.json``, the snapshot, is one object::

    {"schema": "quantlab.session/1",      # readers refuse a newer version with a message
     "quantlab_version": "0.1.0",         # of the last writer
     "session": "3f9a0c12ab45",           # random id; the journal names it too
     "created_at": 1764040364.2, "updated_at": 1764040391.8,   # Unix seconds
     "journal_seq": 42,                   # last journal record folded into this snapshot
     "endpoints": [Endpoint.to_dict()…],  # never a key: only api_key_env, a variable's NAME
     "machine": {"host": …, "cpu": …, "ram_gb": …, "gpus": [...]},
     "meta": {…},                         # e.g. the run's config
     "exchanges": [Exchange.to_dict()…],  # prompt, params, messages and one result per lane:
                                          # text, finish_reason, usage, timing (ttft_ms,
                                          # itl_ms[], e2e_ms, tokens_per_s), error, findings
     "annotations": [Annotation.to_dict()…],
     "finding_status": [{"exchange_id", "lane", "detector", "status", "time"}…],
     "telemetry": [{"t": …, …}…]}         # downsampled trace points, as the sampler gives

The record shapes are those of :mod:`quantlab.records`. ``finding_status`` logs each
confirm/dismiss; the statuses are also applied to the findings inside ``exchanges``.

``X.json.journal`` holds JSON lines. The first is a header
``{"journal": "quantlab.session.journal/1", "session": <id>, "base_seq": N}``; every other
line is one change, numbered from ``base_seq + 1``::

    {"seq": 43, "op": "exchange", "exchange": {…}}         # add or replace a whole exchange
    {"seq": 44, "op": "lane", "exchange_id": …, "lane": "q4_0", "result": {…}}
    {"seq": 45, "op": "annotation", "annotation": {…}}     # add or replace by id
    {"seq": 46, "op": "annotation_removed", "id": …}
    {"seq": 47, "op": "finding_status", "change": {…}}
    {"seq": 48, "op": "telemetry", "points": [{…}…]}
    {"seq": 49, "op": "endpoints" | "machine" | "meta", …}  # merged by name / by key

Reading = parse the snapshot, then apply the journal records whose ``seq`` is above the
snapshot's ``journal_seq``. Writing (:class:`SessionStore`) = append one line per change
with a single ``write`` plus ``fdatasync`` before returning, and now and then *compact*:
write the whole snapshot to a temp file, fsync, rename it over ``X.json``, then replace the
journal by a fresh header the same way (at close: delete it).

Why it is crash-safe: a rename is atomic, so ``X.json`` is always a complete snapshot; a
journal line either was written whole before the call returned, or it is the one in flight
and is the torn last line that readers skip (with a note in ``Session.notes``). A crash
between the two renames of a compaction leaves an old journal whose records are all at or
below the snapshot's ``journal_seq``: skipped. So ``kill -9`` or a dropped SSH link loses at
most the record being written. Reopening a session folds what a crash left in the journal
back into the snapshot.

Why a journal and not a rewrite of the whole file per exchange: ``benchmarks/session_write.py``
saves 9.4 KB exchanges (2 lanes x 1,500 characters, 300 ITLs each). On an H100 VM (ext4,
fdatasync of a small append ~110 µs), saving one exchange into a session of 10 / 100 /
1000 exchanges cost, fsync included: journal 0.4-0.8 / 0.3-0.4 / 0.3-0.5 ms; atomic rewrite
0.5 / 1.2 / 12 ms. The journal stays flat; the rewrite grows with the session (it writes
and syncs the whole file, 9 MB at 1000). On a busy disk (fdatasync 3-4 ms) the journal
took 4-6 ms, the rewrite 11-48 ms. Hence :class:`SessionStore` offers ``durability``:
``"fsync"`` (default: on disk before returning), ``"group"`` (in the kernel before
returning, so kill -9 safe, and fdatasynced by a background thread: ~0.1-0.5 ms on the
caller, for the UI loop) and ``"os"`` (kernel only). Compaction (the whole snapshot) runs
when the journal passes half the snapshot (at least 1 MiB): ~13-25 ms at 1000 exchanges,
a few times per thousand. Loading 1000 exchanges takes 0.1-0.2 s; an idle follower poll
6 µs, one with a new exchange ~60 µs.

Privacy: session files, journals and lock files are created ``0600`` and new session folders
``0700`` (prompts and answers can be confidential); a rewrite never loosens a file's mode.

A refused write (a full disk, a quota, an I/O error) raises :class:`SessionWriteError`
(``.path``, ``.saved`` exchanges, ``.errno``; "disk full" for ENOSPC) and damages nothing:
a journal record that did not land whole is cut off again, a snapshot that could not be
written leaves the old one and the journal in place, so the session loads with everything
saved before the error.

Secrets: endpoints hold the name of their key's variable, never the key; secret-named keys
(``api_key``, ``authorization``…) are dropped from free-form dicts, credentials are cut out
of URLs, and the values of the key variables are redacted from every byte written.
"""

from __future__ import annotations

import time
from pathlib import Path

from quantlab.records import new_id
from quantlab.session.file import load_session
from quantlab.session.follow import FollowUpdate, SessionFollower
from quantlab.session.model import (
    JOURNAL_SCHEMA,
    SCHEMA,
    Session,
    SessionError,
    SessionWriteError,
    journal_path,
)
from quantlab.session.store import Durability, SessionBusy, SessionStore, writer_holds

#: Where sessions go when no ``--session`` is given (relative to the current directory).
DEFAULT_SESSIONS_DIR = Path("sessions")


def default_session_path(sessions_dir: Path | None = None) -> Path:
    """A new, unused file name like ``sessions/2026-11-25T03-12-44_3f9a0c.json``: local
    time (sorts by name), plus a short random part so two runs in one second never clash."""
    folder = Path(sessions_dir) if sessions_dir is not None else DEFAULT_SESSIONS_DIR
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S")
    while True:
        p = folder / f"{stamp}_{new_id()[:6]}.json"
        if not p.exists():
            return p


__all__ = [
    "JOURNAL_SCHEMA",
    "SCHEMA",
    "Durability",
    "FollowUpdate",
    "Session",
    "SessionBusy",
    "SessionError",
    "SessionFollower",
    "SessionStore",
    "SessionWriteError",
    "default_session_path",
    "journal_path",
    "load_session",
    "writer_holds",
]
