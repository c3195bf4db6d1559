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

    Not thread-safe (``warnings.catch_warnings`` never is); readers run one per process.

    Examples
    --------
    >>> with library_messages_to_debug():
    ...     warnings.warn("noisy library")
    """
    handler = _ToDebug()
    saved = []
    for name in _LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate))
        logger.addHandler(handler)
        logger.propagate = False  # also keeps them from the last-resort stderr handler
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        for logger, propagate in saved:
            logger.removeHandler(handler)
            logger.propagate = propagate
        for item in caught:  # also when the read failed: the warning may say why
            LOGGER.debug("%s: %s", item.category.__name__, item.message)
