"""Result folders written all at once: a reader (or a run killed at any moment) finds either
the previous complete set of files or the new complete set, never a mix (docs/reliability.md).

For an output folder ``DIR`` in ``PARENT``, everything happens beside it:

- ``PARENT/.DIR.lock`` is locked (``fcntl.lockf``) for the whole run; a second run into
  ``DIR`` is refused. The kernel drops the lock when its process ends, however it ends, so a
  killed run never blocks the next one (and forked workers do not inherit it).
- The files are written into ``PARENT/.DIR.tmp-XXXX`` and each is flushed to disk. That
  folder then takes ``DIR``'s place in one step: renamed to ``DIR`` when there is none, else
  exchanged with it (Linux ``renameat2(RENAME_EXCHANGE)``), and the previous set, now under
  the ``.tmp`` name, is removed.
- Where paths cannot be exchanged (another system or file system), the complete folder is
  renamed ``.DIR.new-XXXX``, the previous ``DIR`` ``.DIR.old-XXXX``, and the new one ``DIR``.
  Between those two renames ``DIR`` is absent, with both complete sets beside it.
- The next run into ``DIR``, holding the lock, finishes or undoes what a killed run left: a
  ``.tmp`` folder is incomplete (or an old set) and removed; with ``DIR`` missing, a ``.new``
  folder (complete) becomes ``DIR``, else an ``.old`` one is put back; the rest is removed.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import os
import re
import shutil
import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from .atomic import fsync_dir, fsync_file, temporary_of
from .errors import SeedoptError

_HELD: set[Path] = set()
"""Lock files this process holds."""


def os_reason(exc: OSError) -> str:
    """The operating system's one-line reason for ``exc`` ("No space left on device")."""
    if exc.errno:
        return os.strerror(exc.errno)
    return (str(exc).splitlines() or [type(exc).__name__])[0]


class OutputSet:
    """The output folder ``out`` of one run, replaced as a whole when the ``with`` block ends
    without an error; on an error (or a kill) ``out`` is left as it was.

    ``own`` names the files a result set may hold: an existing ``out`` holding anything else
    is refused rather than replaced. Entering checks that ``out`` can be written, before the
    caller computes anything."""

    def __init__(self, out: Path, own: Collection[str]) -> None:
        self.out = Path(os.path.realpath(out))
        self.own = frozenset(own)
        self.parent = self.out.parent
        name = re.escape(self.out.name)
        self._leftover = re.compile(rf"^\.{name}\.(tmp|new|old)-[0-9a-z_]+$")
        self.lock_path = self.parent / f".{self.out.name}.lock"
        self._lock_fd: int | None = None
        self.folder: Path | None = None

    # -- entering: lock, recover, check --------------------------------------------------

    def __enter__(self) -> OutputSet:
        cwd = Path.cwd().resolve()
        if self.out == cwd or self.out in cwd.parents:
            raise SeedoptError(
                f"--out {self.out} is (or holds) the current folder; an output folder is "
                "replaced as a whole, so give a folder of its own"
            )
        for ancestor in (self.parent, *self.parent.parents):
            if os.path.lexists(ancestor):
                if not ancestor.is_dir():
                    raise SeedoptError(f"--out {self.out}: {ancestor} is a file, not a folder")
                break
        try:
            self.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SeedoptError(
                f"cannot create the folder {self.parent} for --out {self.out}: {os_reason(exc)}"
            ) from None
        self._lock()
        try:
            self._recover()
            self._check_replaceable()
            try:
                self.folder = Path(
                    tempfile.mkdtemp(prefix=f".{self.out.name}.tmp-", dir=self.parent)
                )
                os.chmod(self.folder, 0o777 & ~_umask())  # as a plain mkdir would make it
            except OSError as exc:
                raise SeedoptError(f"cannot write in {self.parent}: {os_reason(exc)}") from None
        except BaseException:
            self._unlock()
            raise
        return self

    def _lock(self) -> None:
        """Take the lock, refusing if another process (or this one) holds it."""
        if self.lock_path in _HELD:  # POSIX locks do not exclude their own process
            raise SeedoptError(f"{self.out} is in use by another seedopt run (this process)")
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise SeedoptError(
                    f"cannot write in {self.parent} (for --out {self.out}): {os_reason(exc)}"
                ) from None
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_pid(fd)
                os.close(fd)
                if exc.errno not in (errno.EACCES, errno.EAGAIN):
                    raise SeedoptError(f"cannot lock {self.lock_path}: {os_reason(exc)}") from None
                raise SeedoptError(
                    f"{self.out} is in use by another seedopt run"
                    f"{f' (process {holder})' if holder else ''}; wait for it to end or "
                    "choose another --out"
                ) from None
            try:
                same = os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the previous holder removed it as we opened it: take a fresh one
        _HELD.add(self.lock_path)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass  # the pid only makes the refusal message more helpful
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            self.lock_path.unlink(missing_ok=True)  # while locked, so no one else holds it
            os.close(self._lock_fd)
            self._lock_fd = None
            _HELD.discard(self.lock_path)

    def _recover(self) -> None:
        """Finish or undo what a killed run into ``out`` left beside it."""
        leftovers: dict[str, list[Path]] = {"tmp": [], "new": [], "old": []}
        for entry in os.scandir(self.parent):
            m = self._leftover.match(entry.name)
            if m and entry.is_dir(follow_symlinks=False):
                leftovers[m.group(1)].append(Path(entry.path))
        if not os.path.lexists(self.out):
            for kind in ("new", "old"):  # a complete new set, else the previous one
                if leftovers[kind]:
                    os.rename(leftovers[kind].pop(), self.out)
                    fsync_dir(self.parent)
                    break
        for paths in leftovers.values():
            for path in paths:
                shutil.rmtree(path, ignore_errors=True)

    def _check_replaceable(self) -> None:
        if not os.path.lexists(self.out):
            return
        if not self.out.is_dir():
            raise SeedoptError(f"--out {self.out} is a file, not a folder")
        foreign = sorted(n for n in os.listdir(self.out) if not self._is_own(n))
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise SeedoptError(
                f"--out {self.out} holds {shown}, which seedopt did not write; an output "
                "folder is replaced as a whole, so choose an empty or new folder"
            )

    def _is_own(self, name: str) -> bool:
        """A result file, or an atomic temporary of one left by a killed run."""
        temporary = temporary_of(name)
        return (temporary[0] if temporary else name) in self.own

    # -- writing -------------------------------------------------------------------------

    @contextmanager
    def writing(self, what: str) -> Iterator[Path]:
        """The folder to write ``what`` (file names, for messages) into; an operating-system
        error (disk full, ...) becomes one line naming it, ``out`` untouched."""
        if self.folder is None:
            raise RuntimeError("OutputSet.writing outside its with block")
        try:
            yield self.folder
        except OSError as exc:
            raise SeedoptError(
                f"cannot write {what} in {self.out}: {os_reason(exc)}; {self._kept()}"
            ) from None

    def _kept(self) -> str:
        if os.path.lexists(self.out):
            return f"{self.out} is left as it was"
        return "nothing was written"

    def names(self) -> list[str]:
        """The files written so far, sorted."""
        return sorted(os.listdir(self.folder)) if self.folder is not None else []

    # -- leaving: publish or discard -----------------------------------------------------

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self._publish()
        finally:
            if self.folder is not None and self.folder.exists():
                shutil.rmtree(self.folder, ignore_errors=True)
            self._unlock()

    def _publish(self) -> None:
        """Flush every file, then put the new folder in the old one's place at once."""
        assert self.folder is not None
        old: Path | None = None
        try:
            for name in os.listdir(self.folder):
                fsync_file(self.folder / name)
            fsync_dir(self.folder)
            if not os.path.lexists(self.out):
                os.rename(self.folder, self.out)
            elif exchange(self.folder, self.out):
                old = self.folder  # now holds the previous set
            else:
                old = self._swap_by_renames()
            self.folder = None
            fsync_dir(self.parent)
        except OSError as exc:
            raise SeedoptError(
                f"cannot write the results in {self.out}: {os_reason(exc)}; {self._kept()}"
            ) from None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _swap_by_renames(self) -> Path:
        """Where paths cannot be exchanged: mark the new folder complete (``.new``), move the
        old one aside (``.old``), move the new one in; returns where the old one went."""
        assert self.folder is not None
        new = self._sibling("new")
        os.rename(self.folder, new)
        self.folder = new
        fsync_dir(self.parent)
        old = self._sibling("old")
        os.rename(self.out, old)
        try:
            os.rename(new, self.out)
        except OSError:
            os.rename(old, self.out)
            raise
        return old

    def _sibling(self, kind: str) -> Path:
        """A fresh name ``.DIR.KIND-XXXX`` beside ``out`` (free: the lock keeps other runs
        of ``out`` away)."""
        path = tempfile.mkdtemp(prefix=f".{self.out.name}.{kind}-", dir=self.parent)
        os.rmdir(path)
        return Path(path)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@functools.cache
def _renameat2() -> Any:
    """libc's ``renameat2`` (Linux, glibc 2.28 and later), or None."""
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    except OSError:
        return None


def exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` in one atomic step (``renameat2(RENAME_EXCHANGE)``);
    False, with nothing changed, where the system or the file system cannot."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _read_pid(fd: int) -> int | None:
    """The pid the lock's holder wrote into the lock file, if readable."""
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
