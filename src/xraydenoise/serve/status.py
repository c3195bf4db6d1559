"""The node's status: counts of the queue folders, as JSON over HTTP or on the command line.

The counts are read from the folders themselves, so they survive a restart and agree with
what an operator sees with ``ls``: ``queued`` (received, not yet at the destination),
``done`` (accepted by the destination), ``failed`` (in dead/, each with its reason).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .queue import count_states


def status_document(root: Path, extra: dict | None = None) -> dict:
    """The status as a JSON-ready dict: the queue counts plus ``extra`` (destination, uptime)."""
    return {**count_states(root).as_dict(), **(extra or {})}


def start_status_server(host: str, port: int, root: Path, extra: dict) -> ThreadingHTTPServer:
    """Serve ``GET /status`` (and ``/``) as JSON in a background thread; returns the server.

    Raises
    ------
    OSError
        The address cannot be bound.
    """
    started = time.time()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.split("?", 1)[0] not in ("/", "/status"):
                self.send_error(404, "only /status is served")
                return
            body = json.dumps(status_document(root, {**extra, "uptime_s": round(time.time() - started, 1)})).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args) -> None:  # noqa: A002 - polling must not flood the log
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="status-http", daemon=True).start()
    return server
