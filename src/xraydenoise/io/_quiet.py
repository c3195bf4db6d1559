"""Keeping third-party chatter off the terminal while images are read and written.

pydicom warns about every odd element and tifffile logs damaged files through the
``logging`` module's last-resort handler, i.e. straight to stderr. A batch of thousands of
PACS files would bury its own one-line errors under them, so during our reads and writes
both go to the ``xraydenoise.io`` logger at DEBUG level (shown with ``--verbose`` or any
logging configuration that enables it), and never reach the terminal otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections.abc import Iterator

LOGGER = logging.getLogger("xraydenoise.io")
#: Libraries whose log records are turned into our debug records while we call them.
_LIBRARY_LOGGERS = ("pydicom", "tifffile", "PIL", "pylibjpeg", "openjpeg", "libjpeg", "jpeg_ls")


class _ToDebug(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        LOGGER.debug("%s: %s", record.name, record.getMessage())


@contextlib.contextmanager
def library_messages_to_debug() -> Iterator[None]:
    """Within the block, library warnings and log records become DEBUG records of ours.

    Safe to enter from several threads at once (the DICOM node's workers): the first one in
    redirects, the last one out restores, so no thread restores the others' state early or
    leaves a library logger muted.

    Examples
    --------
    >>> with library_messages_to_debug():
    ...     warnings.warn("noisy library")
    """
    _enter()
    try:
        yield
    finally:
        _leave()


_LOCK = threading.Lock()
_depth = 0
_saved: list = []


def _show_as_debug(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    LOGGER.debug("%s: %s", category.__name__, message)


def _enter() -> None:
    global _depth
    with _LOCK:
        _depth += 1
        if _depth > 1:
            return
        handler = _ToDebug()
        loggers = []
        for name in _LIBRARY_LOGGERS:
            logger = logging.getLogger(name)
            loggers.append((logger, logger.propagate))
            logger.addHandler(handler)
            logger.propagate = False  # also keeps them from the last-resort stderr handler
        # What warnings.catch_warnings does, once for every thread inside the block.
        _saved[:] = [handler, loggers, warnings.filters[:], warnings.showwarning]
        warnings.simplefilter("always")
        warnings.showwarning = _show_as_debug


def _leave() -> None:
    global _depth
    with _LOCK:
        _depth -= 1
        if _depth > 0:
            return
        handler, loggers, filters, showwarning = _saved
        for logger, propagate in loggers:
            logger.removeHandler(handler)
            logger.propagate = propagate
        warnings.filters = filters
        warnings._filters_mutated()  # type: ignore[attr-defined]  # as catch_warnings restores them
        warnings.showwarning = showwarning
        _saved.clear()
