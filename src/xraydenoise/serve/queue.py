"""The node's durable queue: one folder per state, and a rename for every change of state.

Layout under the queue folder::

    incoming/    received instances, written and fsynced before C-STORE answers success
    processing/  the instance a worker is denoising (moved back to incoming/ on restart)
    outgoing/    derived instances waiting to be sent to the destination
    done/        derived instances the destination accepted
    dead/        instances that failed for good, each with ``<name>.reason`` saying why
    .lock        held by the running node, so two nodes never share one queue

Every file is named after the received instance's SOP Instance UID (``<uid>.dcm``), in every
folder, so one name follows an instance from arrival to done or dead. A rename within one file
system is atomic, and the folder is fsynced after it, so a kill -9 at any moment leaves each
instance in exactly one folder, whole. What a restart redoes (a denoise interrupted half way,
a C-STORE whose answer was lost) produces the same derived SOP Instance UID, so the
destination sees the same instance again, never a second one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from xraydenoise.errors import XRayDenoiseError
from xraydenoise.io._atomic import PARTIAL_SUFFIX, _fsync_dir, atomic_write

STATES = ("incoming", "processing", "outgoing", "done", "dead")
SUFFIX = ".dcm"
REASON_SUFFIX = ".reason"
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


class QueueError(XRayDenoiseError):
    """The queue folder cannot be used: not writable, or held by another running node."""


def instance_name(sop_instance_uid: str) -> str:
    """File name of an instance: its UID when it is a well-formed one, else a digest of it.

    A UID comes from the network; anything but digits and dots (a ``/``, ``..``) must never
    reach a path.
    """
    uid = str(sop_instance_uid).strip().rstrip("\x00")
    if _UID.fullmatch(uid) and len(uid) <= 64:
        return uid + SUFFIX
    return "x" + hashlib.sha256(uid.encode("utf-8", "backslashreplace")).hexdigest()[:40] + SUFFIX


@dataclass(frozen=True)
class Counts:
    """How many instances are in each state."""

    incoming: int
    processing: int
    outgoing: int
    done: int
    dead: int

    def as_dict(self) -> dict:
        """``queued`` (waiting to be denoised or sent), ``done``, ``failed`` and the detail."""
        return {
            "queued": self.incoming + self.processing + self.outgoing,
            "done": self.done,
            "failed": self.dead,
            "incoming": self.incoming,
            "processing": self.processing,
            "outgoing": self.outgoing,
        }


class DurableQueue:
    """The queue folder of one running node.

    Parameters
    ----------
    root : Path
        The queue folder; created with its state folders when missing.

    Raises
    ------
    QueueError
        The folder cannot be created or written, or another node holds it.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock_fd: int | None = None
        try:
            for state in STATES:
                (self.root / state).mkdir(parents=True, exist_ok=True)
            probe = atomic_write(self.root / ".write-test", lambda fh: fh.write(b"ok"))
            probe.unlink()
        except (OSError, XRayDenoiseError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise QueueError(f"queue folder {self.root} is not writable ({reason})") from None

    def folder(self, state: str) -> Path:
        return self.root / state

    # ------------------------------------------------------------------ ownership

    def lock(self) -> None:
        """Claim the queue for this process; refuse when another node runs on it.

        The lock is an flock on ``.lock``: the kernel drops it when the holder dies, even by
        kill -9, so a restart never finds a stale lock.
        """
        import fcntl

        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise QueueError(f"queue folder {self.root} is in use by another xraydenoise serve (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def recover(self) -> int:
        """Undo what a killed node left half done; returns how many instances go back to incoming/.

        Run once, under the lock, before any worker starts: temporary files can then only be
        a dead writer's, and an instance in processing/ was interrupted while being denoised.
        """
        for state in STATES:
            for entry in os.scandir(self.folder(state)):
                if entry.name.startswith(".") and entry.name.endswith(PARTIAL_SUFFIX):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
        moved = 0
        for path in self._files("processing"):
            os.replace(path, self.folder("incoming") / path.name)
            moved += 1
        if moved:
            _fsync_dir(self.folder("incoming"))
        return moved

    # ------------------------------------------------------------------ transitions

    def put(self, sop_instance_uid: str, data: bytes) -> Path:
        """Store a received instance durably in incoming/ (file and folder fsynced).

        The same UID received again replaces the earlier copy: a sender resends after a lost
        answer, and the derived instance is the same either way.
        """
        return atomic_write(self.folder("incoming") / instance_name(sop_instance_uid), lambda fh: fh.write(data))

    def claim(self) -> Path | None:
        """Move the oldest received instance to processing/ and return its new path, or None."""
        for path in self._oldest_first("incoming"):
            target = self.folder("processing") / path.name
            try:
                os.replace(path, target)
            except FileNotFoundError:  # replaced by a resend between the listing and here
                continue
            _fsync_dir(self.folder("processing"))
            return target
        return None

    def outgoing_path(self, claimed: Path) -> Path:
        """Where the derived instance of a claimed instance is written."""
        return self.folder("outgoing") / claimed.name

    def finish_denoise(self, claimed: Path) -> None:
        """The derived instance is in outgoing/: the received one is no longer needed."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(claimed)
        _fsync_dir(self.folder("processing"))

    def pending_sends(self) -> list[Path]:
        """The derived instances waiting in outgoing/, oldest first."""
        return self._oldest_first("outgoing")

    def mark_sent(self, path: Path) -> None:
        os.replace(path, self.folder("done") / path.name)
        _fsync_dir(self.folder("done"))

    def to_dead(self, path: Path, reason: str) -> Path:
        """Move ``path`` to dead/ with a ``.reason`` file beside it; returns the new path."""
        target = self.folder("dead") / path.name
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        atomic_write(target.with_name(target.name + REASON_SUFFIX), lambda fh: fh.write(f"{stamp} {reason}\n".encode()))
        os.replace(path, target)
        _fsync_dir(self.folder("dead"))
        return target

    # ------------------------------------------------------------------ looking

    def counts(self) -> Counts:
        return count_states(self.root)

    def _files(self, state: str) -> list[Path]:
        return _instances(self.folder(state))

    def _oldest_first(self, state: str) -> list[Path]:
        stamped = []
        for path in self._files(state):
            with contextlib.suppress(FileNotFoundError):
                stamped.append((path.stat().st_mtime_ns, path.name, path))
        return [path for _, _, path in sorted(stamped)]


def _instances(folder: Path) -> list[Path]:
    """Instance files in ``folder``, leaving out temporary files and reasons."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    return [Path(e.path) for e in entries if e.name.endswith(SUFFIX) and not e.name.startswith(".")]


def count_states(root: Path) -> Counts:
    """How many instances a queue folder holds in each state, whether a node runs on it or not.

    Raises
    ------
    QueueError
        ``root`` is not a queue folder.
    """
    root = Path(root)
    if not (root / "incoming").is_dir():
        raise QueueError(f"{root} is not a queue folder (no incoming/ inside)")
    return Counts(*(len(_instances(root / state)) for state in STATES))
