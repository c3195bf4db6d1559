"""DICOM as scanners and PACS write it, through the command line.

A corpus of files from other writers (tests/dicom_corpus.py) is denoised by ``xraydenoise
denoise`` and every output is checked: same name, decodable, the expected transfer syntax,
a derived series, and no dciodvfy error the input did not have. Bad objects in the same
batch fail in one line each while the good files are still written.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.dicom_corpus import (
    PYDICOM_FILES,
    build_corpus,
    build_multi_frame_corpus,
    dciodvfy_errors,
    waveform_file,
)
from xraydenoise.io import load_image

FILTER = ("--method", "gaussian", "--sigma", "5")  # fast: these tests are about files, not quality


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("dicom-cli") / "corpus"
    return folder, build_corpus(folder)


def outputs(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


def test_corpus_round_trips_through_the_cli(corpus_dir, tmp_path, cli):
    folder, corpus = corpus_dir
    out = tmp_path / "out"
    result = cli("denoise", folder, "-o", out, *FILTER, "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and not result.error_lines, result.stderr
    assert "TIFF" not in result.stderr and "Warning" not in result.stderr  # no library chatter
    assert outputs(out) == sorted(corpus)
    for name, (source, syntax) in corpus.items():
        written = pydicom.dcmread(out / name)
        assert written.file_meta.TransferSyntaxUID == syntax, name
        before, after = load_image(source), load_image(out / name)
        assert after.pixels.shape == before.pixels.shape and after.bit_depth == before.bit_depth, name
        assert "gaussian" in written.SeriesDescription and written.ImageType[0] == "DERIVED", name
        new_errors = dciodvfy_errors(out / name) - dciodvfy_errors(source)
        assert not new_errors, f"{name}: {sorted(new_errors)}"
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == len(set(notes)), result.stderr  # said once per run, not once per file


def test_a_series_denoised_by_two_workers_stays_one_series(tmp_path, cli):
    src = tmp_path / "series"
    src.mkdir()
    template = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
    for number in (1, 2, 3):
        ds = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.InstanceNumber = number
        ds.save_as(src / f"mr{number}.dcm", enforce_file_format=True)
    out = tmp_path / "out"
    result = cli("denoise", src, "-o", out, *FILTER, "--workers", "2")
    assert result.returncode == 0, result.stderr
    written = [pydicom.dcmread(out / f"mr{n}.dcm") for n in (1, 2, 3)]
    assert len({ds.SeriesInstanceUID for ds in written}) == 1
    assert written[0].SeriesInstanceUID != template.SeriesInstanceUID
    assert len({ds.SOPInstanceUID for ds in written}) == 3
    assert {int(ds.SeriesNumber) for ds in written} == {int(template.SeriesNumber) + 1000}
    sources = {ds.SourceImageSequence[0].ReferencedSOPInstanceUID for ds in written}
    assert sources == {pydicom.dcmread(src / f"mr{n}.dcm").SOPInstanceUID for n in (1, 2, 3)}


def test_two_series_in_one_batch_stay_two_series(tmp_path, cli):
    src = tmp_path / "two"
    src.mkdir()
    series = {}
    for label in ("a", "b"):
        uid = pydicom.uid.generate_uid()
        for number in (1, 2):
            ds = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
            ds.SeriesInstanceUID = uid
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
            ds.InstanceNumber = number
            ds.save_as(src / f"{label}{number}.dcm", enforce_file_format=True)
        series[label] = uid
    out = tmp_path / "out"
    result = cli("denoise", src, "-o", out, *FILTER, "--workers", "2")
    assert result.returncode == 0, result.stderr
    derived = {label: {pydicom.dcmread(out / f"{label}{n}.dcm").SeriesInstanceUID for n in (1, 2)} for label in series}
    assert all(len(uids) == 1 for uids in derived.values())  # each input series is one output series
    assert derived["a"] != derived["b"] and not (derived["a"] | derived["b"]) & set(series.values())


BAD = {
    "colour.dcm": ("examples_rgb_color.dcm", "colour DICOM"),
    "palette.dcm": ("examples_palette.dcm", "PALETTE COLOR"),
    "report.dcm": ("reportsi.dcm", "SR"),
    "dose.dcm": ("rtdose.dcm", "RT Dose"),
    "plan.dcm": ("rtplan.dcm", "RT Plan"),
    "truncated.dcm": ("MR_truncated.dcm", "less than expected"),
    "ecg.dcm": (None, "holds waveforms, not an image"),
}


def test_bad_objects_fail_in_one_line_and_the_good_ones_are_written(tmp_path, cli):
    src = tmp_path / "batch"
    src.mkdir()
    for name, (source, _) in BAD.items():
        if source is None:
            waveform_file(src / name)
        else:
            shutil.copyfile(PYDICOM_FILES / source, src / name)
    shutil.copyfile(PYDICOM_FILES / "CT_small.dcm", src / "good_ct.dcm")
    shutil.copyfile(PYDICOM_FILES / "MR_small_RLE.dcm", src / "good_mr.dcm")
    out = tmp_path / "out"
    result = cli("denoise", src, "-o", out, *FILTER)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert outputs(out) == ["good_ct.dcm", "good_mr.dcm"]
    lines = result.error_lines
    assert len(lines) == len(BAD), result.stderr
    for name, (_, words) in BAD.items():
        (line,) = [line for line in lines if str(src / name) in line]
        assert words in line, line


def _uid_named_inputs(src: Path) -> list[Path]:
    src.mkdir(parents=True)
    names = ["IM0001", "1.2.840.113619.2.55.3", "1.2.840.113619.2.55.4"]
    for name in names:
        ds = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(src / name, enforce_file_format=True)
    return [src / name for name in names]


def test_extension_less_and_uid_named_files_keep_their_names(tmp_path, cli):
    inputs = _uid_named_inputs(tmp_path / "pacs")
    out = tmp_path / "out"
    result = cli("denoise", tmp_path / "pacs", "-o", out, *FILTER)
    assert result.returncode == 0, result.stderr
    assert outputs(out) == sorted(p.name for p in inputs)
    for path in inputs:
        np.testing.assert_array_equal(load_image(out / path.name).pixels.shape, (64, 64))

    as_dcm = tmp_path / "as_dcm"
    result = cli("denoise", tmp_path / "pacs", "-o", as_dcm, *FILTER, "--format", "dcm")
    assert result.returncode == 0, result.stderr
    assert outputs(as_dcm) == sorted(f"{p.name}.dcm" for p in inputs)  # no two names merged


def make_media(media: Path) -> list[str]:
    """A DICOM file set (DICOMDIR + PT*/ST*/SE*/IM* files) as on a CD; returns the image paths."""
    from pydicom.fileset import FileSet

    fs = FileSet()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        fs.add(pydicom.dcmread(PYDICOM_FILES / name))
    fs.write(media)
    referenced = sorted(p.relative_to(media).as_posix() for p in media.rglob("IM*"))
    assert len(referenced) == 2
    return referenced


def test_folder_with_a_dicomdir_denoises_its_images(tmp_path, cli):
    media = tmp_path / "media"
    referenced = make_media(media)
    out = tmp_path / "out"
    result = cli("denoise", media, "-o", out, *FILTER)
    assert result.returncode == 0, result.stderr  # the DICOMDIR itself is no failed file
    assert not result.error_lines and outputs(out) == referenced


def test_dicomdir_given_as_input_is_followed(tmp_path, cli):
    media = tmp_path / "media"
    referenced = make_media(media)
    out = tmp_path / "out"
    result = cli("denoise", media / "DICOMDIR", "-o", out, *FILTER)
    assert result.returncode == 0, result.stderr
    assert len(outputs(out)) == len(referenced), result.stderr


def test_an_uncompressed_fallback_is_said_once_per_run(corpus_dir, tmp_path, cli):
    folder, corpus = corpus_dir
    src = tmp_path / "jpeg_lossless"
    src.mkdir()
    for copy in ("a.dcm", "b.dcm"):
        shutil.copyfile(corpus["dx12_jpeg_lossless_sv1.dcm"][0], src / copy)
    result = cli("denoise", src, "-o", tmp_path / "out", *FILTER)
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "Explicit VR Little Endian" in line]
    assert len(notes) == 1 and "JPEG Lossless" in notes[0], result.stderr


def test_multi_frame_files_are_denoised_through_the_cli(tmp_path, cli):
    corpus = build_multi_frame_corpus(tmp_path / "multi")
    out = tmp_path / "out"
    result = cli("denoise", tmp_path / "multi", "-o", out, *FILTER)
    assert result.returncode == 0, result.stderr
    assert outputs(out) == sorted(corpus)
    for name, (source, syntax) in corpus.items():
        written = pydicom.dcmread(out / name)
        assert written.NumberOfFrames == 3 and written.file_meta.TransferSyntaxUID == syntax
        assert not dciodvfy_errors(out / name) - dciodvfy_errors(source), name
