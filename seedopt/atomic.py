"""Atomic, durable file writes: a file is either the old one or the complete new one, never
partial, and once the write returns it survives a crash of the machine (data and name are
flushed to disk with ``fsync``)."""

from __future__ import annotations

import errno
import io
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import SeedoptError

_TEMPORARY = re.compile(r"^\.(.+)\.tmp-(\d+)(?:-[0-9a-f]+)?$")
"""``.NAME.tmp-PID-TOKEN``: a temporary of ``atomic_path`` (older ones lack the token)."""


def writable_folder(folder: Path, what: str) -> Path:
    """``folder`` created (with its parents) and writable by this process, or one
    ``SeedoptError`` naming ``what`` asked for it (``--out /d/r.h5``)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SeedoptError(f"{what}: cannot create {folder}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SeedoptError(f"{what}: cannot write in {folder}")
    return folder


def fsync_file(path: Path) -> None:
    """Flush a closed file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (names created, renamed or removed) to disk."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot sync a folder; nothing more to do there
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it only if the block succeeds.

    The block writes (and closes) the temporary; it is then flushed to disk, renamed over
    ``path``, and the folder is flushed, so a crash at any moment leaves the old file or the
    new one. A temporary left by a killed process is named ``.NAME.tmp-PID-TOKEN``
    (``remove_stale_temporaries`` removes it)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_h5(path: Path) -> Iterator[Any]:
    """An ``h5py.File`` built in memory, written to ``path`` by ``atomic_path`` when the block
    ends. The HDF5 library never meets a failed write (on a full disk it leaves errors at
    close and can crash the process); the disk's error is a plain ``OSError`` here."""
    import h5py

    image = io.BytesIO()
    with h5py.File(image, "w") as f:
        yield f
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(image.getbuffer())


def temporary_of(name: str) -> tuple[str, int] | None:
    """For the name of an ``atomic_path`` temporary, the name it stands for and the pid of
    its writer; None for any other name."""
    m = _TEMPORARY.match(name)
    return (m.group(1), int(m.group(2))) if m else None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(folder: Path, name: str | None = None) -> list[Path]:
    """Remove the temporaries of ``atomic_path`` in ``folder`` (only those standing for
    ``name``, when given) whose process has ended (a killed run); those of running processes
    are kept. Returns what was removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        temporary = temporary_of(entry.name)
        if (
            temporary
            and (name is None or temporary[0] == name)
            and entry.is_file(follow_symlinks=False)
            and not _running(temporary[1])
        ):
            try:
                os.unlink(entry.path)
            except OSError:
                continue
            removed.append(Path(entry.path))
    return removed
