"""DICOM reading and writing for single-frame greyscale radiographs (pydicom).

Pixel values
    :func:`read_dicom` returns the *stored* values (before RescaleSlope/Intercept), masked
    to ``BitsStored`` bits, in an unsigned array (``uint8`` for 8-bit allocation, else
    ``uint16``) whose maximum is ``2**BitsStored - 1``. Two transformations make every
    file look alike to a denoiser, and :func:`write_dicom` undoes both exactly:

    * MONOCHROME1 (bright = air) is inverted, ``max - stored``, so bright means dense.
    * Signed data (PixelRepresentation = 1) is offset by ``2**(BitsStored-1)`` into the
      unsigned range: ``-2048..2047`` in a 12-bit file becomes ``0..4095``. Rescale and
      window elements stay untouched because the written file holds the original values.

Header
    The dataset of the input is kept whole. A written file is a copy in which only the pixel
    data, Rows/Columns, the SOP and Series Instance UIDs (new), ImageType (first value
    DERIVED) and DerivationDescription change, encoded as uncompressed Explicit VR Little
    Endian whatever the input transfer syntax was.

Examples
--------
>>> import numpy as np, io
>>> buf = io.BytesIO()
>>> _ = write_dicom(buf, np.array([[0, 4095]], np.uint16), bits_stored=12, method="demo")
>>> ds = pydicom.dcmread(io.BytesIO(buf.getvalue()))
>>> ds.BitsStored, ds.ImageType[0], ds.pixel_array.tolist()
(12, 'DERIVED', [[0, 4095]])
"""

from __future__ import annotations

import copy
import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from xraydenoise.errors import ImageReadError
from xraydenoise.io._messages import one_line

try:  # pydicom >= 3: decodes without caching a second copy of the array in the dataset
    from pydicom.pixels import pixel_array as _decode_pixels
except ImportError:  # pragma: no cover - pydicom 2.x
    _decode_pixels = None

_PYDICOM_MAJOR = int(pydicom.__version__.split(".")[0])

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
#: Elements in the pixel module that only make sense for encapsulated (compressed) data.
_ENCAPSULATION_ONLY = (0x7FE00001, 0x7FE00002)  # Extended Offset Table (+ Lengths)
_FLOAT_PIXEL_DATA = (0x7FE00008, 0x7FE00009)  # Float / Double Float Pixel Data


@dataclass
class DicomPixels:
    """What :func:`read_dicom` found: MONOCHROME2-oriented unsigned pixels and the dataset."""

    pixels: np.ndarray
    max_value: int
    dataset: Dataset
    photometric: str


def dataset_bits_stored(ds: Dataset) -> int:
    """``BitsStored`` of a dataset, defaulting to ``BitsAllocated`` as old writers imply."""
    return int(ds.get("BitsStored", None) or ds.BitsAllocated)


# --------------------------------------------------------------------------- reading


def _plausible(ds: Dataset) -> bool:
    # force=True "parses" anything (a text file becomes one odd private element), so a
    # file without the DICM preamble counts as DICOM only if it holds standard elements.
    try:
        return any(elem.tag.group in (0x0008, 0x0010, 0x0020, 0x0028) for elem in ds)
    except Exception:
        return False


def _dcmread(path: Path) -> Dataset:
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError:
        pass  # no preamble: maybe a raw data set (old PACS exports), checked below
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as exc:
        raise ImageReadError(f"{path}: not a DICOM file ({one_line(exc)})") from exc
    if not _plausible(ds):
        raise ImageReadError(f"{path}: not a DICOM file (no DICM preamble and no DICOM elements)")
    return ds


def _ensure_transfer_syntax(ds: Dataset) -> None:
    # Raw data sets have no file meta; pydicom records how it parsed them, which is
    # what the pixel decoder and the writer need to know.
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = FileMetaDataset()
        ds.file_meta = meta
    if "TransferSyntaxUID" in meta:
        return
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit is None:  # pragma: no cover - pydicom 2.x
        implicit, little = ds.is_implicit_VR, ds.is_little_endian
    if implicit:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _ts_label(uid: UID) -> str:
    name = uid.name
    return f"{name} ({uid})" if name and name != str(uid) else str(uid)


def read_dicom(path: Path, max_pixels: int) -> DicomPixels:
    """Read a single-frame greyscale DICOM file.

    Parameters
    ----------
    path : Path
        The file; a DICM preamble is not required.
    max_pixels : int
        Rows * Columns above this are refused before decoding.

    Returns
    -------
    DicomPixels
        Pixels as described in the module docstring, ``max_value = 2**BitsStored - 1``,
        the full dataset and the stored PhotometricInterpretation.

    Raises
    ------
    ImageReadError
        ``"<path>: <reason>"`` for anything that is not a decodable single-frame greyscale
        image with 8 or 16 allocated bits. Other exceptions are wrapped by the caller.

    Examples
    --------
    >>> read_dicom(Path("chest.dcm"), 10**8).max_value  # doctest: +SKIP
    4095
    """
    ds = _dcmread(path)
    _ensure_transfer_syntax(ds)
    if "PixelData" not in ds:
        if any(tag in ds for tag in _FLOAT_PIXEL_DATA):
            raise ImageReadError(f"{path}: DICOM float pixel data is not supported")
        raise ImageReadError(f"{path}: DICOM file has no pixel data")
    for keyword in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation"):
        if ds.get(keyword, None) in (None, ""):
            raise ImageReadError(f"{path}: DICOM file lacks {keyword}")

    photometric = str(ds.PhotometricInterpretation).strip().upper()
    samples = int(ds.get("SamplesPerPixel", None) or 1)
    if photometric not in MONOCHROME or samples != 1:
        raise ImageReadError(
            f"{path}: colour DICOM (PhotometricInterpretation={photometric}, "
            f"SamplesPerPixel={samples}) is not supported; convert to greyscale first"
        )
    frames = int(ds.get("NumberOfFrames", None) or 1)
    if frames != 1:
        raise ImageReadError(
            f"{path}: multi-frame DICOM ({frames} frames) is not supported; "
            "export a single frame first"
        )
    rows, cols = int(ds.Rows), int(ds.Columns)
    if rows * cols > max_pixels:
        raise ImageReadError(
            f"{path}: image is {cols}x{rows} = {rows * cols} pixels, above the limit of "
            f"{max_pixels} pixels (decompression-bomb guard, see XRAYDENOISE_MAX_PIXELS)"
        )
    allocated = int(ds.BitsAllocated)
    stored = dataset_bits_stored(ds)
    high_bit = ds.get("HighBit", None)
    high_bit = stored - 1 if high_bit in (None, "") else int(high_bit)
    if allocated not in (8, 16):
        raise ImageReadError(f"{path}: BitsAllocated={allocated} is not supported (8 or 16)")
    if not 1 <= stored <= allocated:
        raise ImageReadError(f"{path}: BitsStored={stored} does not fit BitsAllocated={allocated}")
    if high_bit != stored - 1:
        # Data shifted inside the cell (HighBit != BitsStored-1) is retired practice and
        # would be misread by the decoders; refusing beats returning wrong values.
        raise ImageReadError(f"{path}: HighBit={high_bit} with BitsStored={stored} is not supported")
    signed = int(ds.get("PixelRepresentation", None) or 0) == 1

    try:
        raw = _decode_pixels(ds) if _decode_pixels is not None else ds.pixel_array
    except Exception as exc:
        ts = UID(str(ds.file_meta.TransferSyntaxUID))
        try:
            compressed = ts.is_compressed
        except ValueError:  # not a transfer syntax at all
            compressed = True
        if compressed:
            raise ImageReadError(
                f"{path}: pixel data in transfer syntax {_ts_label(ts)} cannot be decoded "
                f"with the installed handlers: {one_line(exc)}"
            ) from exc
        raise ImageReadError(f"{path}: cannot decode DICOM pixel data: {one_line(exc)}") from exc
    raw = np.asarray(raw)
    if raw.shape != (rows, cols):
        raise ImageReadError(
            f"{path}: decoded pixel data has shape {raw.shape}, header says {rows}x{cols}"
        )

    mask = (1 << stored) - 1
    # int32 holds every 8/16-bit value; "& mask" turns a signed value into its BitsStored-bit
    # two's complement and drops unused high bits (overlays in retired files).
    values = raw.astype(np.int32, copy=False) & mask
    if signed:
        values ^= 1 << (stored - 1)  # two's complement -> offset binary
    if photometric == "MONOCHROME1":
        values = mask - values
    dtype = np.uint8 if allocated == 8 else np.uint16
    return DicomPixels(values.astype(dtype), mask, ds, photometric)


# --------------------------------------------------------------------------- writing


def _derivation(method: str | None) -> str:
    return f"Denoised with xraydenoise {method}" if method else "Processed with xraydenoise"


def _stored_bytes(values: np.ndarray, allocated: int, stored: int, signed: bool,
                  photometric: str) -> bytes:
    mask = (1 << stored) - 1
    out = values.astype(np.uint32)
    if photometric == "MONOCHROME1":
        out = mask - out
    if signed:
        out ^= 1 << (stored - 1)  # offset binary -> two's complement
        # Sign-extend into the unused high bits, as every writer (pydicom included) does.
        negative = (out >> (stored - 1)) & 1 == 1
        out[negative] |= ((1 << allocated) - 1) ^ mask
    dtype = "<u2" if allocated == 16 else "u1"
    data = out.astype(dtype).tobytes()
    return data + b"\0" if len(data) % 2 else data  # DICOM values have even length


def _set_pixel_data(ds: Dataset, data: bytes, allocated: int) -> None:
    # A fresh element, not ds.PixelData = ...: the old one may be flagged as encapsulated
    # (undefined length) and would be written as such.
    ds.add_new(0x7FE00010, "OW" if allocated == 16 else "OB", data)


def _new_file_meta(ds: Dataset) -> None:
    meta = copy.deepcopy(getattr(ds, "file_meta", None)) or FileMetaDataset()
    if "FileMetaInformationGroupLength" in meta:
        del meta.FileMetaInformationGroupLength  # recomputed by the writer
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    # The implementation that wrote the file is pydicom, whatever wrote the input.
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    if "ImplementationVersionName" in meta:
        del meta.ImplementationVersionName
    ds.file_meta = meta


def _derived_image_type(ds: Dataset) -> list[str]:
    old = ds.get("ImageType", None)
    if old is None or old == "":
        return ["DERIVED", "SECONDARY"]
    values = [old] if isinstance(old, str) else [str(v) for v in old]
    values[0] = "DERIVED"
    if len(values) == 1:  # value 2 (PRIMARY/SECONDARY) is mandatory
        values.append("SECONDARY")
    return values


def _from_source(source: Dataset, values: np.ndarray, method: str | None) -> Dataset:
    ds = copy.deepcopy(source)
    allocated = int(ds.BitsAllocated)
    stored = dataset_bits_stored(ds)
    signed = int(ds.get("PixelRepresentation", None) or 0) == 1
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    for tag in _ENCAPSULATION_ONLY:
        if tag in ds:
            del ds[tag]
    ds.Rows, ds.Columns = (int(n) for n in values.shape)
    _set_pixel_data(ds, _stored_bytes(values, allocated, stored, signed, photometric), allocated)
    if "SOPClassUID" not in ds:
        ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.ImageType = _derived_image_type(ds)
    ds.DerivationDescription = _derivation(method)
    _new_file_meta(ds)
    return ds


def _secondary_capture(values: np.ndarray, stored: int, method: str | None) -> Dataset:
    allocated = 8 if stored <= 8 else 16
    now = _dt.datetime.now()
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    # Type 2 elements of the Patient, Study, Series and SC Equipment modules: present, empty.
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                    "ReferringPhysicianName", "StudyID", "AccessionNumber"):
        setattr(ds, keyword, "")
    ds.StudyDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.Modality = "OT"
    ds.SeriesNumber = None
    ds.InstanceNumber = None
    ds.ConversionType = "WSD"  # workstation
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = _derivation(method)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = (int(n) for n in values.shape)
    ds.BitsAllocated = allocated
    ds.BitsStored = stored
    ds.HighBit = stored - 1
    ds.PixelRepresentation = 0
    _set_pixel_data(ds, _stored_bytes(values, allocated, stored, False, "MONOCHROME2"), allocated)
    ds.file_meta = FileMetaDataset()
    _new_file_meta(ds)
    return ds


def write_dicom(fh: BinaryIO, values: np.ndarray, *, bits_stored: int,
                source: Dataset | None = None, method: str | None = None) -> Dataset:
    """Encode ``values`` as DICOM into ``fh`` (uncompressed Explicit VR Little Endian).

    Parameters
    ----------
    fh : binary file object
        Destination.
    values : ndarray
        2-D unsigned values in ``0 .. 2**bits_stored - 1``, oriented as MONOCHROME2 and
        offset as :func:`read_dicom` returns them.
    bits_stored : int
        Must match ``source.BitsStored`` when ``source`` is given.
    source : Dataset, optional
        Header to copy (see the module docstring). Without one, a minimal Secondary
        Capture image (MONOCHROME2, unsigned, ``BitsStored = bits_stored``) is created.
    method : str, optional
        Named in DerivationDescription.

    Returns
    -------
    Dataset
        The dataset written.

    Examples
    --------
    >>> import io
    >>> ds = write_dicom(io.BytesIO(), np.zeros((2, 2), np.uint8), bits_stored=8)
    >>> ds.Modality, ds.BitsAllocated
    ('OT', 8)
    """
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"values must be 2-D, got shape {values.shape}")
    if source is not None:
        if bits_stored != dataset_bits_stored(source):
            raise ValueError("bits_stored differs from the source dataset's BitsStored")
        ds = _from_source(source, values, method)
    else:
        ds = _secondary_capture(values, bits_stored, method)
    if _PYDICOM_MAJOR >= 3:
        pydicom.dcmwrite(fh, ds, enforce_file_format=True)
    else:  # pragma: no cover - pydicom 2.x
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.preamble = b"\0" * 128
        pydicom.dcmwrite(fh, ds, write_like_original=False)
    return ds
