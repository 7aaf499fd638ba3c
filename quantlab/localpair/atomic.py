"""Atomic file writes: a reader sees the old file or the whole new one, never a half.

Every output goes to a temp file in the destination's own folder (same file system, so the
rename is atomic), is fsynced, and is renamed over the final name; the folder is fsynced so
the rename itself survives a power cut. Temp names carry a fixed marker so that leftovers
of a killed writer can be recognised and removed.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

#: Marker in every temp name; ``clean_temp_files`` removes files that carry it.
TEMP_MARK = ".tmp-"


def temp_path_for(final: Path) -> Path:
    """A fresh temp name next to ``final`` (pid + random, so writers never collide)."""
    return final.with_name(f"{final.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def fsync_file(path: Path) -> None:
    """Flush a file's data to disk (it may have been written by another library)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Make renames inside ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: Path, final: Path) -> None:
    """fsync ``tmp``, rename it over ``final``, fsync the folder."""
    fsync_file(tmp)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def write_bytes_atomic(final: Path, data: bytes) -> None:
    """Write ``data`` to ``final`` atomically."""
    tmp = temp_path_for(final)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fsync_dir(final.parent)
    finally:
        tmp.unlink(missing_ok=True)


def clean_temp_files(folder: Path) -> list[Path]:
    """Remove temp files left by killed writers. Call only while holding the folder's lock,
    so that no live writer's file is taken away."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if TEMP_MARK in p.name and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
