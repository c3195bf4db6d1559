"""Reading the project's small text files (manifests, splits, configs, model cards) in one way."""

from __future__ import annotations

from pathlib import Path

from ..errors import XRayDenoiseError
from ._messages import one_line


def read_text_file(path: str | Path, what: str, *, error: type[XRayDenoiseError] = XRayDenoiseError) -> str:
    """The text of ``path`` as UTF-8 (a byte-order mark, as spreadsheet programs write, dropped).

    A missing or unreadable file is one ``error`` line naming ``path`` and ``what`` it is.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "m.csv").write_bytes(b"\\xef\\xbb\\xbfpath")
    >>> read_text_file(folder / "m.csv", "manifest")
    'path'
    >>> read_text_file(folder / "none.csv", "manifest")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    xraydenoise.errors.XRayDenoiseError: .../none.csv: manifest not found
    """
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read {what}: {one_line(exc)}") from None
