"""Readers that turn public data-set layouts into :class:`Record` lists in manifest form.

Every reader returns records whose ``fields`` hold all :data:`MANIFEST_COLUMNS` (missing
ones "" or ``unknown`` for age_group / region / modality), with ``path`` relative to the
folder that was read, so ``write_manifest(records, folder / "manifest.csv")`` turns any of
them into a development-style data set. Records are sorted by image id.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from pathlib import Path
from typing import Iterator

from xraydenoise.data.manifest import MANIFEST_NAME, Record, age_group, fill_fields, read_manifest
from xraydenoise.errors import XRayDenoiseError
from xraydenoise.io._text import read_text_file

log = logging.getLogger(__name__)

#: File suffixes that :func:`read_folder` treats as images (case-insensitive): exactly what
#: :func:`xraydenoise.io.load_image` reads. JPEG is not among them (lossy 8-bit: convert to PNG).
IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".tif", ".tiff", ".dcm", ".dicom"})
#: Suffixes whose size Pillow reads from the header without decoding pixels.
_PROBE_SUFFIXES = frozenset({".png", ".tif", ".tiff"})

NIH_CSV = "Data_Entry_2017.csv"
NIH_INSTITUTION = "NIH Clinical Center, Bethesda MD, USA"
NIH_LICENSE = "CC0-1.0"
MURA_INSTITUTION = "Stanford (MURA)"
MURA_LICENSE = "MURA Dataset Research Use Agreement"
MURA_SPLITS = ("train", "valid")


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _walk_images(folder: Path) -> Iterator[Path]:
    """Image files under folder, recursively, skipping hidden files and folders."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                yield Path(dirpath) / name


def _probe(path: Path) -> dict[str, str]:
    """width / height / bit_depth from the file header (Pillow opens lazily), or nothing."""
    if path.suffix.lower() not in _PROBE_SUFFIXES:
        return {}
    try:
        from PIL import Image

        with Image.open(path) as image:
            width, height = image.size
            mode = image.mode
    except Exception:  # noqa: BLE001 - a bad file is reported when it is decoded, not here
        return {}
    depth = {"1": "1", "L": "8", "P": "8", "LA": "8", "RGB": "8", "RGBA": "8"}.get(mode, "")
    if mode.startswith("I;16"):
        depth = "16"
    return {"width": str(width), "height": str(height), "bit_depth": depth}


def read_folder(folder: Path | str, *, source: str = "folder", probe: bool = True) -> list[Record]:
    """Every image under ``folder`` (png, tif, tiff, dcm, dicom; recursive), one record each.

    ``region`` / ``modality`` / ``age_group`` are ``unknown``; width, height and bit depth
    are read from the file header when ``probe`` and the format allows it (not DICOM).
    No patient ids, so each image is its own patient group.
    """
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise XRayDenoiseError(f"{root}: not a folder")
    records = []
    for file in _walk_images(root):
        values: dict[str, str] = {"path": _rel(file, root), "source": source}
        if probe:
            values.update(_probe(file))
        records.append(Record(path=file, fields=fill_fields(values)))
    records.sort(key=lambda r: r.image_id)
    return records


# --------------------------------------------------------------------------- NIH ChestX-ray14


def _nih_images(root: Path) -> dict[str, Path]:
    """File name -> path for root/images/*, root/images_*/images/* and root/images_*/*."""
    folders = [root / "images"]
    for child in sorted(root.glob("images_*")):
        if child.is_dir():
            folders += [child / "images", child]
    index: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_file() and not entry.name.startswith("."):
                    index.setdefault(entry.name, Path(entry.path))
    return index


def _nih_age(text: str) -> str:
    """NIH age as whole years: ``58`` (v2020) or ``058Y`` / ``006M`` / ``010D`` (first release)."""
    match = re.fullmatch(r"\s*0*(\d+)\s*([YMD]?)\s*", text or "", flags=re.IGNORECASE)
    if not match:
        return ""
    value, unit = int(match.group(1)), match.group(2).upper()
    if unit == "M":
        value //= 12
    elif unit == "D":
        value //= 365
    return str(value) if value <= 120 else ""  # NIH has a few ages such as 412: typos


def _nih_patient(text: str) -> str:
    text = (text or "").strip()
    return str(int(text)) if text.isdigit() else text  # "00193" and "193" are the same patient


def read_nih(root: Path | str) -> list[Record]:
    """NIH ChestX-ray14: ``root/Data_Entry_2017.csv`` and images in ``root/images/`` or
    ``root/images_*/images/``.

    Rows whose image is not found are skipped (their number is logged as a warning). The
    CSV's original DICOM size goes to original_width / original_height; width / height are
    left empty (the released PNGs are 1024x1024 but are not opened here).
    """
    root = Path(root).expanduser().resolve()
    table = root / NIH_CSV
    text = read_text_file(table, "NIH metadata file")
    images = _nih_images(root)
    records: list[Record] = []
    missing = rows = 0
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = [h.strip() for h in reader.fieldnames or ()]
        reader.fieldnames = header
        need = ("Image Index", "Finding Labels", "Patient ID")
        lacking = [c for c in need if c not in header]
        if lacking:
            raise XRayDenoiseError(f"{table}: not an NIH Data_Entry file: no column(s) {', '.join(lacking)}")
        for row in reader:
            name = (row.get("Image Index") or "").strip()
            if not name:
                continue
            rows += 1
            file = images.get(name)
            if file is None:
                missing += 1
                continue
            labels = (row.get("Finding Labels") or "").strip()
            age = _nih_age(row.get("Patient Age") or "")
            values = {
                "path": _rel(file, root),
                "source": "nih",
                "institution": NIH_INSTITUTION,
                "license": NIH_LICENSE,
                "region": "chest",
                "modality": "chest",
                "view": (row.get("View Position") or "").strip(),
                "age": age,
                "age_group": age_group(age),
                "sex": (row.get("Patient Gender") or "").strip().upper(),
                "finding": labels,
                "category": "normal" if labels == "No Finding" else ("lung_disease" if labels else ""),
                "patient_id": _nih_patient(row.get("Patient ID") or ""),
                "original_width": (row.get("OriginalImage[Width") or "").strip(),
                "original_height": (row.get("Height]") or "").strip(),
                "origin": f"{NIH_CSV}:{name}",
            }
            records.append(Record(path=file, fields=fill_fields(values)))
    except csv.Error as exc:
        raise XRayDenoiseError(f"{table}: invalid CSV: {exc}") from None
    if missing:
        log.warning("%s: %d of %d row(s) have no image under %s; skipped", table, missing, rows, root)
    if rows and not records:
        raise XRayDenoiseError(f"{table}: none of its {rows} images found under {root}/images or images_*/images")
    records.sort(key=lambda r: r.image_id)
    return records


# --------------------------------------------------------------------------- MURA

_MURA_STUDY = re.compile(r"study(\d+)_(positive|negative)", re.IGNORECASE)


def _is_mura(root: Path) -> bool:
    return any((root / split).is_dir() and any((root / split).glob("XR_*")) for split in MURA_SPLITS)


def read_mura(root: Path | str) -> list[Record]:
    """MURA: ``root/{train,valid}/XR_<PART>/patient<ID>/study<N>_<positive|negative>/image<K>.png``.

    region is the body part in lower case (``XR_WRIST`` -> ``wrist``), modality
    ``extremity``; category ``abnormal`` / ``normal`` and finding ``positive`` / ``negative``
    from the study folder; patient_id is the number of the patient folder. Files outside
    this layout are ignored.
    """
    root = Path(root).expanduser().resolve()
    if not _is_mura(root):
        raise XRayDenoiseError(f"{root}: not a MURA folder (no train/XR_* or valid/XR_*)")
    records: list[Record] = []
    for split in MURA_SPLITS:
        for part in sorted((root / split).glob("XR_*")):
            if not part.is_dir():
                continue
            region = part.name[3:].lower()
            for file in _walk_images(part):
                parts = file.relative_to(part).parts
                if len(parts) != 3 or not parts[0].lower().startswith("patient"):
                    continue
                study = _MURA_STUDY.fullmatch(parts[1])
                if study is None:
                    continue
                positive = study.group(2).lower() == "positive"
                patient = parts[0][len("patient"):]
                values = {
                    "path": _rel(file, root),
                    "source": "mura",
                    "institution": MURA_INSTITUTION,
                    "license": MURA_LICENSE,
                    "region": region,
                    "modality": "extremity",
                    "finding": "positive" if positive else "negative",
                    "category": "abnormal" if positive else "normal",
                    "patient_id": _nih_patient(patient),
                    "origin": f"MURA:{split}",
                }
                records.append(Record(path=file, fields=fill_fields(values)))
    records.sort(key=lambda r: r.image_id)
    return records


# --------------------------------------------------------------------------- dispatch


def read_dataset(path: Path | str) -> list[Record]:
    """Records of a data set, whatever its layout.

    A folder with ``manifest.csv`` -> :func:`read_manifest`; with ``Data_Entry_2017.csv`` ->
    :func:`read_nih`; with ``train/XR_*`` or ``valid/XR_*`` -> :func:`read_mura`; any other
    folder -> :func:`read_folder`. A manifest CSV file is read as a manifest; a single image
    file gives one record.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise XRayDenoiseError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return read_manifest(path)
        if path.suffix.lower() in IMAGE_SUFFIXES:
            file = path.resolve()
            values = {"path": file.name, "source": "file", **_probe(file)}
            return [Record(path=file, fields=fill_fields(values))]
        raise XRayDenoiseError(f"{path}: not an image, a manifest or a folder")
    if (path / MANIFEST_NAME).is_file():
        return read_manifest(path)
    if (path / NIH_CSV).is_file():
        return read_nih(path)
    if _is_mura(path):
        return read_mura(path)
    return read_folder(path)
