"""Denoise queued instances with exactly the batch's code: :func:`xraydenoise.batch.process_one`.

So a derived instance from the node and one from ``xraydenoise denoise`` on the same file are
the same object: same pixels, header rules, derived series and SOP Instance UIDs.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from xraydenoise.errors import XRayDenoiseError
from xraydenoise.io._messages import one_line

from .queue import DurableQueue

log = logging.getLogger("xraydenoise.serve")


class DenoiseWorker(threading.Thread):
    """Take instances from incoming/, denoise them into outgoing/, dead-letter what fails.

    Parameters
    ----------
    queue : DurableQueue
    method, sigma, options
        As for :func:`xraydenoise.batch.process_one`.
    wake : threading.Event
        Set by the SCP when an instance arrives, so the worker need not poll fast.
    ready : threading.Event
        Set by this worker when a derived instance is ready, to wake the sender.
    stop : threading.Event
        Set to end the loop after the current instance.
    """

    def __init__(self, queue: DurableQueue, method: str, sigma: float | None, options: dict,
                 wake: threading.Event, ready: threading.Event, stop: threading.Event, name: str = "denoise") -> None:
        super().__init__(name=name, daemon=True)
        self.queue, self.method, self.sigma, self.options = queue, method, sigma, options
        self.wake, self.ready, self.stop_event = wake, ready, stop

    def run(self) -> None:
        while not self.stop_event.is_set():
            claimed = self.queue.claim()
            if claimed is None:
                self.wake.wait(1.0)
                self.wake.clear()
                continue
            self.process(claimed)

    def process(self, claimed: Path) -> bool:
        """Denoise one claimed instance; True when its derived instance is in outgoing/."""
        from xraydenoise.batch import Job, process_one

        started = time.monotonic()
        try:
            process_one(Job(claimed, self.queue.outgoing_path(claimed)), self.method, self.sigma, self.options)
        except XRayDenoiseError as exc:
            self._dead(claimed, f"cannot denoise the received instance: {exc}")
            return False
        except Exception as exc:  # noqa: BLE001 - one bad instance must not stop the node
            self._dead(claimed, f"cannot denoise the received instance: unexpected error: {type(exc).__name__}: {one_line(exc)}")
            return False
        self.queue.finish_denoise(claimed)
        log.debug("denoised %s in %.2f s", claimed.stem, time.monotonic() - started)
        self.ready.set()
        return True

    def _dead(self, claimed: Path, reason: str) -> None:
        # The message names the file in processing/; the dead-letter copy is what matters.
        reason = reason.replace(str(claimed), claimed.name)
        target = self.queue.to_dead(claimed, reason)
        log.error("failed %s: %s (moved to %s)", claimed.stem, reason, target)
