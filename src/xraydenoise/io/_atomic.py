"""Atomic file replacement shared by every writer.

A crash, a full disk or a bad image must never leave a half-written radiograph under the
final name (a reader would take it for a result), nor damage a file that was already there.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from xraydenoise.errors import ImageWriteError
from xraydenoise.io._messages import one_line

#: Temporary files are hidden and carry this suffix so that a folder scan never picks them up.
PARTIAL_SUFFIX = ".partial"
#: Characters of the target's name kept in its temporary name: a file name may be 255 bytes,
#: and the temporary one adds a dot, the writer's process id, a random part and the suffix.
_NAME_CHARS_IN_PARTIAL = 180


def partial_prefix(target: Path) -> str:
    """Start of the name of every temporary file written for ``target`` (hidden, in its folder)."""
    return f".{Path(target).name[:_NAME_CHARS_IN_PARTIAL]}."


def _lock(fd: int, *, wait: bool) -> bool:
    """Exclusive advisory lock on an open file; held until the descriptor is closed, also when
    the process is killed. Where there are no POSIX locks, claims nothing and succeeds."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_partials(target: Path) -> int:
    """Delete temporary files that a killed writer left for ``target``; returns how many.

    A temporary file is stale when the process named in it is gone and nobody holds its lock,
    so a second run writing into the same folder never loses a file that is being written.
    """
    target = Path(target)
    prefix = partial_prefix(target)
    removed = 0
    try:
        entries = [e for e in os.scandir(target.parent) if e.name.startswith(prefix) and e.name.endswith(PARTIAL_SUFFIX)]
    except OSError:  # no folder yet: nothing to clean
        return 0
    for entry in entries:
        pid_text = entry.name[len(prefix):].split("-", 1)[0]
        if pid_text.isdigit() and _process_alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            fd = os.open(entry.path, os.O_RDONLY)
            try:
                if _lock(fd, wait=False):
                    os.unlink(entry.path)
                    removed += 1
            finally:
                os.close(fd)
    return removed


def _new_file_mode(target: Path) -> int:
    """Permission bits for the output: those of the file it replaces, else 0o666 minus umask.

    ``mkstemp`` creates 0o600 files; kept as is, a result would be unreadable by the
    colleagues who can read the input.
    """
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        pass
    # os.umask can only be read by setting it; the window is a few microseconds.
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible everywhere (Windows, some network
    # file systems) and not worth failing a finished write for.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(target: Path, write: Callable[[BinaryIO], object], *, overwrite: bool = True) -> Path:
    """Write ``target`` through a hidden temporary file in the same folder, then rename it.

    Parameters
    ----------
    target : Path
        Final path. Its parent folders are created.
    write : callable
        Called with a seekable binary file object open for writing; writes the content.
    overwrite : bool
        If False and ``target`` exists (even if it appears while writing), fail.

    Returns
    -------
    Path
        ``target``.

    Raises
    ------
    ImageWriteError
        ``"<target>: <reason>"``; the temporary file is removed and an existing
        ``target`` is left untouched.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "a" / "hello.txt"
    >>> atomic_write(out, lambda fh: fh.write(b"hi")).read_bytes()
    b'hi'
    """
    target = Path(target)
    if target.is_dir():
        raise ImageWriteError(f"{target}: is a directory")
    if not overwrite and target.exists():
        raise ImageWriteError(f"{target}: already exists (overwrite is off)")
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageWriteError(f"{target}: cannot create folder {folder}: {one_line(exc)}") from exc

    tmp_name: str | None = None
    lock_fd: int | None = None
    try:
        # The process id in the name and a lock held until the rename tell a concurrent run's
        # cleanup (remove_stale_partials) that this file is alive.
        lock_fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f"{partial_prefix(target)}{os.getpid()}-", suffix=PARTIAL_SUFFIX)
        _lock(lock_fd, wait=True)
        # Reopened by name: some encoders (tifffile) want a file object whose .name is a path.
        with open(tmp_name, "r+b") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, _new_file_mode(target))
        if overwrite:
            os.replace(tmp_name, target)
        else:
            _publish_no_clobber(tmp_name, target)
        tmp_name = None
    except ImageWriteError:
        raise
    except Exception as exc:  # any writer or OS failure becomes one user-facing line
        raise ImageWriteError(f"{target}: {one_line(exc)}") from exc
    finally:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
        if lock_fd is not None:
            os.close(lock_fd)
    _fsync_dir(folder)
    return target


def _publish_no_clobber(tmp_name: str, target: Path) -> None:
    # os.replace would silently clobber a file created since the exists() check; a hard
    # link fails atomically instead. File systems without hard links fall back to the check.
    try:
        os.link(tmp_name, target)
    except FileExistsError:
        raise ImageWriteError(f"{target}: already exists (overwrite is off)") from None
    except OSError:
        if target.exists():
            raise ImageWriteError(f"{target}: already exists (overwrite is off)") from None
        os.replace(tmp_name, target)
        return
    os.unlink(tmp_name)


def atomic_write_text(target: Path, text: str) -> Path:
    """:func:`atomic_write` of UTF-8 text (reports, cards, histories, configs).

    >>> import tempfile, pathlib
    >>> atomic_write_text(pathlib.Path(tempfile.mkdtemp()) / "a.txt", "é").read_text(encoding="utf-8")
    'é'
    """
    data = text.encode("utf-8")
    return atomic_write(Path(target), lambda fh: fh.write(data))
