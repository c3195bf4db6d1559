"""``xraydenoise serve``: run the DICOM node until SIGTERM or Ctrl-C.

This module is imported by the command line at start-up, so it imports only typer, rich and
the standard library at the top; pynetdicom, pydicom and the denoisers load when the node starts.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer

from ..terminal import fail as _fail

log = logging.getLogger("xraydenoise.serve")


def _configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
    # pynetdicom reports every refused connection at ERROR; the node's own lines say it once,
    # with the retry delay, so its messages are shown only when asked for.
    logging.getLogger("pynetdicom").setLevel(logging.DEBUG if verbose else logging.CRITICAL)
    if verbose:
        logging.getLogger("pynetdicom").addHandler(handler)


def _tls_contexts(cert: Optional[Path], key: Optional[Path], ca: Optional[Path], forward_tls: bool):
    """(server context or None, client context or None) from the TLS options."""
    import ssl

    from xraydenoise.errors import ConfigError

    if (cert is None) != (key is None):
        raise ConfigError("--tls-cert and --tls-key go together")
    if forward_tls and ca is None:
        raise ConfigError("--forward-tls needs --tls-ca, the authority that signed the destination's certificate")
    server = client = None
    try:
        if cert is not None:
            server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server.load_cert_chain(cert, key)
            if ca is not None:  # mutual TLS: only senders with a certificate from this CA
                server.load_verify_locations(ca)
                server.verify_mode = ssl.CERT_REQUIRED
        if forward_tls:
            client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
            if cert is not None:
                client.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"TLS certificate, key or CA cannot be loaded: {getattr(exc, 'strerror', None) or exc}") from None
    return server, client


def _parse_allow(allow: Optional[str]) -> Optional[list[str]]:
    from .sender import check_aet

    if allow is None:
        return None
    titles = [check_aet(part.strip(), "each AE title in --allow") for part in allow.split(",") if part.strip()]
    if not titles:
        from xraydenoise.errors import ConfigError

        raise ConfigError("--allow needs at least one AE title")
    return titles


def serve(
    aet: Optional[str] = typer.Option(None, "--aet", help="This node's AE title (what senders call)."),
    port: Optional[int] = typer.Option(None, "--port", help="TCP port for DICOM (C-ECHO, C-STORE)."),
    forward: Optional[str] = typer.Option(None, "--forward", help="Destination of the derived instances: AET@HOST:PORT."),
    queue_dir: Path = typer.Option(..., "--queue", help="Queue folder (incoming/ processing/ outgoing/ done/ dead/); created if missing."),
    allow: Optional[str] = typer.Option(None, "--allow", help="Comma-separated calling AE titles that may associate (default: any)."),
    method: str = typer.Option("network", "--method", "-m", help="Denoising method, as for `denoise`."),
    sigma: Optional[float] = typer.Option(None, help="Noise std in 8-bit grey levels, as for `denoise` (default: blind or estimated)."),
    host: str = typer.Option("0.0.0.0", "--host", help="Address to listen on (127.0.0.1: this machine only)."),
    workers: int = typer.Option(1, "--workers", help="Denoising threads."),
    status_port: Optional[int] = typer.Option(None, "--status-port", help="Serve GET /status (JSON counts) on 127.0.0.1 at this port."),
    status: bool = typer.Option(False, "--status", help="Print the queue's counts (queued, done, failed) as JSON and exit."),
    retry_max_wait: float = typer.Option(30.0, "--retry-max-wait", help="Longest wait between attempts to reach a down destination, in seconds."),
    tls_cert: Optional[Path] = typer.Option(None, "--tls-cert", help="PEM certificate: accept DICOM over TLS (with --tls-key)."),
    tls_key: Optional[Path] = typer.Option(None, "--tls-key", help="PEM private key of --tls-cert."),
    tls_ca: Optional[Path] = typer.Option(
        None, "--tls-ca", help="PEM CA: senders must present a certificate it signed; with --forward-tls, verifies the destination."
    ),
    forward_tls: bool = typer.Option(False, "--forward-tls", help="Send to the destination over TLS (needs --tls-ca)."),
    verbose: bool = typer.Option(False, "--verbose", help="Also log each denoise and pynetdicom's messages."),
) -> None:
    """Run a DICOM node: receive radiographs (C-STORE), denoise them, send the derived series on.

    Every received instance is on disk before the sender hears success; a restart after a crash
    finishes the queue. One log line per instance: sent, or failed with the reason (dead/).
    """
    from xraydenoise.errors import XRayDenoiseError

    if status:
        from .status import status_document

        try:
            typer.echo(json.dumps(status_document(queue_dir)))
        except XRayDenoiseError as exc:
            _fail(str(exc))
        return
    missing = [name for name, value in (("--aet", aet), ("--port", port), ("--forward", forward)) if value is None]
    if missing:
        _fail(f"serve needs {', '.join(missing)} (or --status to print the queue's counts)")
    try:
        node = _prepare(aet, host, port, forward, queue_dir, allow, method, sigma, workers, status_port,
                        retry_max_wait, tls_cert, tls_key, tls_ca, forward_tls)
    except XRayDenoiseError as exc:
        _fail(str(exc))
    _configure_logging(verbose)
    try:
        node.run()
    except XRayDenoiseError as exc:
        _fail(str(exc))


def _prepare(aet, host, port, forward, queue_dir, allow, method, sigma, workers, status_port, retry_max_wait,
             tls_cert, tls_key, tls_ca, forward_tls):
    """Check every option before anything listens; returns the node, ready to run."""
    import importlib.util
    import math

    from xraydenoise.errors import ConfigError, MissingDependencyError

    if importlib.util.find_spec("pynetdicom") is None:
        raise MissingDependencyError("the DICOM node needs pynetdicom: pip install 'xraydenoise[serve]'")

    from .node import Node
    from .sender import check_aet, check_port, parse_destination

    aet = check_aet(aet, "--aet")
    check_port(port, "--port")
    destination = parse_destination(forward)
    if destination.aet == aet:
        # AE titles are unique on a network: this is the node itself, and every derived
        # instance would come back to be denoised again, without end.
        raise ConfigError(f"--forward names this node's own AE title {aet}; forward to the PACS or another node")
    allowed = _parse_allow(allow)
    if status_port is not None:
        check_port(status_port, "--status-port")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if not (math.isfinite(retry_max_wait) and retry_max_wait >= 1):
        raise ConfigError(f"--retry-max-wait must be at least 1 second, got {retry_max_wait}")
    if sigma is not None and not (math.isfinite(sigma) and 0 <= sigma <= 255):
        raise ConfigError(f"--sigma must be a number of grey levels from 0 to 255, got {sigma}")
    server_tls, client_tls = _tls_contexts(tls_cert, tls_key, tls_ca, forward_tls)
    return Node(aet=aet, host=host, port=port, destination=destination, queue_dir=queue_dir,
                allow=allowed, method=method, sigma=None if sigma is None else sigma / 255.0, workers=workers,
                status_port=status_port, retry_max_wait=retry_max_wait, server_tls=server_tls, client_tls=client_tls)
