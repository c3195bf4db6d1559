"""Turning third-party exceptions into the one-line reasons of ImageReadError/ImageWriteError."""

from __future__ import annotations


def one_line(exc: BaseException, limit: int = 300) -> str:
    """The message of ``exc`` on one line, at most ``limit`` characters.

    pydicom lists one decoder per line and OSError carries a clean ``strerror``; both
    must fit in a ``"<path>: <reason>"`` line.

    Examples
    --------
    >>> one_line(RuntimeError("all plugins failed:\\n  pillow: bad data\\n  gdcm: missing"))
    'all plugins failed: pillow: bad data; gdcm: missing'
    >>> one_line(FileNotFoundError(2, "No such file or directory", "x.png"))
    'No such file or directory'
    """
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = ""
    for line in (part.strip() for part in str(exc).splitlines()):
        if line:
            text = f"{text}{' ' if text.endswith(':') else '; '}{line}" if text else line
    text = text or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
