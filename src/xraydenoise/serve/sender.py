"""Send derived instances to the destination by C-STORE, with back-off while it is down.

A destination that cannot be reached (refused connection, rejected or aborted association, no
answer) is retried forever, waiting 1, 2, 4 ... seconds up to a ceiling: PACS go down for
maintenance, and the queue on disk is there to outlast them. A destination that answers a
C-STORE with a failure status refuses that one instance; after ``max_refusals`` such answers it
goes to dead/ with the status; between those answers it waits as long as for a down destination,
and the other instances go on meanwhile.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from xraydenoise.errors import ConfigError
from xraydenoise.io._messages import one_line

from .queue import DurableQueue

log = logging.getLogger("xraydenoise.serve")

#: C-STORE warning statuses: the instance is stored (coerced, elements discarded, mismatch).
STORED_WITH_WARNING = (0xB000, 0xB006, 0xB007)
_AET_CHARS = re.compile(r"[\x20-\x5b\x5d-\x7e]{1,16}")  # printable ASCII without backslash
_DESTINATION = re.compile(r"(?P<aet>[^@]+)@(?P<host>\[[^\]]+\]|[^:@]+):(?P<port>[0-9]{1,5})")


def check_aet(value: str, what: str) -> str:
    """``value`` as a valid AE title (1-16 printable ASCII characters, no backslash, not blank)."""
    if not _AET_CHARS.fullmatch(value or "") or not value.strip():
        raise ConfigError(f"{what} must be an AE title of 1 to 16 printable ASCII characters without backslash, got {value!r}")
    return value.strip()


def check_port(value: int, what: str) -> int:
    if not 1 <= value <= 65535:
        raise ConfigError(f"{what} must be a TCP port from 1 to 65535, got {value}")
    return value


@dataclass(frozen=True)
class Destination:
    """Where derived instances go: an AE title at a host and port."""

    aet: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.aet}@{self.host}:{self.port}"


def parse_destination(text: str) -> Destination:
    """``AET@HOST:PORT`` (an IPv6 host in brackets) -> :class:`Destination`.

    Examples
    --------
    >>> parse_destination("PACS@127.0.0.1:4242")
    Destination(aet='PACS', host='127.0.0.1', port=4242)
    """
    match = _DESTINATION.fullmatch(text.strip())
    if not match:
        raise ConfigError(f"--forward must be AET@HOST:PORT (e.g. PACS@10.0.0.5:104), got {text!r}")
    aet = check_aet(match["aet"], "the AE title in --forward")
    port = check_port(int(match["port"]), "the port in --forward")
    return Destination(aet, match["host"].strip("[]"), port)


class Sender(threading.Thread):
    """Send what is in outgoing/, oldest first, and move each accepted instance to done/.

    Parameters
    ----------
    queue : DurableQueue
    destination : Destination
    calling_aet : str
        This node's AE title, as the destination sees it.
    ready, stop : threading.Event
        ``ready`` wakes the sender when a derived instance is written; ``stop`` ends it.
    tls_args : tuple, optional
        ``(ssl.SSLContext, server_hostname)`` for a TLS association.
    max_wait : float
        Ceiling of the back-off, in seconds.
    max_refusals : int
        Failure statuses for one instance before it goes to dead/.
    """

    BATCH = 32  # instances per association: few handshakes, and a bounded context list

    def __init__(self, queue: DurableQueue, destination: Destination, calling_aet: str, ready: threading.Event,
                 stop: threading.Event, *, tls_args=None, max_wait: float = 30.0, max_refusals: int = 5) -> None:
        super().__init__(name="sender", daemon=True)
        self.queue, self.destination, self.calling_aet = queue, destination, calling_aet
        self.ready, self.stop_event, self.tls_args = ready, stop, tls_args
        self.max_wait, self.max_refusals = max_wait, max_refusals
        #: name -> (failure statuses so far, time.monotonic() of the next attempt)
        self.refusals: dict[str, tuple[int, float]] = {}
        self.was_down = False

    def _backoff(self, attempt: int) -> float:
        """Seconds before attempt ``attempt + 1``: 1, 2, 4 ... up to ``max_wait``."""
        return min(2.0 ** (attempt - 1), self.max_wait)

    def run(self) -> None:
        failed_attempts = 0  # in a row, to an unreachable destination
        while not self.stop_event.is_set():
            now = time.monotonic()
            waiting = self.queue.pending_sends()
            items = [p for p in waiting if self.refusals.get(p.name, (0, now))[1] <= now][: self.BATCH]
            if not items:
                # Nothing, or only instances refused a moment ago: wait for new work or their turn.
                retries = [self.refusals[p.name][1] - now for p in waiting if p.name in self.refusals]
                self.ready.wait(max(0.05, min([1.0, *retries])))
                self.ready.clear()
                continue
            if self.send_batch(items):
                failed_attempts = 0
                continue
            self.was_down = True
            failed_attempts += 1
            delay = self._backoff(failed_attempts)
            log.warning("destination %s unreachable; %d instance(s) waiting, retrying in %.0f s",
                        self.destination, len(waiting), delay)
            self.stop_event.wait(delay)

    def _contexts(self, datasets: list) -> list:
        from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
        from pynetdicom.presentation import build_context

        wanted: dict[str, list[str]] = {}
        for ds in datasets:
            syntax = UID(str(ds.file_meta.TransferSyntaxUID))
            # A compressed instance also offers Explicit VR Little Endian: a destination
            # without that codec gets it decompressed rather than not at all.
            for uid in ([syntax, ExplicitVRLittleEndian] if syntax.is_compressed else [syntax, ExplicitVRLittleEndian, ImplicitVRLittleEndian]):
                syntaxes = wanted.setdefault(str(ds.SOPClassUID), [])
                if str(uid) not in syntaxes:
                    syntaxes.append(str(uid))
        # One context per (class, syntax): the acceptor may then take each syntax separately.
        return [build_context(sop_class, syntax) for sop_class, syntaxes in wanted.items() for syntax in syntaxes][:128]

    def send_batch(self, items: list[Path]) -> bool:
        """Send ``items`` on one association; False when the destination could not be reached."""
        import pydicom
        from pynetdicom import AE

        loaded = []
        for path in items:
            try:
                loaded.append((path, pydicom.dcmread(path)))
            except Exception as exc:  # noqa: BLE001 - a damaged file must not block the rest
                self._dead(path, f"cannot read the derived instance: {one_line(exc)}")
        if not loaded:
            return True
        ae = AE(ae_title=self.calling_aet)
        ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = 30, 60, 60
        ae.requested_contexts = self._contexts([ds for _, ds in loaded])
        kwargs = {"tls_args": self.tls_args} if self.tls_args else {}
        try:
            assoc = ae.associate(self.destination.host, self.destination.port, ae_title=self.destination.aet, **kwargs)
        except Exception as exc:  # noqa: BLE001 - DNS failure, TLS handshake: the same as down
            log.debug("association with %s failed: %s", self.destination, one_line(exc))
            return False
        if not assoc.is_established:
            return False
        if self.was_down:
            self.was_down = False
            log.info("destination %s reachable again", self.destination)
        try:
            for path, ds in loaded:
                if self.stop_event.is_set():
                    break
                if not self._send_one(assoc, path, ds):
                    return False
        finally:
            if assoc.is_established:
                assoc.release()
        return True

    def _send_one(self, assoc, path: Path, ds) -> bool:
        """C-STORE one instance; False when the association broke (the instance stays queued)."""
        try:
            status = assoc.send_c_store(ds)
        except ValueError:
            # No accepted context for its compressed syntax: send it decompressed instead.
            try:
                ds.decompress()
                status = assoc.send_c_store(ds)
            except Exception as exc:  # noqa: BLE001
                return self._refused(path, ds, f"the destination accepts no transfer syntax for it ({one_line(exc)})")
        if not status or "Status" not in status:  # aborted, or no answer within the timeout
            return False
        code = int(status.Status)
        if code == 0x0000 or code in STORED_WITH_WARNING:
            self.queue.mark_sent(path)
            self.refusals.pop(path.name, None)
            note = f" (warning status 0x{code:04X})" if code else ""
            log.info("sent %s as %s to %s%s", path.stem, ds.SOPInstanceUID, self.destination, note)
            return True
        comment = str(status.get("ErrorComment", "") or "").strip()
        return self._refused(path, ds, f"the destination answered status 0x{code:04X}" + (f": {comment}" if comment else ""))

    def _refused(self, path: Path, ds, reason: str) -> bool:
        count = self.refusals.get(path.name, (0, 0.0))[0] + 1
        if count >= self.max_refusals:
            self.refusals.pop(path.name, None)
            self._dead(path, f"{reason} ({count} times)")
            return True
        wait = self._backoff(count)
        self.refusals[path.name] = (count, time.monotonic() + wait)
        log.warning("%s refused by %s, attempt %d of %d, retrying in %.0f s: %s",
                    path.stem, self.destination, count, self.max_refusals, wait, reason)
        return True

    def _dead(self, path: Path, reason: str) -> None:
        target = self.queue.to_dead(path, f"not sent to {self.destination}: {reason}")
        log.error("failed %s: not sent to %s: %s (moved to %s)", path.stem, self.destination, reason, target)
