"""Tests of xraydenoise.data: manifest, splits and readers of public layouts."""

from __future__ import annotations

import csv
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import require_dev_data
from xraydenoise import settings
from xraydenoise.data import (
    GROUP_COLUMNS,
    MANIFEST_COLUMNS,
    Record,
    get_split,
    make_splits,
    read_dataset,
    read_folder,
    read_manifest,
    read_mura,
    read_nih,
    read_split_file,
    write_manifest,
    write_split_file,
)
from xraydenoise.data import splits as splits_module
from xraydenoise.data.manifest import age_group, fill_fields
from xraydenoise.errors import ConfigError, XRayDenoiseError

DEV_COLUMNS = ["path", "source", "institution", "license", "region", "modality", "view", "age", "age_group", "sex", "finding", "category",
               "patient_id", "width", "height", "bit_depth", "original_width", "original_height", "origin"]



@pytest.fixture(scope="module")
def dev_records() -> list[Record]:
    require_dev_data()
    return read_manifest()


def _png(path: Path, size: tuple[int, int] = (8, 6), mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, 0).save(path)
    return path


def _record(image_id: str, source: str, patient: str = "") -> Record:
    return Record(
        path=Path("/nonexistent") / image_id,
        fields=fill_fields({"path": image_id, "source": source, "patient_id": patient}),
    )


def _ids(records) -> set[str]:
    return {r.image_id for r in records}


# --------------------------------------------------------------------------- constants, Record


def test_columns() -> None:
    assert list(MANIFEST_COLUMNS) == DEV_COLUMNS
    assert GROUP_COLUMNS == ("source", "institution", "region", "modality", "view", "age_group", "sex", "category")
    assert set(GROUP_COLUMNS) <= set(MANIFEST_COLUMNS)


def test_record_keys_and_immutability() -> None:
    fields = {"path": "nih/a.png", "source": "nih", "patient_id": "17"}
    record = Record(path=Path("/d/nih/a.png"), fields=fields)
    fields["source"] = "changed"  # the record holds its own copy
    assert record.image_id == "nih/a.png"
    assert record.patient_key == "nih:17"
    assert record.get("source") == "nih"
    assert record.get("view", "n/a") == "n/a" and record.get("view") == ""
    assert _record("fa/x.png", "fracatlas").patient_key == "fracatlas:image:fa/x.png"
    with pytest.raises(TypeError):
        record.fields["source"] = "x"  # type: ignore[index]
    assert record == Record(path=Path("/d/nih/a.png"), fields={"path": "nih/a.png", "source": "nih", "patient_id": "17"})
    assert len({record, Record(path=Path("/d/nih/a.png"), fields=dict(record.fields))}) == 1


@pytest.mark.parametrize(
    ("age", "group"),
    [("", "unknown"), ("x", "unknown"), ("0", "pediatric"), ("17", "pediatric"), ("18", "adult"),
     ("64", "adult"), ("65", "elderly"), ("99", "elderly"), ("412", "unknown")],
)
def test_age_group(age: str, group: str) -> None:
    assert age_group(age) == group


# --------------------------------------------------------------------------- dev manifest


def test_dev_manifest(dev_records: list[Record]) -> None:
    assert len(dev_records) == 399
    assert all(r.path.is_absolute() and r.path.is_file() for r in dev_records)
    assert all(list(r.fields)[: len(DEV_COLUMNS)] == DEV_COLUMNS for r in dev_records)
    assert Counter(r.get("source") for r in dev_records) == {"fracatlas": 155, "nih": 144, "kermany": 100}
    assert len({r.image_id for r in dev_records}) == 399
    assert all(not r.get("patient_id") for r in dev_records if r.get("source") == "fracatlas")
    nih = next(r for r in dev_records if r.get("source") == "nih")
    assert nih.patient_key == f"nih:{nih.get('patient_id')}" and nih.get("patient_id")
    assert nih.path == settings.data_dir() / nih.image_id


def _check_fractions(records: list[Record], split: dict[str, list[Record]]) -> None:
    n = len(records)
    sizes = {k: len(v) for k, v in split.items()}
    assert sum(sizes.values()) == n
    for name, frac in zip(("train", "val", "test"), (0.8, 0.1, 0.1)):
        assert abs(sizes[name] - frac * n) <= 2, (name, sizes)
    by_source: dict[str, Counter[str]] = {}
    for name, recs in split.items():
        for r in recs:
            by_source.setdefault(r.get("source"), Counter())[name] += 1
    for source, counts in by_source.items():
        total = sum(counts.values())
        for name, frac in zip(("train", "val", "test"), (0.8, 0.1, 0.1)):
            assert abs(counts[name] - frac * total) <= 1, (source, dict(counts))


def test_dev_splits_balanced_grouped_deterministic(dev_records: list[Record]) -> None:
    split = make_splits(dev_records, seed=0)
    assert set(split) == {"train", "val", "test"}
    _check_fractions(dev_records, split)
    keys = {name: {r.patient_key for r in recs} for name, recs in split.items()}
    assert not (keys["train"] & keys["val"] or keys["train"] & keys["test"] or keys["val"] & keys["test"])
    # same seed, same split, whatever the input order; records keep the input order
    again = make_splits(list(reversed(dev_records)), seed=0)
    assert {k: _ids(v) for k, v in again.items()} == {k: _ids(v) for k, v in split.items()}
    order = {r.image_id: i for i, r in enumerate(dev_records)}
    assert [order[r.image_id] for r in split["test"]] == sorted(order[r.image_id] for r in split["test"])
    other = make_splits(dev_records, seed=1)
    _check_fractions(dev_records, other)
    assert _ids(other["test"]) != _ids(split["test"])


def test_committed_split_matches_make_splits(dev_records: list[Record]) -> None:
    path = splits_module.committed_split_path(0)
    assert path.is_file(), "run `python -m xraydenoise.data.splits` to create it"
    committed = read_split_file(path)
    computed = make_splits(dev_records, seed=0)
    assert {k: set(v) for k, v in committed.items()} == {k: _ids(v) for k, v in computed.items()}
    for name in ("train", "val", "test"):
        got = get_split(name)
        assert [r.image_id for r in got] == [r.image_id for r in computed[name]]  # manifest order


def test_get_split_uses_committed_file(dev_records: list[Record], tmp_path: Path, monkeypatch) -> None:
    committed = read_split_file(splits_module.committed_split_path(0))
    moved = committed["train"][0]
    by_id = {r.image_id: r for r in dev_records}
    fake = {
        "train": [by_id[i] for i in committed["train"][1:]],
        "val": [by_id[i] for i in committed["val"]],
        "test": [by_id[i] for i in committed["test"]] + [by_id[moved]],
    }
    fake_file = write_split_file(fake, tmp_path / "fake.csv")
    monkeypatch.setattr(splits_module, "committed_split_path", lambda seed=0: fake_file)
    assert moved in _ids(get_split("test"))
    assert moved not in _ids(get_split("train"))
    # a file that misses a manifest image is not used
    fake["test"].pop()
    write_split_file(fake, fake_file)
    assert moved in _ids(get_split("train"))


def test_get_split_other_dataset_computes_and_writes_nothing(tmp_path: Path) -> None:
    records = [_record(f"a/img{i:03d}.png", "alpha", str(i // 2)) for i in range(40)]
    write_manifest(records, tmp_path / "manifest.csv")
    before = sorted(p.name for p in splits_module.SPLITS_DIR.iterdir())
    test = get_split("test", root=tmp_path, seed=0)
    assert _ids(test) == _ids(make_splits(read_manifest(tmp_path), seed=0)["test"])
    assert sorted(p.name for p in splits_module.SPLITS_DIR.iterdir()) == before
    with pytest.raises(ConfigError, match="unknown split"):
        get_split("validation", root=tmp_path)


# --------------------------------------------------------------------------- splits, synthetic


def test_make_splits_groups_patients_and_stratifies() -> None:
    rng = np.random.default_rng(123)
    records = []
    for source, patients in (("big", 200), ("small", 30)):
        for p in range(patients):
            for k in range(int(rng.integers(1, 5))):
                records.append(_record(f"{source}/p{p}_{k}.png", source, f"P{p}"))
    records += [_record(f"noid/{i}.png", "noid") for i in range(50)]  # image-level groups
    split = make_splits(records, seed=7)
    where: dict[str, set[str]] = {}
    for name, recs in split.items():
        for r in recs:
            where.setdefault(r.patient_key, set()).add(name)
    assert all(len(s) == 1 for s in where.values())
    assert sum(len(v) for v in split.values()) == len(records)
    for source in ("big", "small", "noid"):
        sub = [r for r in records if r.get("source") == source]
        counts = Counter(name for name, recs in split.items() for r in recs if r.get("source") == source)
        assert abs(counts["train"] / len(sub) - 0.8) < 0.08, (source, counts)
        assert counts["val"] > 0 and counts["test"] > 0, (source, counts)
    # adding a source does not move the others
    fewer = make_splits([r for r in records if r.get("source") != "small"], seed=7)
    assert _ids(fewer["test"]) == {r.image_id for r in split["test"] if r.get("source") != "small"}


def test_make_splits_bad_fractions() -> None:
    records = [_record("a.png", "s")]
    for fractions in ((0.5, 0.5, 0.5), (0.8, 0.2), (1.2, -0.1, -0.1)):
        with pytest.raises(ConfigError, match="fractions"):
            make_splits(records, fractions=fractions)
    assert {k: len(v) for k, v in make_splits(records, fractions=(0, 0, 1)).items()} == {"train": 0, "val": 0, "test": 1}


def test_split_file_roundtrip_and_errors(tmp_path: Path) -> None:
    records = [_record(f"x/{i}.png", "s", str(i)) for i in range(20)]
    split = make_splits(records, seed=3)
    path = write_split_file(split, tmp_path / "s.csv")
    assert {k: set(v) for k, v in read_split_file(path).items()} == {k: _ids(v) for k, v in split.items()}
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["image_id", "patient_key", "split"]
    assert {row["patient_key"] for row in rows} == {f"s:{i}" for i in range(20)}
    bad = tmp_path / "bad.csv"
    bad.write_text("image_id,patient_key,split\nx/1.png,s:1,holdout\n")
    with pytest.raises(XRayDenoiseError, match="bad.csv"):
        read_split_file(bad)
    with pytest.raises(XRayDenoiseError, match="missing.csv"):
        read_split_file(tmp_path / "missing.csv")


# --------------------------------------------------------------------------- manifest I/O


def test_read_manifest_missing_file(tmp_path: Path) -> None:
    with pytest.raises(XRayDenoiseError) as info:
        read_manifest(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "manifest.csv") in message and "\n" not in message


def test_read_manifest_default_root_follows_env(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(settings.DATA_ENV, str(tmp_path))
    with pytest.raises(XRayDenoiseError, match=str(tmp_path / "manifest.csv")):
        read_manifest()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("name,source\na.png,s\n", "no 'path' column"),
        ("path,source\na.png,s,extra\n", "more fields"),
        ("path,source\na.png,s\na.png,s\n", "repeats"),
        ("path,source\n,s\n", "empty path"),
    ],
)
def test_read_manifest_invalid(tmp_path: Path, text: str, reason: str) -> None:
    (tmp_path / "manifest.csv").write_text(text)
    with pytest.raises(XRayDenoiseError, match=reason) as info:
        read_manifest(tmp_path)
    assert "manifest.csv" in str(info.value)


def test_write_manifest_roundtrip(tmp_path: Path) -> None:
    records = [_record("b/2.png", "s", "9"), _record("a/1.png", "t")]
    records.append(Record(path=tmp_path / "c.png", fields={**fill_fields({"path": "c.png"}), "note": "x, \"y\""}))
    path = write_manifest(records, tmp_path / "manifest.csv")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert path.stat().st_mode & 0o044 == 0o044  # readable by others, unlike a mkstemp file
    back = read_manifest(tmp_path)
    assert [r.image_id for r in back] == ["b/2.png", "a/1.png", "c.png"]
    assert back[0].path == tmp_path / "b/2.png" and back[0].patient_key == "s:9"
    assert back[2].get("note") == 'x, "y"' and back[1].get("age_group") == "unknown"
    assert path.read_text().splitlines()[0] == ",".join(DEV_COLUMNS) + ",note"


# --------------------------------------------------------------------------- readers

NIH_HEADER = [
    "Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
    "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]",
]


def _nih_tree(root: Path) -> Path:
    rows = [
        ["00000001_000.png", "No Finding", "0", "1", "12", "M", "PA", "2682", "2749", "0.143", "0.143"],
        ["00000001_001.png", "Cardiomegaly|Effusion", "1", "1", "13", "M", "AP", "2500", "2048", "0.168", "0.168"],
        ["00000002_000.png", "Pneumonia", "0", "2", "045Y", "F", "PA", "2048", "2500", "0.171", "0.171"],
        ["00000003_000.png", "No Finding", "0", "3", "81", "F", "AP", "3056", "2544", "0.139", "0.139"],
        ["00000004_000.png", "Hernia", "0", "4", "412", "M", "PA", "2992", "2991", "0.143", "0.143"],
        ["00000099_000.png", "No Finding", "0", "99", "30", "M", "PA", "2048", "2048", "0.171", "0.171"],
    ]
    _png(root / "images_001" / "images" / "00000001_000.png")
    _png(root / "images_001" / "images" / "00000001_001.png")
    _png(root / "images_002" / "images" / "00000002_000.png")
    _png(root / "images" / "00000003_000.png")
    _png(root / "images" / "00000004_000.png")
    # 00000099_000.png is missing
    with open(root / "Data_Entry_2017.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(NIH_HEADER)
        writer.writerows(rows)
    return root


def test_read_nih(tmp_path: Path, caplog) -> None:
    root = _nih_tree(tmp_path / "nih")
    with caplog.at_level(logging.WARNING):
        records = read_nih(root)
    assert "1 of 6" in caplog.text
    by_name = {r.path.name: r for r in records}
    assert set(by_name) == {"00000001_000.png", "00000001_001.png", "00000002_000.png", "00000003_000.png", "00000004_000.png"}
    first = by_name["00000001_000.png"]
    assert first.image_id == "images_001/images/00000001_000.png" and first.path.is_file()
    assert (first.get("age_group"), first.get("category"), first.get("patient_id")) == ("pediatric", "normal", "1")
    assert (first.get("source"), first.get("region"), first.get("modality")) == ("nih", "chest", "chest")
    assert first.get("institution") == "NIH Clinical Center, Bethesda MD, USA"
    assert (first.get("view"), first.get("sex"), first.get("original_width"), first.get("original_height")) == ("PA", "M", "2682", "2749")
    assert by_name["00000001_001.png"].get("category") == "lung_disease"
    assert by_name["00000001_001.png"].patient_key == first.patient_key == "nih:1"
    assert (by_name["00000002_000.png"].get("age"), by_name["00000002_000.png"].get("age_group")) == ("45", "adult")
    assert by_name["00000003_000.png"].get("age_group") == "elderly"
    assert by_name["00000003_000.png"].image_id == "images/00000003_000.png"
    assert by_name["00000004_000.png"].get("age_group") == "unknown"
    assert all(list(r.fields) == DEV_COLUMNS for r in records)
    # a written manifest reads back as the same records
    write_manifest(records, root / "manifest.csv")
    assert read_manifest(root) == records


def test_read_nih_without_images(tmp_path: Path) -> None:
    root = tmp_path / "nih"
    root.mkdir()
    (root / "Data_Entry_2017.csv").write_text(",".join(NIH_HEADER) + "\n00000001_000.png,No Finding,0,1,12,M,PA,1,1,1,1\n")
    with pytest.raises(XRayDenoiseError, match="Data_Entry_2017.csv"):
        read_nih(root)


def _mura_tree(root: Path) -> Path:
    _png(root / "train" / "XR_WRIST" / "patient00001" / "study1_positive" / "image1.png")
    _png(root / "train" / "XR_WRIST" / "patient00001" / "study1_positive" / "image2.png")
    _png(root / "train" / "XR_WRIST" / "patient00001" / "study2_negative" / "image1.png")
    _png(root / "valid" / "XR_FOREARM" / "patient11185" / "study1_negative" / "image1.png")
    _png(root / "valid" / "XR_FOREARM" / "patient11185" / "study1_negative" / "._image1.png")  # macOS junk
    (root / "train_image_paths.csv").write_text("MURA-v1.1/train/XR_WRIST/patient00001/study1_positive/image1.png\n")
    return root


def test_read_mura(tmp_path: Path) -> None:
    records = read_mura(_mura_tree(tmp_path / "mura"))
    assert [r.image_id for r in records] == [
        "train/XR_WRIST/patient00001/study1_positive/image1.png",
        "train/XR_WRIST/patient00001/study1_positive/image2.png",
        "train/XR_WRIST/patient00001/study2_negative/image1.png",
        "valid/XR_FOREARM/patient11185/study1_negative/image1.png",
    ]
    wrist, _, negative, forearm = records
    assert (wrist.get("region"), wrist.get("modality"), wrist.get("category"), wrist.get("finding")) == (
        "wrist", "extremity", "abnormal", "positive")
    assert (negative.get("category"), negative.get("finding")) == ("normal", "negative")
    assert (forearm.get("region"), forearm.get("patient_id"), forearm.get("source")) == ("forearm", "11185", "mura")
    assert wrist.patient_key == negative.patient_key == "mura:1"
    assert wrist.get("institution") == "Stanford (MURA)" and wrist.get("age_group") == "unknown"


def test_read_folder(tmp_path: Path) -> None:
    _png(tmp_path / "b" / "x.png", size=(10, 7))
    _png(tmp_path / "a.TIF", size=(5, 4))
    (tmp_path / "scan.dcm").write_bytes(b"not really dicom")
    (tmp_path / "notes.txt").write_text("no")
    _png(tmp_path / ".hidden" / "y.png")
    records = read_folder(tmp_path, source="mine")
    assert [r.image_id for r in records] == ["a.TIF", "b/x.png", "scan.dcm"]
    x = records[1]
    assert (x.get("width"), x.get("height"), x.get("bit_depth")) == ("10", "7", "8")
    assert (x.get("source"), x.get("region"), x.get("modality"), x.get("age_group")) == ("mine", "unknown", "unknown", "unknown")
    assert x.path == tmp_path.resolve() / "b" / "x.png"
    assert x.patient_key == "mine:image:b/x.png"
    assert records[2].get("width") == ""
    assert all(list(r.fields) == DEV_COLUMNS for r in records)


def test_read_dataset_dispatch(tmp_path: Path) -> None:
    nih = _nih_tree(tmp_path / "nih")
    assert {r.get("source") for r in read_dataset(nih)} == {"nih"}
    mura = _mura_tree(tmp_path / "mura")
    assert {r.get("source") for r in read_dataset(mura)} == {"mura"}
    plain = tmp_path / "plain"
    _png(plain / "one.png")
    assert [(r.image_id, r.get("source")) for r in read_dataset(plain)] == [("one.png", "folder")]
    with_manifest = tmp_path / "withmanifest"
    write_manifest([_record("z.png", "custom", "5")], with_manifest / "manifest.csv")
    records = read_dataset(with_manifest)
    assert [(r.image_id, r.patient_key) for r in records] == [("z.png", "custom:5")]
    assert read_dataset(with_manifest / "manifest.csv") == records
    assert [r.image_id for r in read_dataset(plain / "one.png")] == ["one.png"]
    with pytest.raises(XRayDenoiseError, match="nowhere"):
        read_dataset(tmp_path / "nowhere")


def test_read_dataset_dev(dev_records: list[Record]) -> None:
    assert read_dataset(settings.data_dir()) == dev_records


def test_the_folder_reader_lists_exactly_what_the_loader_reads():
    from xraydenoise.data.readers import IMAGE_SUFFIXES
    from xraydenoise.io import SUPPORTED_SUFFIXES

    assert set(IMAGE_SUFFIXES) == set(SUPPORTED_SUFFIXES)
