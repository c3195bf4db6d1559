"""The running node: queue, SCP, denoise workers, sender and status endpoint, started and stopped together."""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from xraydenoise.errors import ConfigError

from .queue import DurableQueue
from .sender import Destination

if TYPE_CHECKING:  # pragma: no cover
    import ssl

log = logging.getLogger("xraydenoise.serve")


def _bind_error(what: str, host: str, port: int, exc: OSError) -> ConfigError:
    reason = "the port is in use" if exc.errno == 98 else (exc.strerror or str(exc))
    return ConfigError(f"cannot listen for {what} on {host}:{port}: {reason}")


@dataclass
class Node:
    """Everything ``xraydenoise serve`` runs, from checked options.

    ``sigma`` is on the [0, 1] scale; ``server_tls`` / ``client_tls`` are ``ssl.SSLContext``
    objects or None.
    """

    aet: str
    host: str
    port: int
    destination: Destination
    queue_dir: Path
    allow: list[str] | None
    method: str
    sigma: float | None
    workers: int = 1
    status_port: int | None = None
    retry_max_wait: float = 30.0
    server_tls: ssl.SSLContext | None = None
    client_tls: ssl.SSLContext | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """Serve until SIGTERM or SIGINT; the queue keeps whatever is not finished.

        Raises
        ------
        XRayDenoiseError
            Before anything listens: the queue folder is unusable or taken, the method
            cannot be loaded, a port cannot be bound.
        """
        from xraydenoise.denoisers import get_denoiser

        from .scp import build_server_ae, start_scp
        from .sender import Sender
        from .status import start_status_server
        from .worker import DenoiseWorker

        queue = DurableQueue(self.queue_dir)
        queue.lock()
        try:
            get_denoiser(self.method)  # a bad method or weights file fails now, not per instance
            recovered = queue.recover()
            wake, ready = threading.Event(), threading.Event()
            ae = build_server_ae(self.aet, self.allow)
            try:
                server = start_scp(ae, self.host, self.port, queue, wake.set, self.server_tls)
            except OSError as exc:
                raise _bind_error("DICOM", self.host, self.port, exc) from None
            http = None
            if self.status_port is not None:
                try:
                    http = start_status_server("127.0.0.1", self.status_port, self.queue_dir,
                                               {"aet": self.aet, "destination": str(self.destination), "method": self.method})
                except OSError as exc:
                    server.shutdown()
                    raise _bind_error("the status endpoint", "127.0.0.1", self.status_port, exc) from None
            tls_args = (self.client_tls, self.destination.host) if self.client_tls is not None else None
            threads: list[threading.Thread] = [DenoiseWorker(queue, self.method, self.sigma, {}, wake, ready, self.stop, name=f"denoise-{i}")
                                               for i in range(self.workers)]
            threads.append(Sender(queue, self.destination, self.aet, ready, self.stop, tls_args=tls_args,
                                  max_wait=self.retry_max_wait))
            for thread in threads:
                thread.start()
            self._announce(queue, recovered)
            self._wait_for_signal()
            log.info("stopping")
            server.shutdown()
            if http is not None:
                http.shutdown()
            for thread in threads:
                thread.join(timeout=60)
            counts = queue.counts().as_dict()
            log.info("stopped: %d queued (kept for the next start), %d done, %d failed",
                     counts["queued"], counts["done"], counts["failed"])
        finally:
            queue.unlock()

    def _announce(self, queue: DurableQueue, recovered: int) -> None:
        counts = queue.counts().as_dict()
        allowed = ", ".join(self.allow) if self.allow else "any AE title"
        tls = " over TLS" if self.server_tls is not None else ""
        log.info("listening as %s on %s:%d%s (from %s); denoising with %s; sending to %s; queue %s: %d queued, %d done, %d failed",
                 self.aet, self.host, self.port, tls, allowed, self.method, self.destination, self.queue_dir,
                 counts["queued"], counts["done"], counts["failed"])
        if recovered:
            log.info("%d instance(s) interrupted by the last stop are queued again", recovered)
        if self.status_port is not None:
            log.info("status at http://127.0.0.1:%d/status", self.status_port)

    def _wait_for_signal(self) -> None:
        def handler(signum, frame):
            self.stop.set()

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            while not self.stop.wait(0.5):
                pass
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
