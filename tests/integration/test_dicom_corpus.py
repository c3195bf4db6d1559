"""DICOM from other writers through load_image/save_image: decoded, re-encoded, conformant.

Every corpus file (pydicom's test files, dcmtk and gdcm conversions of a real radiograph; see
tests/dicom_corpus.py) must decode, come back bit-exact through an identity "denoiser",
keep its lossless transfer syntax where an encoder exists, and give dciodvfy no error that
the input did not already have.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from tests.dicom_corpus import (
    FROM_PYDICOM,
    FROM_TOOLS,
    MULTI_FRAME,
    build_corpus,
    build_multi_frame_corpus,
    dciodvfy_errors,
)
from xraydenoise.io import load_image, save_image
from xraydenoise.io.dicom import SERIES_NUMBER_OFFSET, output_transfer_syntax

NAMES = sorted([*FROM_PYDICOM, *FROM_TOOLS, "dx12.dcm"])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("dicom") / "corpus")


@pytest.mark.parametrize("name", NAMES)
def test_corpus_file_round_trips_and_stays_conformant(corpus, tmp_path, name):
    path, expected_syntax = corpus[name]
    img = load_image(path)
    assert img.format == "dicom" and img.pixels.ndim == 2
    syntax, note = output_transfer_syntax(img.dicom)
    assert syntax == expected_syntax
    source_syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    assert (note is None) == (not source_syntax.is_compressed or syntax == source_syntax)

    out = save_image(tmp_path / name, img.with_float(img.to_float()), method="identity")
    written = pydicom.dcmread(out)
    assert written.file_meta.TransferSyntaxUID == expected_syntax
    np.testing.assert_array_equal(load_image(out).pixels, img.pixels)  # nothing lost on the way
    assert written.SeriesInstanceUID != img.dicom.SeriesInstanceUID
    assert written.SeriesNumber == int(img.dicom.get("SeriesNumber") or 0) + SERIES_NUMBER_OFFSET
    assert written.SourceImageSequence[0].ReferencedSOPInstanceUID == img.dicom.SOPInstanceUID
    assert written.ImageType[0] == "DERIVED"

    new_errors = dciodvfy_errors(out) - dciodvfy_errors(path)
    assert not new_errors, f"dciodvfy finds new errors in the output of {name}: {sorted(new_errors)}"


def test_padding_of_a_real_radiograph_survives_denoising(corpus, tmp_path):
    path, _ = corpus["dx12_jpeg_ls.dcm"]
    img = load_image(path)
    source = pydicom.dcmread(path).pixel_array
    assert img.padding is not None and (source[:, :12] == 0).all()
    smeared = img.with_float(np.full(img.pixels.shape, 0.5, np.float32))
    written = pydicom.dcmread(save_image(tmp_path / "o.dcm", smeared, method="flat"))
    assert (written.pixel_array[:, :12] == 0).all() and (written.pixel_array[:, 12:] == 2048).all()
    assert (written.SmallestImagePixelValue, written.LargestImagePixelValue) == (0, 2048)
    assert written.private_block(0x0029, "CORPUS VENDOR")[0x01].value == "private value"


@pytest.fixture(scope="module")
def multi_frame_corpus(tmp_path_factory):
    return build_multi_frame_corpus(tmp_path_factory.mktemp("dicom") / "multi")


@pytest.mark.parametrize("name", sorted(MULTI_FRAME))
def test_multi_frame_file_is_denoised_frame_by_frame(multi_frame_corpus, tmp_path, name):
    path, expected_syntax = multi_frame_corpus[name]
    img = load_image(path, all_frames=True)
    assert img.frames.shape == (3, 96, 96)
    seen = []

    def darker(frame):
        seen.append(frame.shape)
        return frame * 0.5

    out = save_image(tmp_path / name, img.map_frames(darker), method="half")
    assert seen == [(96, 96)] * 3
    written = pydicom.dcmread(out)
    assert written.file_meta.TransferSyntaxUID == expected_syntax and written.NumberOfFrames == 3
    expected = np.rint(img.frames.astype(np.float64) * 0.5).astype(np.uint16)
    np.testing.assert_array_equal(load_image(out, all_frames=True).frames, expected)
    new_errors = dciodvfy_errors(out) - dciodvfy_errors(path)
    assert not new_errors, f"dciodvfy finds new errors in the output of {name}: {sorted(new_errors)}"
