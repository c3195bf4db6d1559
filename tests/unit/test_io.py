"""Tests of xraydenoise.io: bit-exact round trips, clean errors, atomic writes, DICOM headers."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import PIL.Image
import pydicom
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from tests.conftest import require_dev_data
from tests.dicom_corpus import waveform_file
from xraydenoise import settings as xsettings
from xraydenoise.errors import ImageReadError, ImageWriteError
from xraydenoise.io import SUPPORTED_SUFFIXES, Image, is_supported_path, load_image, save_image
from xraydenoise.io.dicom import dicomdir_referenced_files, is_dicom_file, is_dicomdir, output_transfer_syntax

RNG = np.random.default_rng(1234)
DX_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation


# --------------------------------------------------------------------------- helpers


def full_range(dtype, shape=(37, 53)) -> np.ndarray:
    """Random values that include both ends of the dtype's range."""
    info = np.iinfo(dtype)
    arr = RNG.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    arr.flat[0], arr.flat[-1] = info.min, info.max
    return arr


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def craft_png(arr: np.ndarray, bit_depth: int, colour_type: int) -> bytes:
    """A minimal PNG (filter 0 rows), for headers and bit depths Pillow will not write."""
    arr = np.asarray(arr)
    height = arr.shape[0]
    width = arr.shape[1]
    raw = arr.astype(">u2" if bit_depth == 16 else "u1").reshape(height, -1)
    rows = b"".join(b"\x00" + row.tobytes() for row in raw)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(rows))
            + _chunk(b"IEND", b""))


def png_ihdr(path: Path) -> tuple[int, int, int, int]:
    width, height, depth, colour = struct.unpack(">IIBB", path.read_bytes()[16:26])
    return width, height, depth, colour


def no_partials(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".partial")]


def make_dicom(
    stored: np.ndarray,
    *,
    bits_stored: int,
    photometric: str = "MONOCHROME2",
    signed: bool = False,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> Dataset:
    """A DX-like dataset with the header elements the writer must keep."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = DX_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "Test^Patient"
    ds.PatientID = "PID-0042"
    ds.Modality = "DX"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = 16 if bits_stored > 8 else 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(signed)
    ds.RescaleSlope = "1.5"
    ds.RescaleIntercept = "-1024"
    ds.WindowCenter = "2047"
    ds.WindowWidth = "4096"
    block = ds.private_block(0x0011, "XRAYDENOISE TEST", create=True)
    block.add_new(0x01, "LO", "private value")
    if ds.BitsAllocated == 8:
        ds.PixelData = stored.astype(np.uint8).tobytes()
    else:
        ds.PixelData = stored.astype("<i2" if signed else "<u2").tobytes()
    ds["PixelData"].VR = "OW" if ds.BitsAllocated == 16 else "OB"
    return ds


def write_dicom_file(path: Path, ds: Dataset) -> Path:
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def private_value(ds: Dataset) -> str:
    return ds.private_block(0x0011, "XRAYDENOISE TEST")[0x01].value


@pytest.fixture(scope="module")
def dev_png() -> Path:
    """First NIH radiograph of the development data set (8-bit PNG)."""
    manifest = require_dev_data()
    with manifest.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["source"] == "nih":
                return xsettings.data_dir() / row["path"]
    pytest.fail("no NIH image in the development data's manifest")


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_round_trip_is_bit_exact(tmp_path, dtype):
    arr = full_range(dtype)
    out = save_image(tmp_path / "a.png", Image(arr, "png", np.iinfo(dtype).max))
    assert png_ihdr(out)[2:] == (np.iinfo(dtype).bits, 0)  # 8/16-bit greyscale on disk
    img = load_image(out)
    assert img.format == "png" and img.pixels.dtype == dtype
    assert img.max_value == np.iinfo(dtype).max and img.bit_depth == np.iinfo(dtype).bits
    np.testing.assert_array_equal(img.pixels, arr)
    again = load_image(save_image(tmp_path / "b.png", img))
    np.testing.assert_array_equal(again.pixels, arr)


def test_png_16bit_every_value_survives(tmp_path):
    arr = RNG.permutation(np.arange(65536, dtype=np.uint16)).reshape(256, 256)
    img = load_image(save_image(tmp_path / "all.png", Image(arr, "png", 65535)))
    np.testing.assert_array_equal(img.pixels, arr)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_round_trip_is_bit_exact(tmp_path, dtype):
    if dtype == np.float32:
        arr = RNG.random((29, 31), dtype=np.float32)
        arr[0, 0], arr[0, 1], arr[0, 2] = 0.0, 1.0, np.float32(1e-30)
        max_value = 1.0
    else:
        arr = full_range(dtype, (29, 31))
        max_value = np.iinfo(dtype).max
    img = load_image(save_image(tmp_path / "a.tif", Image(arr, "tiff", max_value)))
    assert img.format == "tiff" and img.pixels.dtype == dtype and img.max_value == max_value
    np.testing.assert_array_equal(img.pixels, arr)
    again = load_image(save_image(tmp_path / "b.tiff", img))
    np.testing.assert_array_equal(again.pixels, arr)
    assert again.bit_depth == {np.uint8: 8, np.uint16: 16, np.float32: 32}[dtype]


def test_miniswhite_tiff_is_inverted_and_restored(tmp_path):
    stored = full_range(np.uint16, (8, 9))
    src = tmp_path / "mw.tif"
    tifffile.imwrite(src, stored, photometric="miniswhite")
    img = load_image(src)
    assert img.photometric == "MONOCHROME1"
    np.testing.assert_array_equal(img.pixels, 65535 - stored)
    out = save_image(tmp_path / "out.tif", img)
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].photometric == tifffile.PHOTOMETRIC.MINISWHITE
        np.testing.assert_array_equal(tif.pages[0].asarray(), stored)


def test_real_dev_png_round_trips(tmp_path, dev_png):
    img = load_image(dev_png)
    assert img.pixels.dtype == np.uint8 and img.pixels.ndim == 2 and img.source_path == dev_png
    for name in ("copy.png", "copy.tif"):
        again = load_image(save_image(tmp_path / name, img))
        np.testing.assert_array_equal(again.pixels, img.pixels)


def test_float_image_to_png_is_quantised_to_16_bit(tmp_path):
    arr = np.array([[0.0, 0.5, 1.0, 1.5], [-0.25, 1 / 65535, 0.25, 0.75]], np.float32)
    out = save_image(tmp_path / "f.png", Image(arr, "tiff", 1.0))
    assert png_ihdr(out)[2] == 16
    expected = np.rint(np.clip(arr, 0, 1) * 65535).astype(np.uint16)
    np.testing.assert_array_equal(load_image(out).pixels, expected)


def test_float_tiff_outside_unit_range_loads_unclipped(tmp_path):
    arr = np.array([[-0.5, 0.25], [1.0, 2.5]], np.float32)
    tifffile.imwrite(tmp_path / "f.tif", arr)
    img = load_image(tmp_path / "f.tif")
    np.testing.assert_array_equal(img.to_float(), arr)
    np.testing.assert_array_equal(img.with_float(img.to_float()).pixels, np.clip(arr, 0, 1))


# --------------------------------------------------------------------------- Image methods


@pytest.mark.parametrize(("dtype", "max_value"), [(np.uint8, 255), (np.uint16, 65535), (np.uint16, 4095)])
def test_to_float_with_float_round_trip_is_exact(dtype, max_value):
    arr = RNG.integers(0, max_value, (16, 16), endpoint=True).astype(dtype)
    arr.flat[:2] = 0, max_value
    img = Image(arr, "dicom" if max_value == 4095 else "png", max_value)
    f = img.to_float()
    assert f.dtype == np.float32 and f.min() == 0.0 and f.max() == 1.0
    back = img.with_float(f)
    assert back.pixels.dtype == dtype and back.format == img.format
    np.testing.assert_array_equal(back.pixels, arr)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, (3, 4), elements=st.floats(-2, 3, allow_nan=False)),
       st.sampled_from([(np.uint8, 255), (np.uint16, 65535), (np.uint16, 1023)]))
def test_with_float_clips_rounds_and_casts(values, kind):
    dtype, max_value = kind
    img = Image(np.zeros((1, 1), dtype), "png", max_value)
    out = img.with_float(values).pixels
    assert out.dtype == dtype and out.max() <= max_value
    expected = np.clip(values, 0, 1) * max_value
    assert np.abs(out.astype(np.float64) - expected).max() <= 0.5 + 1e-3


def test_with_float_keeps_header_and_float_images_clip():
    ds = Dataset()
    img = Image(np.zeros((2, 2), np.uint16), "dicom", 4095, dicom=ds, photometric="MONOCHROME1")
    new = img.with_float(np.full((2, 2), 0.5))
    assert new.dicom is ds and new.photometric == "MONOCHROME1" and new.max_value == 4095
    assert new.pixels.tolist() == [[2048, 2048], [2048, 2048]]
    f = Image(np.zeros((1, 2), np.float32), "tiff", 1.0).with_float(np.array([[-1.0, 7.0]]))
    assert f.pixels.dtype == np.float32 and f.pixels.tolist() == [[0.0, 1.0]]
    with pytest.raises(ValueError, match="NaN"):
        img.with_float(np.full((2, 2), np.nan))


def test_image_validates_its_fields():
    with pytest.raises(ValueError, match="2-D"):
        Image(np.zeros((2, 2, 3), np.uint8), "png", 255)
    with pytest.raises(TypeError, match="int32"):
        Image(np.zeros((2, 2), np.int32), "png", 255)
    with pytest.raises(ValueError, match="format"):
        Image(np.zeros((2, 2), np.uint8), "jpeg", 255)
    assert Image(np.zeros((2, 2)), "tiff", 1.0).pixels.dtype == np.float32


def test_bit_depth():
    assert Image(np.zeros((1, 1), np.uint16), "dicom", 4095).bit_depth == 12
    assert Image(np.zeros((1, 1), np.uint16), "png", 65535).bit_depth == 16
    assert Image(np.zeros((1, 1), np.float32), "tiff", 1.0).bit_depth == 32


def test_is_supported_path(tmp_path):
    for suffix in SUPPORTED_SUFFIXES:
        assert is_supported_path(f"x{suffix}") and is_supported_path(f"X{suffix.upper()}")
    assert not is_supported_path("x.jpg") and not is_supported_path(tmp_path)
    raw = tmp_path / "1.2.840.113619.2.55"
    raw.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)
    text = tmp_path / "README"
    text.write_text("hello")
    assert is_supported_path(raw) and not is_supported_path(text)


# --------------------------------------------------------------------------- colour


def test_equal_rgb_channels_become_one(tmp_path):
    grey = full_range(np.uint8, (6, 7))
    PIL.Image.fromarray(np.dstack([grey] * 3)).save(tmp_path / "rgb.png")
    PIL.Image.fromarray(np.dstack([grey] * 3 + [np.full_like(grey, 7)])).save(tmp_path / "rgba.png")
    PIL.Image.fromarray(np.dstack([grey, np.full_like(grey, 9)]), "LA").save(tmp_path / "la.png")
    pal = PIL.Image.fromarray(grey).convert("P")
    pal.putpalette([v for i in range(256) for v in (i, i, i)])
    pal.save(tmp_path / "p.png")
    tifffile.imwrite(tmp_path / "rgb.tif", np.dstack([grey] * 3), photometric="rgb")
    for name in ("rgb.png", "rgba.png", "la.png", "p.png", "rgb.tif"):
        img = load_image(tmp_path / name)
        assert img.pixels.shape == grey.shape, name
        np.testing.assert_array_equal(img.pixels, grey, err_msg=name)


@pytest.mark.parametrize("name", ["colour.png", "colour.tif", "palette.png"])
def test_real_colour_is_refused(tmp_path, name):
    arr = np.dstack([full_range(np.uint8, (5, 5)) for _ in range(3)])
    path = tmp_path / name
    if name == "colour.png":
        PIL.Image.fromarray(arr).save(path)
    elif name == "colour.tif":
        tifffile.imwrite(path, arr, photometric="rgb")
    else:
        pal = PIL.Image.fromarray(arr[..., 0]).convert("P")
        pal.putpalette([v for i in range(256) for v in (i, 255 - i, 0)])
        pal.save(path)
    with pytest.raises(ImageReadError, match="colour image \\(channels differ\\); convert to greyscale") as exc:
        load_image(path)
    assert str(path) in str(exc.value)


def test_16bit_colour_png_is_refused_not_truncated(tmp_path):
    grey = full_range(np.uint16, (4, 5))
    path = tmp_path / "rgb16.png"
    path.write_bytes(craft_png(np.dstack([grey] * 3), 16, 2))
    with pytest.raises(ImageReadError, match="16-bit colour"):
        load_image(path)


# --------------------------------------------------------------------------- bad input


def _bad_files(tmp: Path) -> dict[str, Path]:
    good = tmp / "good.png"
    PIL.Image.fromarray(full_range(np.uint8, (64, 64))).save(good, compress_level=0)
    data = good.read_bytes()
    files = {
        "missing": tmp / "missing.png",
        "empty": tmp / "empty.png",
        "truncated": tmp / "truncated.png",
        "text": tmp / "text.png",
        "text_tif": tmp / "text.tif",
        "directory": tmp / "folder.png",
        "unknown_suffix": tmp / "image.jpg",
        "multipage": tmp / "pages.tif",
        "stack": tmp / "stack.tif",
        "two_samples": tmp / "two_samples.tif",
        "volume": tmp / "volume.tif",
        "bad_tiff_body": tmp / "body.tif",
        "truncated_tiff": tmp / "truncated.tif",
        "int16_tiff": tmp / "int16.tif",
    }
    files["empty"].write_bytes(b"")
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["text"].write_text("this is not a picture\n")
    files["text_tif"].write_text("neither is this\n")
    files["directory"].mkdir()
    PIL.Image.fromarray(np.zeros((4, 4), np.uint8)).save(files["unknown_suffix"], format="PNG")
    with tifffile.TiffWriter(files["multipage"]) as tw:
        tw.write(np.zeros((4, 4), np.uint8))
        tw.write(np.zeros((4, 4), np.uint8))
    tifffile.imwrite(files["stack"], np.zeros((3, 4, 5), np.uint8), photometric="minisblack")
    tifffile.imwrite(files["two_samples"], np.zeros((4, 5, 2), np.uint8), photometric="minisblack",
                     planarconfig="contig")
    tifffile.imwrite(files["volume"], np.zeros((3, 16, 16), np.uint8), photometric="minisblack",
                     volumetric=True, tile=(16, 16))
    files["bad_tiff_body"].write_bytes(b"II*\x00" + b"\xff" * 60)
    tifffile.imwrite(files["truncated_tiff"], full_range(np.uint16, (64, 64)), compression="zlib")
    files["truncated_tiff"].write_bytes(files["truncated_tiff"].read_bytes()[:-3000])
    tifffile.imwrite(files["int16_tiff"], np.zeros((4, 4), np.int16))
    return files


_EXPECTED_REASON = {
    "missing": "no such file",
    "empty": "empty file",
    "truncated": "truncated",
    "text": "not a PNG file",
    "text_tif": "not a TIFF file",
    "directory": "is a directory",
    "unknown_suffix": "unsupported file type .jpg",
    "multipage": "2 pages",
    "stack": "3 pages",
    "two_samples": "2 samples per pixel",
    "volume": "3-D TIFF",
    "bad_tiff_body": "no readable image",
    "truncated_tiff": "truncated TIFF",
    "int16_tiff": "sample type int16",
}


def test_bad_inputs_raise_one_line_image_read_error(tmp_path):
    files = _bad_files(tmp_path)
    assert files.keys() == _EXPECTED_REASON.keys()
    for name, path in files.items():
        with pytest.raises(ImageReadError) as exc:
            load_image(path)
        message = str(exc.value)
        assert message.startswith(f"{path}: "), (name, message)
        assert _EXPECTED_REASON[name] in message, (name, message)
        assert "\n" not in message, (name, message)


_MAGICS = {".png": b"\x89PNG\r\n\x1a\n", ".tif": b"II*\x00", ".dcm": b"\0" * 128 + b"DICM"}


@settings(max_examples=60, deadline=None)
@given(suffix=st.sampled_from(sorted(_MAGICS)), body=st.binary(min_size=0, max_size=200),
       magic=st.booleans())
def test_junk_gives_only_image_read_error(tmp_path_factory, suffix, body, magic):
    path = tmp_path_factory.mktemp("junk") / f"junk{suffix}"
    path.write_bytes((_MAGICS[suffix] if magic else b"") + body)
    try:
        load_image(path)
    except ImageReadError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)


def test_one_pixel_image_loads(tmp_path):
    PIL.Image.fromarray(np.array([[200]], np.uint8)).save(tmp_path / "one.png")
    assert load_image(tmp_path / "one.png").pixels.tolist() == [[200]]


def test_content_decides_the_reader(tmp_path):
    arr = full_range(np.uint16, (3, 3))
    tifffile.imwrite(tmp_path / "actually_tiff.png", arr)
    img = load_image(tmp_path / "actually_tiff.png")
    assert img.format == "tiff"
    np.testing.assert_array_equal(img.pixels, arr)


def test_nan_or_inf_float_tiff_is_refused(tmp_path):
    for bad in (np.nan, np.inf):
        path = tmp_path / f"bad_{bad}.tif"
        arr = np.zeros((4, 4), np.float32)
        arr[1, 2] = bad
        tifffile.imwrite(path, arr)
        with pytest.raises(ImageReadError, match="contains NaN or Inf") as exc:
            load_image(path)
        assert str(path) in str(exc.value)


def test_png_bomb_header_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IEND", b""))
    with pytest.raises(ImageReadError, match="100000x100000") as exc:
        load_image(path)
    assert str(path) in str(exc.value) and str(xsettings.max_pixels()) in str(exc.value)


def test_max_pixels_argument_and_tiff_header(tmp_path):
    PIL.Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((20, 30), np.uint16))
    for name in ("a.png", "a.tif"):
        with pytest.raises(ImageReadError, match="600 pixels, above the limit of 599"):
            load_image(tmp_path / name, max_pixels=599)
        assert load_image(tmp_path / name, max_pixels=600).pixels.shape == (20, 30)


def test_pillow_guard_does_not_preempt_ours(tmp_path, monkeypatch):
    # With Pillow's own limit far below ours, Pillow must not raise its own error type.
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 10)
    PIL.Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "a.png")
    assert load_image(tmp_path / "a.png").pixels.shape == (40, 40)


# --------------------------------------------------------------------------- saving


def test_save_creates_folders_and_readable_files(tmp_path):
    out = save_image(tmp_path / "a" / "b" / "c.png", Image(np.zeros((2, 2), np.uint8), "png", 255))
    assert out == tmp_path / "a" / "b" / "c.png" and out.is_file()
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
    assert no_partials(out.parent)


def test_failed_replace_leaves_no_temp_and_keeps_target(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous result")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(ImageWriteError, match="No space left on device") as exc:
        save_image(target, Image(np.zeros((4, 4), np.uint8), "png", 255))
    assert str(exc.value).startswith(f"{target}: ")
    assert target.read_bytes() == b"previous result"
    assert no_partials(tmp_path)


def test_failing_encoder_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "out.tif"
    target.write_bytes(b"keep me")

    def half_write(fh, *args, **kwargs):
        fh.write(b"II*\x00 partial")
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(tifffile, "imwrite", half_write)
    with pytest.raises(ImageWriteError, match="encoder exploded"):
        save_image(target, Image(np.zeros((4, 4), np.uint16), "tiff", 65535))
    assert target.read_bytes() == b"keep me" and no_partials(tmp_path)


def test_parent_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "out.png"
    with pytest.raises(ImageWriteError) as exc:
        save_image(target, Image(np.zeros((2, 2), np.uint8), "png", 255))
    assert str(exc.value).startswith(f"{target}: ")


def test_overwrite_false_and_unknown_suffix(tmp_path):
    img = Image(np.zeros((2, 2), np.uint8), "png", 255)
    target = tmp_path / "x.png"
    target.write_bytes(b"old")
    with pytest.raises(ImageWriteError, match="exists"):
        save_image(target, img, overwrite=False)
    assert target.read_bytes() == b"old"
    save_image(target, img)  # overwrite=True is the default
    assert load_image(target).pixels.shape == (2, 2)
    assert load_image(save_image(tmp_path / "new.png", img, overwrite=False)).pixels.shape == (2, 2)
    with pytest.raises(ImageWriteError, match="suffix"):
        save_image(tmp_path / "x.jpg", img)
    assert no_partials(tmp_path)


def test_refuses_to_overwrite_the_input(tmp_path, monkeypatch):
    src = tmp_path / "in.png"
    PIL.Image.fromarray(np.full((3, 3), 9, np.uint8)).save(src)
    before = src.read_bytes()
    img = load_image(src)
    (tmp_path / "link.png").symlink_to(src)
    monkeypatch.chdir(tmp_path)
    for alias in (src, Path("in.png"), tmp_path / "sub" / ".." / "in.png", tmp_path / "link.png"):
        with pytest.raises(ImageWriteError, match="refusing to overwrite the input"):
            save_image(alias, img.with_float(img.to_float() * 0))
    assert src.read_bytes() == before


# --------------------------------------------------------------------------- DICOM


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
@pytest.mark.parametrize("bits", [8, 12, 16])
def test_dicom_round_trip_is_bit_exact(tmp_path, photometric, bits):
    stored = full_range(np.uint16, (23, 19)) >> (16 - bits)
    src = write_dicom_file(tmp_path / "in.dcm", make_dicom(stored, bits_stored=bits, photometric=photometric))
    img = load_image(src)
    max_value = 2**bits - 1
    assert img.format == "dicom" and img.max_value == max_value and img.bit_depth == bits
    assert img.photometric == photometric and img.pixels.dtype == (np.uint8 if bits == 8 else np.uint16)
    expected = max_value - stored if photometric == "MONOCHROME1" else stored
    np.testing.assert_array_equal(img.pixels, expected)  # bright = dense in both

    out = save_image(tmp_path / "out.dcm", img, method="n2v")
    written = pydicom.dcmread(out)
    np.testing.assert_array_equal(written.pixel_array, stored)  # MONOCHROME1 stored values restored
    np.testing.assert_array_equal(load_image(out).pixels, img.pixels)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
@pytest.mark.parametrize("bits", [12, 16])
def test_real_radiograph_as_dicom_keeps_header(tmp_path, dev_png, photometric, bits):
    grey = load_image(dev_png).pixels.astype(np.uint32)
    stored = (grey * 65535 // 255 >> (16 - bits)).astype(np.uint16)
    if photometric == "MONOCHROME1":
        stored = (2**bits - 1 - stored).astype(np.uint16)
    ds = make_dicom(stored, bits_stored=bits, photometric=photometric)
    src = write_dicom_file(tmp_path / "in.dcm", ds)
    img = load_image(src)
    # Bright lungs stay dark, whatever the file's photometric interpretation.
    np.testing.assert_array_equal(img.pixels >> (bits - 8), grey)

    denoised = img.with_float(img.to_float())
    out = save_image(tmp_path / "out" / "denoised.dcm", denoised, method="n2v-unet")
    new = pydicom.dcmread(out)
    assert new.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    np.testing.assert_array_equal(new.pixel_array, stored)
    np.testing.assert_array_equal(load_image(out).pixels, img.pixels)
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "WindowCenter", "WindowWidth",
                    "RescaleSlope", "RescaleIntercept", "BitsStored", "BitsAllocated",
                    "PixelRepresentation", "PhotometricInterpretation", "Modality", "SOPClassUID"):
        assert new[keyword].value == ds[keyword].value, keyword
    assert private_value(new) == "private value"
    assert new.SOPInstanceUID != ds.SOPInstanceUID and new.SeriesInstanceUID != ds.SeriesInstanceUID
    assert new.file_meta.MediaStorageSOPInstanceUID == new.SOPInstanceUID
    assert list(new.ImageType) == ["DERIVED", "PRIMARY"]
    assert "n2v-unet" in new.DerivationDescription


def test_signed_dicom_is_offset_and_restored(tmp_path):
    stored = np.array([[-2048, -1, 0, 2047], [5, -5, 100, -100]], np.int16)
    src = write_dicom_file(tmp_path / "s.dcm", make_dicom(stored, bits_stored=12, signed=True))
    img = load_image(src)
    assert img.max_value == 4095
    np.testing.assert_array_equal(img.pixels, stored.astype(np.int32) + 2048)
    out = pydicom.dcmread(save_image(tmp_path / "o.dcm", img))
    assert out.PixelRepresentation == 1
    np.testing.assert_array_equal(out.pixel_array, stored)
    assert out.PixelData == pydicom.dcmread(src).PixelData


def test_signed_monochrome1_16bit(tmp_path):
    stored = np.array([[-32768, 32767, 0, -1]], np.int16)
    src = write_dicom_file(tmp_path / "s.dcm",
                           make_dicom(stored, bits_stored=16, signed=True, photometric="MONOCHROME1"))
    img = load_image(src)
    np.testing.assert_array_equal(img.pixels, 65535 - (stored.astype(np.int32) + 32768))
    out = pydicom.dcmread(save_image(tmp_path / "o.dcm", img))
    np.testing.assert_array_equal(out.pixel_array, stored)


def test_image_type_and_uid_details(tmp_path):
    ds = make_dicom(np.zeros((2, 2), np.uint16), bits_stored=12)
    ds.ImageType = "ORIGINAL"
    img = load_image(write_dicom_file(tmp_path / "a.dcm", ds))
    out = pydicom.dcmread(save_image(tmp_path / "b.dcm", img))
    assert list(out.ImageType) == ["DERIVED", "SECONDARY"]
    assert out.DerivationDescription  # even without a method name
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    img = load_image(write_dicom_file(tmp_path / "c.dcm", ds))
    out2 = pydicom.dcmread(save_image(tmp_path / "d.dcm", img, method="bm3d"))
    assert list(out2.ImageType) == ["DERIVED", "PRIMARY", "AXIAL"]
    assert out2.DerivationDescription == "Denoised with xraydenoise bm3d"
    assert out.SOPInstanceUID != out2.SOPInstanceUID  # every save gets its own UIDs
    assert img.dicom.SOPInstanceUID == ds.SOPInstanceUID  # the loaded dataset is untouched


def test_dicom_crop_updates_rows_and_columns(tmp_path):
    stored = full_range(np.uint16, (10, 12)) >> 4
    img = load_image(write_dicom_file(tmp_path / "a.dcm", make_dicom(stored, bits_stored=12)))
    crop = img.with_float(img.to_float()[2:7, 1:4])
    out = pydicom.dcmread(save_image(tmp_path / "b.dcm", crop))
    assert (out.Rows, out.Columns) == (5, 3)
    np.testing.assert_array_equal(out.pixel_array, stored[2:7, 1:4])


def test_implicit_vr_and_raw_dicom_inputs(tmp_path):
    stored = full_range(np.uint16, (6, 7)) >> 4
    ds = make_dicom(stored, bits_stored=12, transfer_syntax=ImplicitVRLittleEndian)
    img = load_image(write_dicom_file(tmp_path / "implicit.dcm", ds))
    np.testing.assert_array_equal(img.pixels, stored)
    out = pydicom.dcmread(save_image(tmp_path / "explicit.dcm", img))
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert out.PatientID == "PID-0042" and out.WindowCenter == 2047
    np.testing.assert_array_equal(out.pixel_array, stored)

    # A bare data set without preamble or file meta, as old PACS exports write.
    raw = tmp_path / "raw_no_suffix"
    bare = make_dicom(stored, bits_stored=12)
    del bare.file_meta
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, bare, implicit_vr=True, little_endian=True)
    raw.with_suffix(".dcm").write_bytes(buf.getvalue())
    img = load_image(raw.with_suffix(".dcm"))
    np.testing.assert_array_equal(img.pixels, stored)
    np.testing.assert_array_equal(load_image(save_image(tmp_path / "fixed.dcm", img)).pixels, stored)


def test_big_endian_input_is_written_little_endian(tmp_path):
    stored = full_range(np.uint16, (5, 6)) >> 4
    ds = make_dicom(stored, bits_stored=12, transfer_syntax=ExplicitVRBigEndian)
    ds.PixelData = stored.astype(">u2").tobytes()
    img = load_image(write_dicom_file(tmp_path / "be.dcm", ds))
    np.testing.assert_array_equal(img.pixels, stored)
    out = pydicom.dcmread(save_image(tmp_path / "le.dcm", img))
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian and out.BitsStored == 12
    np.testing.assert_array_equal(out.pixel_array, stored)


def test_uid_named_dicom_without_suffix_loads(tmp_path):
    stored = full_range(np.uint16, (4, 4)) >> 4
    path = write_dicom_file(tmp_path / "1.2.840.113619.2.55", make_dicom(stored, bits_stored=12))
    assert is_supported_path(path)
    np.testing.assert_array_equal(load_image(path).pixels, stored)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless, JPEGLSLossless])
@pytest.mark.parametrize("signed", [False, True])
def test_lossless_compressed_input_is_written_in_its_syntax(tmp_path, syntax, signed):
    stored = full_range(np.uint16, (40, 48)) >> 4  # openjpeg needs 32+ pixels a side
    if signed:
        stored = stored.astype(np.int16) - 2048
    ds = make_dicom(stored, bits_stored=12, signed=signed)
    ds.compress(syntax, generate_instance_uid=False)
    img = load_image(write_dicom_file(tmp_path / "in.dcm", ds))
    np.testing.assert_array_equal(img.pixels, stored.astype(np.int32) + (2048 if signed else 0))
    assert output_transfer_syntax(img.dicom) == (syntax, None)
    out = pydicom.dcmread(save_image(tmp_path / "out.dcm", img))
    assert out.file_meta.TransferSyntaxUID == syntax and out["PixelData"].is_undefined_length
    np.testing.assert_array_equal(out.pixel_array, stored)
    assert out.SOPInstanceUID == out.file_meta.MediaStorageSOPInstanceUID != ds.SOPInstanceUID


def test_missing_encoder_falls_back_to_explicit_little_endian_with_a_note(tmp_path, monkeypatch):
    from xraydenoise.io import dicom as xdicom

    stored = full_range(np.uint16, (9, 11)) >> 4
    ds = make_dicom(stored, bits_stored=12)
    ds.compress(JPEGLSLossless, generate_instance_uid=False)
    img = load_image(write_dicom_file(tmp_path / "in.dcm", ds))
    monkeypatch.setattr(xdicom, "_encoder_available", lambda uid: False)
    syntax, note = output_transfer_syntax(img.dicom)
    assert syntax == ExplicitVRLittleEndian and "JPEG-LS Lossless" in note and "xraydenoise[dicom]" in note
    out = pydicom.dcmread(save_image(tmp_path / "out.dcm", img))
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert not out["PixelData"].is_undefined_length
    np.testing.assert_array_equal(out.pixel_array, stored)


def test_uncompressed_inputs_need_no_note():
    for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian):
        ds = make_dicom(np.zeros((2, 2), np.uint16), bits_stored=12, transfer_syntax=syntax)
        assert output_transfer_syntax(ds) == (ExplicitVRLittleEndian, None)
    assert output_transfer_syntax(None) == (ExplicitVRLittleEndian, None)


def test_jpeg_baseline_input_is_decoded(tmp_path):
    grey = (np.add.outer(np.arange(16), np.arange(16)) * 8).astype(np.uint8)
    buf = io.BytesIO()
    PIL.Image.fromarray(grey).save(buf, format="JPEG", quality=90)
    ds = make_dicom(grey, bits_stored=8)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    img = load_image(write_dicom_file(tmp_path / "jpeg.dcm", ds))
    # Decoders may round the inverse DCT differently (libjpeg vs Pillow): one grey level.
    expected = np.asarray(PIL.Image.open(io.BytesIO(buf.getvalue())))
    np.testing.assert_allclose(img.pixels, expected, atol=1)
    syntax, note = output_transfer_syntax(img.dicom)
    assert syntax == ExplicitVRLittleEndian and "lossy" in note
    out = pydicom.dcmread(save_image(tmp_path / "plain.dcm", img))
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    np.testing.assert_array_equal(out.pixel_array, img.pixels)
    # Once lossy, always lossy (C.7.6.1.1.5), even when stored uncompressed.
    assert out.LossyImageCompression == "01" and out.LossyImageCompressionMethod == "ISO_10918_1"
    assert float(out.LossyImageCompressionRatio) > 0  # a 16x16 JPEG is larger than its pixels


@pytest.mark.parametrize("uid", ["1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.80"])
def test_undecodable_transfer_syntax(tmp_path, uid):
    ds = make_dicom(np.zeros((8, 8), np.uint16), bits_stored=16)
    ds.file_meta.TransferSyntaxUID = uid
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51 junk, not a codestream"])
    ds["PixelData"].VR = "OB"
    path = write_dicom_file(tmp_path / "j2k.dcm", ds)
    with pytest.raises(ImageReadError, match="cannot be decoded with the installed handlers") as exc:
        load_image(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: ") and uid in message and "\n" not in message


def test_dicom_without_pixel_data(tmp_path):
    ds = make_dicom(np.zeros((2, 2), np.uint16), bits_stored=12)
    del ds.PixelData
    path = write_dicom_file(tmp_path / "nopix.dcm", ds)
    with pytest.raises(ImageReadError, match="DICOM file has no pixel data") as exc:
        load_image(path)
    assert str(path) in str(exc.value)


def test_text_file_named_dcm(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("hello world, this is not DICOM\n" * 5)
    with pytest.raises(ImageReadError, match="not a DICOM file") as exc:
        load_image(path)
    assert str(exc.value).startswith(f"{path}: ")


def test_multiframe_colour_and_oversized_dicom_are_refused(tmp_path):
    multi = make_dicom(np.zeros((4, 4), np.uint16), bits_stored=12)
    multi.NumberOfFrames = 2
    multi.PixelData = np.zeros((2, 4, 4), "<u2").tobytes()
    colour = make_dicom(np.zeros((4, 4), np.uint8), bits_stored=8)
    colour.PhotometricInterpretation, colour.SamplesPerPixel, colour.PlanarConfiguration = "RGB", 3, 0
    colour.PixelData = np.zeros((4, 4, 3), np.uint8).tobytes()
    cases = {"multi.dcm": (multi, "multi-frame"), "colour.dcm": (colour, "colour DICOM")}
    for name, (ds, words) in cases.items():
        path = write_dicom_file(tmp_path / name, ds)
        with pytest.raises(ImageReadError, match=words) as exc:
            load_image(path)
        assert str(path) in str(exc.value)
    big = write_dicom_file(tmp_path / "big.dcm", make_dicom(np.zeros((10, 10), np.uint16), bits_stored=12))
    with pytest.raises(ImageReadError, match="above the limit of 99"):
        load_image(big, max_pixels=99)


@pytest.mark.parametrize(("dtype", "max_value", "bits"), [(np.uint8, 255, 8), (np.uint16, 65535, 16)])
def test_plain_image_saved_as_secondary_capture(tmp_path, dtype, max_value, bits):
    arr = full_range(dtype, (5, 6))
    src = tmp_path / "in.png"
    save_image(src, Image(arr, "png", max_value))
    out = save_image(tmp_path / "sc.dcm", load_image(src), method="nlm")
    ds = pydicom.dcmread(out)
    assert ds.SOPClassUID == SecondaryCaptureImageStorage and ds.BitsStored == bits
    assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.ImageType[0] == "DERIVED"
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    img = load_image(out)
    assert img.format == "dicom" and img.bit_depth == bits
    np.testing.assert_array_equal(img.pixels, arr)


def test_float_image_saved_as_dicom_is_16_bit(tmp_path):
    arr = np.array([[0.0, 0.5], [1.0, 0.25]], np.float32)
    img = load_image(save_image(tmp_path / "f.dcm", Image(arr, "tiff", 1.0)))
    assert img.bit_depth == 16
    np.testing.assert_array_equal(img.pixels, np.rint(arr * 65535).astype(np.uint16))


def test_dicom_to_png_and_tiff(tmp_path):
    stored = full_range(np.uint16, (7, 8)) >> 4
    img = load_image(write_dicom_file(tmp_path / "a.dcm", make_dicom(stored, bits_stored=12,
                                                                      photometric="MONOCHROME1")))
    for name in ("a.png", "a.tif"):
        exported = load_image(save_image(tmp_path / name, img))
        # Scaled to the full 16-bit range, so brightness (to_float) is preserved ...
        assert exported.pixels.dtype == np.uint16 and exported.photometric == "MONOCHROME2"
        np.testing.assert_allclose(exported.to_float(), img.to_float(), atol=0.5 / 65535)
        # ... and the 12-bit values come back exactly.
        np.testing.assert_array_equal(img.with_float(exported.to_float()).pixels, img.pixels)


# --------------------------------------------------------------------------- DICOM as others write it

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def pydicom_file(name: str) -> Path:
    """A test file shipped inside the pydicom wheel (never one it would download)."""
    path = PYDICOM_FILES / name
    assert path.is_file(), f"{path} is missing from the installed pydicom"
    return path


def dx_series(tmp_path: Path, count: int = 2, **fields) -> list[Path]:
    """``count`` instances of one DX series, as a modality writes them."""
    series = generate_uid()
    paths = []
    for number in range(1, count + 1):
        ds = make_dicom(full_range(np.uint16, (6, 7)) >> 4, bits_stored=12)
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = series, 3, number
        ds.SeriesDescription = "Chest PA"
        ds.StudyDate, ds.StudyTime, ds.StudyID = "20240102", "101500", "S1"  # DICOMDIR records need them
        for keyword, value in fields.items():
            setattr(ds, keyword, value)
        paths.append(write_dicom_file(tmp_path / f"in{number}.dcm", ds))
    return paths


def test_tiff_header_in_the_preamble_is_read_as_dicom(tmp_path, capfd):
    # pydicom's own CT_small.dcm, and files from some vendors, are DICOM and TIFF at once.
    path = pydicom_file("CT_small.dcm")
    assert path.read_bytes()[:4] == b"II*\x00"
    img = load_image(path)
    assert img.format == "dicom" and img.pixels.shape == (128, 128)
    crafted = make_dicom(full_range(np.uint16, (4, 5)) >> 4, bits_stored=12)
    crafted.preamble = b"II*\x00" + b"\x08\x00\x00\x00" + b"\x00" * 120
    img = load_image(write_dicom_file(tmp_path / "dual.tif", crafted))  # even named .tif
    assert img.format == "dicom"
    assert capfd.readouterr().err == ""  # tifffile never got to complain


def test_library_warnings_go_to_the_debug_log(capfd, caplog):
    import logging

    with caplog.at_level(logging.DEBUG, logger="xraydenoise.io"):
        img = load_image(pydicom_file("MR_small_padded.dcm"))  # pydicom warns: excess padding
    assert img.pixels.shape == (64, 64)
    assert capfd.readouterr().err == ""
    assert any("padding" in r.getMessage() for r in caplog.records if r.name == "xraydenoise.io")


@pytest.mark.parametrize("name", ["MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                  "MR_small_RLE.dcm", "JPEG2000.dcm", "JPGExtended.dcm"])
def test_compressed_files_from_other_writers_decode(name):
    reference = load_image(pydicom_file("MR_small.dcm")).pixels
    img = load_image(pydicom_file(name))
    if name.startswith("MR_small"):  # the same image, losslessly compressed
        np.testing.assert_array_equal(img.pixels, reference)
    else:
        assert img.pixels.shape == (1024, 256) and img.pixels.any()


def test_a_series_stays_one_series(tmp_path):
    first, second = (load_image(p) for p in dx_series(tmp_path))
    out1 = pydicom.dcmread(save_image(tmp_path / "o1.dcm", first.with_float(first.to_float()), method="nlm"))
    out2 = pydicom.dcmread(save_image(tmp_path / "o2.dcm", second.with_float(second.to_float()), method="nlm"))
    assert out1.SeriesInstanceUID == out2.SeriesInstanceUID != first.dicom.SeriesInstanceUID
    assert out1.SOPInstanceUID != out2.SOPInstanceUID
    assert out1.SeriesNumber == out2.SeriesNumber == 1003
    assert out1.SeriesDescription == "Chest PA denoised (nlm)"
    assert out1.StudyInstanceUID == first.dicom.StudyInstanceUID and out1.InstanceNumber == 1
    # A rerun (or another worker process) derives the very same UIDs.
    again = pydicom.dcmread(save_image(tmp_path / "again.dcm", first.with_float(first.to_float()), method="nlm"))
    assert (again.SOPInstanceUID, again.SeriesInstanceUID) == (out1.SOPInstanceUID, out1.SeriesInstanceUID)
    # Another method is another series.
    other = pydicom.dcmread(save_image(tmp_path / "bm3d.dcm", first, method="bm3d"))
    assert other.SeriesInstanceUID != out1.SeriesInstanceUID


def test_derived_image_references_its_source(tmp_path):
    img = load_image(dx_series(tmp_path, 1)[0])
    out = pydicom.dcmread(save_image(tmp_path / "o.dcm", img, method="network"))
    (source,) = out.SourceImageSequence
    assert source.ReferencedSOPInstanceUID == img.dicom.SOPInstanceUID
    assert source.ReferencedSOPClassUID == img.dicom.SOPClassUID
    (purpose,) = source.PurposeOfReferenceCodeSequence
    assert (purpose.CodeValue, purpose.CodingSchemeDesignator) == ("121322", "DCM")
    (code,) = out.DerivationCodeSequence
    assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == ("113087", "DCM", "Smoothing")
    assert out.DerivationDescription == "Denoised with xraydenoise network"
    assert out.ImageType[0] == "DERIVED" and private_value(out) == "private value"


def test_pixel_value_range_tags_are_updated_or_removed(tmp_path):
    (path,) = dx_series(tmp_path, 1, SmallestImagePixelValue=0, LargestImagePixelValue=4095,
                        SmallestPixelValueInSeries=0, LargestPixelValueInSeries=4095)
    img = load_image(path)
    half = img.with_float(np.full(img.pixels.shape, 0.25) + np.eye(*img.pixels.shape) * 0.25)
    out = pydicom.dcmread(save_image(tmp_path / "o.dcm", half))
    assert (out.SmallestImagePixelValue, out.LargestImagePixelValue) == (1024, 2048)  # 0.25, 0.5 of 4095
    assert "SmallestPixelValueInSeries" not in out and "LargestPixelValueInSeries" not in out


def test_signed_pixel_value_range(tmp_path):
    stored = np.array([[-2048, -1, 0, 2047]], np.int16)
    ds = make_dicom(stored, bits_stored=12, signed=True)
    ds.SmallestImagePixelValue, ds.LargestImagePixelValue = 0, 0  # stale on purpose
    img = load_image(write_dicom_file(tmp_path / "s.dcm", ds))
    out = pydicom.dcmread(save_image(tmp_path / "o.dcm", img))
    assert (out.SmallestImagePixelValue, out.LargestImagePixelValue) == (-2048, 2047)


@pytest.mark.parametrize("signed", [False, True])
def test_padding_pixels_are_kept(tmp_path, signed):
    stored = (full_range(np.uint16, (8, 9)) >> 4).astype(np.int32)
    if signed:
        stored -= 2048
    pad = -2000 if signed else 7
    stored[:2, :] = pad
    stored[5, 5] = pad + 1  # inside PixelPaddingRangeLimit
    ds = make_dicom(stored, bits_stored=12, signed=signed)
    ds.PixelPaddingValue = pad
    ds["PixelPaddingValue"].VR = "SS" if signed else "US"
    ds.PixelPaddingRangeLimit = pad + 1
    ds["PixelPaddingRangeLimit"].VR = "SS" if signed else "US"
    img = load_image(write_dicom_file(tmp_path / "p.dcm", ds))
    flat = img.with_float(np.full(img.pixels.shape, 0.5))  # a "denoiser" that changes everything
    out = pydicom.dcmread(save_image(tmp_path / "o.dcm", flat))
    np.testing.assert_array_equal(out.pixel_array[:2], stored[:2])
    assert out.pixel_array[5, 5] == pad + 1
    assert (out.pixel_array[2:5] != stored[2:5]).any()  # the image itself was changed
    crop = img.with_float(img.to_float()[3:, 3:])  # no padding left to line up: no error
    assert crop.padding is None


def test_extension_less_and_uid_named_dicom_keep_their_names(tmp_path):
    img = load_image(dx_series(tmp_path, 1)[0])
    for name in ("IM0001", "1.2.840.113619.2.55.3"):
        assert is_supported_path(write_dicom_file(tmp_path / f"in_{name}", img.dicom))
        out = save_image(tmp_path / "out" / name, img, method="nlm")
        assert out.name == name and is_dicom_file(out)
        np.testing.assert_array_equal(load_image(out).pixels, img.pixels)
    png = Image(np.zeros((2, 2), np.uint8), "png", 255)
    with pytest.raises(ImageWriteError, match="cannot tell the output format"):
        save_image(tmp_path / "IM0002", png)


def test_with_image_suffix_never_merges_uid_names():
    from xraydenoise.io.image import with_image_suffix

    a, b = with_image_suffix("x/1.2.840.113619.2.55.3", ".dcm"), with_image_suffix("x/1.2.840.113619.2.55.4", ".dcm")
    assert a != b and a.name == "1.2.840.113619.2.55.3.dcm"
    assert with_image_suffix("x/IM0001", ".png").name == "IM0001.png"
    assert with_image_suffix("x/scan.DCM", ".png").name == "scan.png"


def test_is_dicom_file_sniffs_content(tmp_path):
    raw = tmp_path / "raw"
    bare = make_dicom(np.zeros((2, 2), np.uint16), bits_stored=12)
    del bare.file_meta
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, bare, implicit_vr=True, little_endian=True)
    raw.write_bytes(buf.getvalue())
    text = tmp_path / "notes"
    text.write_text("hello")
    assert is_dicom_file(raw) and is_dicom_file(pydicom_file("CT_small.dcm"))
    assert not is_dicom_file(text) and not is_dicom_file(tmp_path) and not is_dicom_file(tmp_path / "missing")
    assert is_supported_path(raw) and not is_supported_path(text)
    img = load_image(raw)  # what the folder scan accepts, the reader reads
    np.testing.assert_array_equal(load_image(save_image(tmp_path / "out" / "raw", img)).pixels, img.pixels)
    with pytest.raises(ImageReadError, match="unsupported file type"):
        load_image(text)


def make_file_set(folder: Path, paths: list[Path]) -> Path:
    from pydicom.fileset import FileSet

    fs = FileSet()
    for path in paths:
        fs.add(pydicom.dcmread(path))
    fs.write(folder)
    return folder / "DICOMDIR"


def test_dicomdir_is_followed_not_read(tmp_path):
    dicomdir = make_file_set(tmp_path / "media", dx_series(tmp_path, 2))
    assert is_dicomdir(dicomdir) and not is_dicomdir(pydicom_file("CT_small.dcm"))
    assert not is_supported_path(dicomdir)  # a folder scan must not count it as a failed image
    files = dicomdir_referenced_files(dicomdir)
    assert len(files) == 2 and all(p.is_file() and p.parent.parent.parent.parent == dicomdir.parent for p in files)
    assert [load_image(p).dicom.InstanceNumber for p in files] == [1, 2]
    with pytest.raises(ImageReadError, match="DICOMDIR") as exc:
        load_image(dicomdir)
    assert str(exc.value).startswith(f"{dicomdir}: ") and "\n" not in str(exc.value)


def test_dicomdir_copied_in_lower_case_is_followed(tmp_path):
    dicomdir = make_file_set(tmp_path / "media", dx_series(tmp_path, 1))
    (image,) = dicomdir_referenced_files(dicomdir)
    for root, dirs, files in os.walk(dicomdir.parent, topdown=False):  # as some copies do
        for name in [*files, *dirs]:
            if name != "DICOMDIR":
                os.rename(Path(root) / name, Path(root) / name.lower())
    assert not image.exists()
    (found,) = dicomdir_referenced_files(dicomdir)
    assert found == dicomdir.parent / str(image.relative_to(dicomdir.parent)).lower()
    assert load_image(found).pixels.shape == (6, 7)


def test_dicomdir_pointing_outside_its_folder_is_refused(tmp_path):
    dicomdir = make_file_set(tmp_path / "media", dx_series(tmp_path, 1))
    ds = pydicom.dcmread(dicomdir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom rightly says ".." is no valid CS value
        for record in ds.DirectoryRecordSequence:
            if "ReferencedFileID" in record:
                record.ReferencedFileID = ["..", "..", "ETC", "PASSWD"]
    ds.save_as(dicomdir, enforce_file_format=True)
    with pytest.raises(ImageReadError, match="points outside its folder"):
        dicomdir_referenced_files(dicomdir)
    with pytest.raises(ImageReadError, match="not a DICOMDIR"):
        dicomdir_referenced_files(pydicom_file("CT_small.dcm"))


@pytest.mark.parametrize(("name", "words"), [
    ("examples_rgb_color.dcm", "colour DICOM"),
    ("examples_palette.dcm", "PALETTE COLOR"),
    ("reportsi.dcm", "no pixel data (Basic Text SR Storage object)"),
    ("rtdose.dcm", "RT Dose Storage object is radiotherapy data"),
    ("rtplan.dcm", "RT Plan Storage object is radiotherapy data"),
    ("MR_truncated.dcm", "pixel data is less than expected"),
    ("liver_1frame.dcm", "BitsAllocated=1"),
    ("waveform", "holds waveforms, not an image"),
])
def test_objects_that_are_not_radiographs_give_one_line(tmp_path, name, words):
    path = waveform_file(tmp_path / "ecg.dcm") if name == "waveform" else pydicom_file(name)
    with pytest.raises(ImageReadError) as exc:
        load_image(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: ") and words in message and "\n" not in message


def multi_frame(tmp_path: Path, frames: int = 3) -> tuple[Path, np.ndarray]:
    stored = np.stack([full_range(np.uint16, (6, 7)) >> 4 for _ in range(frames)])
    ds = make_dicom(stored[0], bits_stored=12, photometric="MONOCHROME1")
    ds.NumberOfFrames = frames
    ds.PixelData = stored.astype("<u2").tobytes()
    return write_dicom_file(tmp_path / "multi.dcm", ds), stored


def test_multi_frame_is_denoised_frame_by_frame(tmp_path):
    path, stored = multi_frame(tmp_path)
    with pytest.raises(ImageReadError, match="all_frames=True"):
        load_image(path)  # 2-D callers are never handed one frame of many
    img = load_image(path, all_frames=True)
    assert img.frames.shape == (3, 6, 7) and img.pixels.shape == (6, 7)
    np.testing.assert_array_equal(img.frames, 4095 - stored)  # MONOCHROME1 inverted
    seen = []
    same = img.map_frames(lambda frame: seen.append(frame.shape) or frame)
    assert seen == [(6, 7)] * 3
    out = save_image(tmp_path / "o.dcm", same, method="nlm")
    written = pydicom.dcmread(out)
    assert written.NumberOfFrames == 3
    np.testing.assert_array_equal(written.pixel_array, stored)
    with pytest.raises(ValueError, match="map_frames"):
        img.with_float(img.to_float())
    with pytest.raises(ImageWriteError, match="only be written as DICOM"):
        save_image(tmp_path / "o.png", same)
    headless = dataclasses.replace(same, dicom=None, padding=None)
    with pytest.raises(ImageWriteError, match="frames without a DICOM header"):
        save_image(tmp_path / "headless.dcm", headless)
    halves = img.map_frames(lambda frame: frame * 0 + 0.5)
    np.testing.assert_array_equal(load_image(save_image(tmp_path / "h.dcm", halves), all_frames=True).frames, 2048)


def test_jpeg2000_too_small_for_openjpeg_is_written_uncompressed(tmp_path):
    stored = full_range(np.uint16, (40, 48)) >> 4
    ds = make_dicom(stored, bits_stored=12)
    ds.compress(JPEG2000Lossless, generate_instance_uid=False)
    img = load_image(write_dicom_file(tmp_path / "in.dcm", ds))
    crop = img.with_float(img.to_float()[:20, :30])
    out = pydicom.dcmread(save_image(tmp_path / "crop.dcm", crop))
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    np.testing.assert_array_equal(out.pixel_array, stored[:20, :30])
    syntax, note = output_transfer_syntax(crop.dicom)
    assert syntax == JPEG2000Lossless and note is None  # the input's own size is fine
    small = make_dicom(stored[:20, :30], bits_stored=12)
    small.file_meta.TransferSyntaxUID = JPEG2000Lossless
    syntax, note = output_transfer_syntax(small)
    assert syntax == ExplicitVRLittleEndian and "32 pixels" in note


def test_sniffing_odd_files_stays_quiet(tmp_path, capfd):
    odd = tmp_path / "IM0009"
    odd.write_bytes(b"\x08\x00\x05\x00" + bytes(range(256)) * 4)  # starts like a raw data set
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning that escapes fails the test
        assert not is_supported_path(odd)
        assert not is_dicomdir(odd)
    assert capfd.readouterr().err == ""


# --------------------------------------------------------------------------- pixel spacing


def test_pixel_spacing_survives_png_and_tiff_in_every_direction(tmp_path):
    import PIL.Image

    PIL.Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png", dpi=(254, 127))
    tifffile.imwrite(tmp_path / "b.tif", np.zeros((8, 8), np.uint16), resolution=(50, 100), resolutionunit="CENTIMETER")
    expected = {"a.png": (0.2, 0.1), "b.tif": (0.1, 0.2)}  # (rows, columns) in mm
    for name, spacing in expected.items():
        image = load_image(tmp_path / name)
        assert np.allclose(image.pixel_spacing_mm, spacing), name
        for suffix in (".png", ".tif"):
            out = save_image(tmp_path / f"{name}{suffix}", image.with_float(image.to_float()))
            assert np.allclose(load_image(out).pixel_spacing_mm, spacing, rtol=1e-4), (name, suffix)


def test_dicom_pixel_spacing_reaches_png_and_an_uncalibrated_file_stays_uncalibrated(tmp_path):
    import pydicom

    dcm = save_image(tmp_path / "a.dcm", Image(np.zeros((8, 8), np.uint16), "png", 4095))
    ds = pydicom.dcmread(dcm)
    ds.ImagerPixelSpacing = [0.148, 0.15]
    ds.save_as(dcm, enforce_file_format=True)
    image = load_image(dcm)
    assert np.allclose(image.pixel_spacing_mm, (0.148, 0.15))
    assert np.allclose(load_image(save_image(tmp_path / "a.png", image)).pixel_spacing_mm, (0.148, 0.15), rtol=1e-4)
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((8, 8), np.uint8), resolutionunit="NONE")
    assert load_image(tmp_path / "plain.tif").pixel_spacing_mm is None


def test_quiet_reads_from_several_threads_leave_the_library_loggers_as_they_were():
    """The DICOM node's workers read in threads, and leave their blocks in any order."""
    import logging
    import threading

    from xraydenoise.io._quiet import library_messages_to_debug

    pydicom_logger = logging.getLogger("pydicom")
    before = (pydicom_logger.propagate, list(pydicom_logger.handlers), warnings.showwarning)
    both_inside, first_left = threading.Barrier(2), threading.Event()
    seen: list[bool] = []

    def first():  # enters first, leaves first
        with library_messages_to_debug():
            both_inside.wait()
        first_left.set()

    def second():
        both_inside.wait()  # entered after the first (the barrier is inside the first's block)
        with library_messages_to_debug():
            first_left.wait()
            seen.append(pydicom_logger.propagate)  # still muted for this thread's reads

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == [False]
    assert (pydicom_logger.propagate, list(pydicom_logger.handlers), warnings.showwarning) == before
