"""File-system primitives every writer in quantlab shares: private atomic writes and locks.

* :func:`atomic_write`: a reader (or a crash) sees the old file or the whole new one, never
  a mix: a temp file in the destination's own folder (same file system, so the rename is
  atomic), fsynced, renamed over the final name, and the folder fsynced so the rename
  itself survives a power cut.
* Temp names carry :data:`TEMP_MARK` so that leftovers of a killed writer can be recognised
  (:func:`clean_temp_files`).
* Files quantlab writes hold prompts and answers, which can be confidential: they are
  created ``0600`` (:data:`PRIVATE_FILE`), new folders ``0700`` (:func:`make_private_dirs`).
  An existing file keeps no looser mode than that (a rewrite creates a new ``0600`` inode).
* :func:`acquire_lock`: an exclusive ``flock`` on a lock file; the kernel drops it when the
  holder dies, even by ``kill -9``.

All writes go through :func:`write_all`, the one seam tests use to inject a full disk.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

try:  # POSIX; elsewhere two writers on one file are not prevented
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: Marker in every temp name; :func:`clean_temp_files` removes files that carry it.
TEMP_MARK = ".tmp-"
#: Mode of every file quantlab creates (before the umask, which can only tighten it).
PRIVATE_FILE = 0o600
#: Mode of every folder quantlab creates.
PRIVATE_DIR = 0o700


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a write may be short)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def sync_data(fd: int) -> None:
    """fdatasync where there is one (the metadata a later read needs is synced too)."""
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def temp_path_for(final: Path) -> Path:
    """A fresh hidden temp name next to ``final`` (pid + random: writers never collide)."""
    return final.with_name(f".{final.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def fsync_file(path: Path) -> None:
    """Flush a file's data to disk (it may have been written by another library)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Make renames inside ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def commit(tmp: Path, final: Path) -> None:
    """fsync ``tmp`` (written by someone else), rename it over ``final``, fsync the folder."""
    fsync_file(tmp)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def open_private(path: Path, flags: int) -> int:
    """``os.open`` creating the file ``0600``."""
    return os.open(path, flags | os.O_CLOEXEC, PRIVATE_FILE)


def atomic_write(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Replace ``path`` by ``data`` (created ``0600``) so that a reader or a crash sees the
    old file or the new one, never a mix. On an error (a full disk) the temp file is
    removed and ``path`` is untouched; the ``OSError`` is raised."""
    tmp = temp_path_for(path)
    fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        try:
            write_all(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if fsync:
        fsync_dir(path.parent)


def make_private_dirs(folder: Path) -> None:
    """Create ``folder`` and any missing parents ``0700`` (``mkdir -p`` would give the
    parents the default mode). Existing folders are left as they are."""
    missing: list[Path] = []
    p = folder
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            d.mkdir(mode=PRIVATE_DIR)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder")


def clean_temp_files(folder: Path, prefix: str = "") -> list[Path]:
    """Remove temp files left by killed writers (only those whose name starts with
    ``prefix``, when given). Call only while holding the folder's lock, so that no live
    writer's file is taken away."""
    removed: list[Path] = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if TEMP_MARK in entry.name and entry.name.startswith(prefix) and entry.is_file():
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


class LockBusy(Exception):
    """Another process holds the lock. ``holder`` is what it wrote there (its pid)."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is locked by pid {holder}")
        self.path = path
        self.holder = holder


def acquire_lock(
    path: Path, *, wait: bool = False, on_wait: Callable[[], None] | None = None
) -> int | None:
    """An exclusive ``flock`` on ``path`` (created ``0600``), holding our pid; returns its
    fd (None where there is no flock). Without ``wait``, a held lock raises
    :class:`LockBusy`; with it, ``on_wait`` is called once before blocking. Safe against a
    holder that unlinks the lock file on release (:func:`release_lock`): we retry until the
    file we locked is the one at ``path``."""
    if fcntl is None:  # pragma: no cover
        return None
    for _ in range(5):
        fd = open_private(path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise LockBusy(path, holder) from None
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:  # the holder may have unlinked the file between our open and our lock
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            with contextlib.suppress(OSError):  # the pid is a courtesy; a full disk is fine
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)
    raise OSError(f"{path}: could not lock it (the lock file keeps changing)")


def release_lock(path: Path, fd: int | None, *, unlink: bool = True) -> None:
    """Drop a lock from :func:`acquire_lock`; with ``unlink`` remove the file first, while
    still held, so nobody can have locked that inode meanwhile."""
    if fd is None:
        return
    if unlink:
        with contextlib.suppress(OSError):
            os.unlink(path)
    os.close(fd)


@contextlib.contextmanager
def locked(
    path: Path,
    *,
    wait: bool = True,
    unlink: bool = False,
    on_wait: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Hold :func:`acquire_lock` on ``path`` for the ``with`` block."""
    fd = acquire_lock(path, wait=wait, on_wait=on_wait)
    try:
        yield
    finally:
        release_lock(path, fd, unlink=unlink)
