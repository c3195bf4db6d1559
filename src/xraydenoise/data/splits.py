"""Train / validation / test splits, grouped by patient and stratified by source.

* No patient is in two splits: records are grouped by :attr:`Record.patient_key` (FracAtlas
  has no patient ids, so each of its images is its own group).
* Each source is split on its own, so every source is divided about 80/10/10 and adding a
  source does not move the images of the others.
* The split depends only on the seed and the records: groups are sorted, then shuffled with
  ``numpy.random.default_rng`` (never Python's ``hash()``), and the result is the same on
  any machine and for any input order.

The split of the development set is committed as ``splits/xray_dev_seed<seed>.csv`` next to
this module, and :func:`get_split` uses it when it covers the manifest, so that a change of
numpy's random stream can never move images between train and test. Regenerate it with
``python -m xraydenoise.data.splits``.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import sys
import zlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from xraydenoise.data.manifest import Record, atomic_write_rows, read_manifest
from xraydenoise.errors import ConfigError, XRayDenoiseError
from xraydenoise.io._text import read_text_file

log = logging.getLogger(__name__)

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
SPLIT_COLUMNS: tuple[str, ...] = ("image_id", "patient_key", "split")
#: Folder of the committed split files (inside the package).
SPLITS_DIR = Path(__file__).resolve().parent / "splits"


def committed_split_path(seed: int = 0) -> Path:
    """Path of the committed split file of the development set for ``seed``."""
    return SPLITS_DIR / f"xray_dev_seed{int(seed)}.csv"


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    try:
        values = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise ConfigError(f"split fractions must be three numbers, got {fractions!r}") from None
    if len(values) != 3 or any(not np.isfinite(f) or f < 0 for f in values):
        raise ConfigError(f"split fractions must be three numbers >= 0, got {fractions!r}")
    if abs(sum(values) - 1.0) > 1e-6:
        raise ConfigError(f"split fractions must add up to 1, got {fractions!r} (sum {sum(values):g})")
    return values


def _source_seed(seed: int, source: str) -> list[int]:
    # A stable per-source stream: crc32 is the same on every machine and Python version.
    return [int(seed) & 0xFFFFFFFF, zlib.crc32(source.encode("utf-8"))]


def assign_splits(
    records: Iterable[Record], *, seed: int = 0, fractions: Sequence[float] = (0.8, 0.1, 0.1)
) -> dict[str, str]:
    """``{patient_key: split name}`` for the records (see :func:`make_splits`)."""
    fracs = _check_fractions(fractions)
    # source -> patient_key -> number of images
    groups: dict[str, Counter[str]] = defaultdict(Counter)
    owner: dict[str, str] = {}
    for record in records:
        key, source = record.patient_key, record.get("source")
        if owner.setdefault(key, source) != source:  # cannot happen with the key format
            raise XRayDenoiseError(f"patient key {key!r} appears under two sources")
        groups[source][key] += 1

    # Cumulative image-count boundaries: a group goes to the split in which the middle of its
    # run of images falls. For single-image groups this rounds each split to the nearest image.
    cuts = np.cumsum(fracs)
    assignment: dict[str, str] = {}
    for source in sorted(groups):
        keys = sorted(groups[source])
        sizes = np.array([groups[source][k] for k in keys], dtype=np.float64)
        order = np.random.default_rng(_source_seed(seed, source)).permutation(len(keys))
        total = sizes.sum()
        start = 0.0
        for index in order:
            middle = (start + sizes[index] / 2.0) / total
            start += sizes[index]
            split = int(np.searchsorted(cuts, middle, side="right"))
            assignment[keys[index]] = SPLIT_NAMES[min(split, len(SPLIT_NAMES) - 1)]
    return assignment


def make_splits(
    records: Iterable[Record], *, seed: int = 0, fractions: Sequence[float] = (0.8, 0.1, 0.1)
) -> dict[str, list[Record]]:
    """Split records into ``train`` / ``val`` / ``test`` (always all three keys).

    Grouped by patient, stratified by source, deterministic for a seed (independent of the
    input order). Each list keeps the input order of the records.
    """
    records = list(records)
    assignment = assign_splits(records, seed=seed, fractions=fractions)
    out: dict[str, list[Record]] = {name: [] for name in SPLIT_NAMES}
    for record in records:
        out[assignment[record.patient_key]].append(record)
    return out


def write_split_file(splits: Mapping[str, Iterable[Record]], path: Path | str) -> Path:
    """Write splits as CSV (``image_id,patient_key,split``), atomically, sorted by split
    then image id so that the file only changes when the split does."""
    rows: list[tuple[int, str, str, str]] = []
    for name, records in splits.items():
        if name not in SPLIT_NAMES:
            raise ConfigError(f"unknown split {name!r}; expected one of {', '.join(SPLIT_NAMES)}")
        rows.extend((SPLIT_NAMES.index(name), r.image_id, r.patient_key, name) for r in records)
    rows.sort()
    return atomic_write_rows(path, [SPLIT_COLUMNS, *(row[1:] for row in rows)])


def _read_split_rows(path: Path) -> list[dict[str, str]]:
    text = read_text_file(path, "split file")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        missing = [c for c in SPLIT_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise XRayDenoiseError(f"{path}: invalid split file: missing column(s) {', '.join(missing)}")
        rows = []
        seen: set[str] = set()
        for row in reader:
            image_id, split = (row.get("image_id") or "").strip(), (row.get("split") or "").strip()
            if split not in SPLIT_NAMES or not image_id:
                raise XRayDenoiseError(
                    f"{path}: invalid split file: line {reader.line_num} has "
                    f"{'split ' + repr(split) if image_id else 'no image_id'}"
                )
            if image_id in seen:
                raise XRayDenoiseError(f"{path}: invalid split file: {image_id!r} listed twice")
            seen.add(image_id)
            rows.append({"image_id": image_id, "patient_key": (row.get("patient_key") or "").strip(), "split": split})
    except csv.Error as exc:
        raise XRayDenoiseError(f"{path}: invalid split file: {exc}") from None
    return rows


def read_split_file(path: Path | str) -> dict[str, list[str]]:
    """``{"train": [image ids], "val": [...], "test": [...]}`` from a split file."""
    out: dict[str, list[str]] = {name: [] for name in SPLIT_NAMES}
    for row in _read_split_rows(Path(path)):
        out[row["split"]].append(row["image_id"])
    return out


def _splits_from_file(records: Sequence[Record], path: Path) -> dict[str, list[Record]] | None:
    """Splits of ``records`` as given by ``path``, or None when the file does not cover them
    (an id missing from the file, or the same id under another patient key)."""
    try:
        rows = {row["image_id"]: row for row in _read_split_rows(path)}
    except XRayDenoiseError as exc:
        log.warning("ignoring committed split file: %s", exc)
        return None
    missing = [r.image_id for r in records if r.image_id not in rows]
    moved = [
        r.image_id
        for r in records
        if r.image_id in rows and rows[r.image_id]["patient_key"] not in ("", r.patient_key)
    ]
    if missing or moved:
        if len(missing) < len(records):  # same data set, but changed: worth a warning
            log.warning(
                "%s does not match the manifest (%d image(s) missing, %d with another patient); "
                "computing the split instead",
                path,
                len(missing),
                len(moved),
            )
        return None
    out: dict[str, list[Record]] = {name: [] for name in SPLIT_NAMES}
    for record in records:
        out[rows[record.image_id]["split"]].append(record)
    return out


def get_splits(*, root: Path | str | None = None, seed: int = 0) -> dict[str, list[Record]]:
    """All three splits of the manifest at ``root`` (default: the development set).

    Uses the committed split file for ``seed`` when every manifest image is in it (extra ids
    in the file are ignored, so a manifest with some images removed keeps its split);
    otherwise computes :func:`make_splits`. Never writes a file. Records keep manifest order.
    """
    records = read_manifest(root)
    path = committed_split_path(seed)
    if path.is_file():
        from_file = _splits_from_file(records, path)
        if from_file is not None:
            return from_file
    return make_splits(records, seed=seed)


def get_split(name: str, *, root: Path | str | None = None, seed: int = 0) -> list[Record]:
    """Records of one split (``train``, ``val`` or ``test``), in manifest order."""
    if name not in SPLIT_NAMES:
        raise ConfigError(f"unknown split {name!r}; expected one of {', '.join(SPLIT_NAMES)}")
    return get_splits(root=root, seed=seed)[name]


def split_summary(splits: Mapping[str, Sequence[Record]]) -> str:
    """Table of images per source and split, as text."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for name, records in splits.items():
        for record in records:
            counts[record.get("source")][name] += 1
            counts["all"][name] += 1
    lines = [f"{'source':<12}" + "".join(f"{n:>7}" for n in SPLIT_NAMES) + f"{'total':>7}"]
    for source in sorted(k for k in counts if k != "all") + ["all"]:
        row = counts[source]
        lines.append(
            f"{source:<12}" + "".join(f"{row[n]:>7}" for n in SPLIT_NAMES) + f"{sum(row.values()):>7}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate the committed split file of the development set and print its sizes."""
    parser = argparse.ArgumentParser(
        prog="python -m xraydenoise.data.splits",
        description="Compute the patient-grouped, source-stratified split of a manifest and write it.",
    )
    parser.add_argument("--root", type=Path, default=None, help="data folder (default: the dev set)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="split file (default: the committed one)")
    args = parser.parse_args(argv)
    try:
        records = read_manifest(args.root)
        splits = make_splits(records, seed=args.seed)
        out = write_split_file(splits, args.out or committed_split_path(args.seed))
    except XRayDenoiseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({len(records)} images)")
    print(split_summary(splits))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
