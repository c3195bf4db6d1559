"""The manifest: one CSV row per radiograph, and :class:`Record`, its in-memory form.

A data set is a folder with a ``manifest.csv`` whose ``path`` column holds image paths
relative to that folder. The development set (``settings.data_dir()``) is such a folder;
the readers in :mod:`xraydenoise.data.readers` turn other public layouts (NIH, MURA, a bare
folder of images) into the same records.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Iterable, Mapping, Sequence

from xraydenoise import settings
from xraydenoise.errors import XRayDenoiseError
from xraydenoise.io._atomic import atomic_write_text
from xraydenoise.io._text import read_text_file

#: Columns of ``manifest.csv``, in file order.
MANIFEST_COLUMNS: tuple[str, ...] = (
    "path",
    "source",
    "institution",
    "license",
    "region",
    "modality",
    "view",
    "age",
    "age_group",
    "sex",
    "finding",
    "category",
    "patient_id",
    "width",
    "height",
    "bit_depth",
    "original_width",
    "original_height",
    "origin",
)

#: Columns by which results are broken down (evaluation) and splits may be checked.
GROUP_COLUMNS: tuple[str, ...] = (
    "source",
    "institution",
    "region",
    "modality",
    "view",
    "age_group",
    "sex",
    "category",
)

#: Value of a column that a reader cannot fill. Everything is "" except these.
UNKNOWN_DEFAULTS: Mapping[str, str] = MappingProxyType(
    {"age_group": "unknown", "region": "unknown", "modality": "unknown"}
)

MANIFEST_NAME = "manifest.csv"


def age_group(age: float | int | str | None) -> str:
    """``pediatric`` (< 18), ``adult`` (18-64), ``elderly`` (65+) or ``unknown``.

    Ages that are missing, not a number, negative or over 120 (NIH has a few typos such as
    412) are ``unknown``.
    """
    if age is None or age == "":
        return "unknown"
    try:
        value = float(age)
    except (TypeError, ValueError):
        return "unknown"
    if not 0 <= value <= 120:
        return "unknown"
    if value < 18:
        return "pediatric"
    if value < 65:
        return "adult"
    return "elderly"


def fill_fields(values: Mapping[str, object]) -> dict[str, str]:
    """All manifest columns as text, missing ones filled with "" (``unknown`` for age_group,
    region, modality). Extra keys are kept after the manifest columns."""
    out: dict[str, str] = {}
    for column in MANIFEST_COLUMNS:
        value = values.get(column)
        text = "" if value is None else str(value)
        if text == "" and column in UNKNOWN_DEFAULTS:
            text = UNKNOWN_DEFAULTS[column]
        out[column] = text
    for key, value in values.items():
        if key not in out:
            out[key] = "" if value is None else str(value)
    return out


@dataclass(frozen=True)
class Record:
    """One radiograph: its absolute file path and its manifest row (every value as text)."""

    path: Path
    fields: Mapping[str, str] = field(compare=True, repr=False)

    def __post_init__(self) -> None:
        # Copy and freeze, so that a record can be shared between splits and caches safely.
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))

    def __hash__(self) -> int:  # fields is a mapping, so the generated hash would fail
        return hash((self.path, self.image_id))

    @property
    def image_id(self) -> str:
        """Path as written in the manifest (``nih/nih_00001.png``): the stable id of the image."""
        return self.fields.get("path", "") or self.path.name

    @property
    def source(self) -> str:
        return self.fields.get("source", "")

    @property
    def patient_key(self) -> str:
        """``<source>:<patient_id>``, or ``<source>:image:<image_id>`` when no patient id is known
        (FracAtlas): the unit that splits keep together."""
        source = self.fields.get("source", "")
        patient = self.fields.get("patient_id", "").strip()
        if patient:
            return f"{source}:{patient}"
        return f"{source}:image:{self.image_id}"

    def get(self, column: str, default: str = "") -> str:
        """Value of a column, ``default`` when the column is absent or empty."""
        value = self.fields.get(column, "")
        return value if value != "" else default


def _manifest_path(root: Path | str | None) -> tuple[Path, Path]:
    """(folder, manifest file) for a folder or for a manifest file itself."""
    base = settings.data_dir() if root is None else Path(root).expanduser()
    if base.suffix.lower() == ".csv" and not base.is_dir():
        return base.parent.resolve(), base.resolve()
    base = base.resolve()
    return base, base / MANIFEST_NAME


def read_manifest(root: Path | str | None = None) -> list[Record]:
    """Records of ``root/manifest.csv`` (``root`` defaults to ``settings.data_dir()``).

    ``root`` may also be the manifest file itself. Image paths are resolved against the
    manifest's folder (absolute paths are kept). Columns missing from the file are filled as
    in :func:`fill_fields`; extra columns are kept. Raises :class:`XRayDenoiseError` naming
    the file when it is missing, unreadable, has no ``path`` column, a short/long row, an
    empty path or the same path twice. Image files are not opened here.
    """
    folder, manifest = _manifest_path(root)
    if not manifest.is_file():
        hint = f" (set ${settings.DATA_ENV} to the data folder)" if root is None else ""
        raise XRayDenoiseError(f"{manifest}: manifest not found{hint}")
    text = read_text_file(manifest, "manifest")

    records: list[Record] = []
    seen: set[str] = set()
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), restkey="\0extra", restval=None)
        header = reader.fieldnames
        if not header or "path" not in header:
            raise XRayDenoiseError(f"{manifest}: invalid manifest: no 'path' column in the header")
        for row in reader:
            line = reader.line_num
            if "\0extra" in row or any(value is None for value in row.values()):
                which = "more" if "\0extra" in row else "fewer"
                raise XRayDenoiseError(
                    f"{manifest}: invalid manifest: line {line} has {which} fields than the header"
                )
            rel = (row.get("path") or "").strip()
            if not rel:
                if not any(v.strip() for v in row.values()):
                    continue  # blank line with only separators
                raise XRayDenoiseError(f"{manifest}: invalid manifest: line {line} has an empty path")
            rel = rel.replace("\\", "/")
            if rel in seen:
                raise XRayDenoiseError(f"{manifest}: invalid manifest: line {line} repeats path {rel!r}")
            seen.add(rel)
            row["path"] = rel
            fields = fill_fields(row)
            file = Path(rel) if PurePosixPath(rel).is_absolute() or Path(rel).is_absolute() else folder / rel
            records.append(Record(path=file, fields=fields))
    except csv.Error as exc:
        raise XRayDenoiseError(f"{manifest}: invalid manifest: {exc}") from None
    return records


def atomic_write_rows(path: Path | str, rows: Iterable[Sequence[str]]) -> Path:
    """Write CSV rows to ``path`` through the atomic writer, so readers never see half a file."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    return atomic_write_text(Path(path), text.getvalue())


def write_manifest(records: Iterable[Record], path: Path | str) -> Path:
    """Write records as a manifest CSV, atomically (:func:`atomic_write_rows`).

    Columns: :data:`MANIFEST_COLUMNS`, then any extra field names in first-seen order. The
    ``path`` column is each record's ``image_id`` as is, so write the manifest into the
    folder the ids are relative to.
    """
    records = list(records)
    columns = list(MANIFEST_COLUMNS)
    for record in records:
        for key in record.fields:
            if key not in columns:
                columns.append(key)
    rows = [columns]
    for record in records:
        row = [record.fields.get(column, "") for column in columns]
        row[0] = record.image_id
        rows.append(row)
    return atomic_write_rows(path, rows)
