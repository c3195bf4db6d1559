"""DICOM reading and writing for greyscale radiographs (pydicom, pylibjpeg plugins).

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
    The dataset of the input is kept whole, private elements included. A written file is
    a derived instance in a derived series (:func:`write_dicom`):

    * SeriesInstanceUID and SOPInstanceUID are :func:`derived_uid` of the source's UIDs and
      the method: every instance of one input series lands in one new series, in any
      worker process, and a rerun reproduces the same UIDs;
    * SeriesNumber is the source's plus :data:`SERIES_NUMBER_OFFSET` (1000), and
      SeriesDescription names the method;
    * ImageType value 1 is DERIVED; DerivationDescription, DerivationCodeSequence
      (DCM 113087 "Smoothing") and SourceImageSequence (the input instance, DCM 121322)
      say what was done to which image;
    * Smallest/LargestImagePixelValue are recomputed; the series-wide ones are removed;
    * pixels equal to PixelPaddingValue (or within PixelPaddingRangeLimit) keep their
      values (:class:`~xraydenoise.io.image.Image` restores them);
    * the transfer syntax is :func:`output_transfer_syntax` of the input: RLE, JPEG 2000
      lossless, JPEG-LS lossless and Deflate are kept when an encoder is installed
      (``pip install 'xraydenoise[dicom]'``), anything else becomes Explicit VR Little
      Endian; a lossy input is marked LossyImageCompression "01".

Reading
    DICOM is recognised by content (:func:`is_dicom_file`), whatever the file's name;
    colour, palette, SR, RT (except RT Image), waveform, 1-bit and truncated objects are
    refused with one line. Multi-frame images are read whole on request. A DICOMDIR is an
    index: :func:`dicomdir_referenced_files` lists the files it references.

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
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from xraydenoise.errors import ImageReadError
from xraydenoise.io._messages import one_line
from xraydenoise.io._quiet import library_messages_to_debug

try:  # pydicom >= 3: decodes without caching a second copy of the array in the dataset
    from pydicom.pixels import pixel_array as _decode_pixels
except ImportError:  # pragma: no cover - pydicom 2.x
    _decode_pixels = None  # type: ignore[assignment]

_PYDICOM_MAJOR = int(pydicom.__version__.split(".")[0])

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
#: Elements in the pixel module that only make sense for encapsulated (compressed) data.
_ENCAPSULATION_ONLY = (0x7FE00001, 0x7FE00002)  # Extended Offset Table (+ Lengths)
_FLOAT_PIXEL_DATA = (0x7FE00008, 0x7FE00009)  # Float / Double Float Pixel Data
#: Every RT SOP class (dose, plan, structure set, image, ...) lives under this root.
_RT_SOP_CLASS_ROOT = "1.2.840.10008.5.1.4.1.1.481."
_LOSSLESS_COMPRESSED = (RLELossless, JPEG2000Lossless, JPEGLSLossless, JPEGLossless,
                        JPEGLosslessSV1)
MEDIA_STORAGE_DIRECTORY = UID("1.2.840.10008.1.3.10")
#: RT Image (portal images from an EPID) is a megavoltage radiograph: the one RT class kept.
RT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.481.1")


@dataclass
class DicomPixels:
    """What :func:`read_dicom` found: MONOCHROME2-oriented unsigned pixels and the dataset."""

    pixels: np.ndarray
    max_value: int
    dataset: Dataset
    photometric: str
    #: True where the stored value is PixelPaddingValue (or in its range); None if none is.
    padding: np.ndarray | None = None


def dataset_bits_stored(ds: Dataset) -> int:
    """``BitsStored`` of a dataset, defaulting to ``BitsAllocated`` as old writers imply."""
    return int(ds.get("BitsStored", None) or ds.BitsAllocated)


# --------------------------------------------------------------------------- reading


def _plausible(ds: Dataset) -> bool:
    # force=True "parses" anything (a text file becomes one odd private element), so a
    # file without the DICM preamble counts as DICOM only if it holds standard elements.
    try:
        return any(elem.tag.group in (0x0008, 0x0010, 0x0020, 0x0028) for elem in ds)
    except Exception:  # noqa: BLE001 - pydicom fails on garbage in many ways: not DICOM
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


def _refuse_non_image(path: Path, ds: Dataset) -> None:
    """One clear line for objects that are DICOM but not a greyscale image we may denoise."""
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    # A DICOMDIR names its class only in the file meta.
    sop_class = UID(str(ds.get("SOPClassUID", "") or meta.get("MediaStorageSOPClassUID", "") or ""))
    label = sop_class.name if sop_class and sop_class.name != str(sop_class) else "DICOM"
    if sop_class.startswith(_RT_SOP_CLASS_ROOT) and sop_class != RT_IMAGE_STORAGE:
        # An RT dose grid has pixels, but they are doses, not radiograph intensities.
        raise ImageReadError(f"{path}: {label} object is radiotherapy data, not a radiograph")
    if "PixelData" not in ds:
        if any(tag in ds for tag in _FLOAT_PIXEL_DATA):
            raise ImageReadError(f"{path}: DICOM float pixel data is not supported")
        if "WaveformSequence" in ds:
            raise ImageReadError(f"{path}: {label} object holds waveforms, not an image")
        if sop_class == MEDIA_STORAGE_DIRECTORY:
            raise ImageReadError(
                f"{path}: DICOMDIR (the index of a DICOM file set, not an image); "
                "denoise the files it lists (dicomdir_referenced_files) or its folder"
            )
        raise ImageReadError(f"{path}: DICOM file has no pixel data ({label} object)")


def _padding_mask(ds: Dataset, raw: np.ndarray) -> np.ndarray | None:
    """Pixels equal to PixelPaddingValue (or within PixelPaddingRangeLimit of it).

    Padding marks "no image here" (outside a collimator or a circular field of view); a
    denoiser would blur real values into it and a viewer would then show it as anatomy.
    """
    value = ds.get("PixelPaddingValue", None)
    if value is None or value == "":
        return None
    limit = ds.get("PixelPaddingRangeLimit", None)
    limit = int(value) if limit is None or limit == "" else int(limit)
    low, high = sorted((int(value), int(limit)))
    values = raw.astype(np.int32, copy=False)
    mask = (values >= low) & (values <= high)
    return mask if mask.any() else None


def read_dicom(path: Path, max_pixels: int, *, all_frames: bool = False) -> DicomPixels:
    """Read a greyscale DICOM image.

    Parameters
    ----------
    path : Path
        The file; a DICM preamble is not required.
    max_pixels : int
        Rows * Columns * frames above this are refused before decoding.
    all_frames : bool
        If True, a multi-frame image is returned whole (``pixels`` of shape
        ``(frames, rows, columns)``); if False (default) it is refused, so that callers
        that handle 2-D images only never see one.

    Returns
    -------
    DicomPixels
        Pixels as described in the module docstring, ``max_value = 2**BitsStored - 1``,
        the full dataset, the stored PhotometricInterpretation and the padding mask.

    Raises
    ------
    ImageReadError
        ``"<path>: <reason>"`` for anything that is not a decodable greyscale image with
        8 or 16 allocated bits (colour, palette, SR, RT, waveform, truncated...). Other
        exceptions are wrapped by the caller.

    Examples
    --------
    >>> read_dicom(Path("chest.dcm"), 10**8).max_value  # doctest: +SKIP
    4095
    """
    ds = _dcmread(path)
    _ensure_transfer_syntax(ds)
    _refuse_non_image(path, ds)
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
    if frames < 1:
        raise ImageReadError(f"{path}: NumberOfFrames={frames} is not valid")
    if frames != 1 and not all_frames:
        raise ImageReadError(
            f"{path}: multi-frame DICOM ({frames} frames) is not supported here; "
            "read it with load_image(..., all_frames=True)"
        )
    rows, cols = int(ds.Rows), int(ds.Columns)
    if rows * cols * frames > max_pixels:
        raise ImageReadError(
            f"{path}: image is {cols}x{rows}x{frames} = {rows * cols * frames} pixels, above the "
            f"limit of {max_pixels} pixels (decompression-bomb guard, see XRAYDENOISE_MAX_PIXELS)"
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
    expected = (frames, rows, cols) if frames > 1 else (rows, cols)
    if raw.shape != expected:
        raise ImageReadError(
            f"{path}: decoded pixel data has shape {raw.shape}, header says "
            f"{'x'.join(str(n) for n in expected)}"
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
    return DicomPixels(values.astype(dtype), mask, ds, photometric, _padding_mask(ds, raw))


# --------------------------------------------------------------------------- writing


#: Added to the source SeriesNumber: the derived series sorts after its source and no two
#: processes need to agree on a counter (the number is a pure function of the source).
SERIES_NUMBER_OFFSET = 1000
#: Transfer syntaxes an output keeps when the input had them (all lossless; re-encoding
#: the denoised pixels in them loses nothing more). Anything else is written as
#: Explicit VR Little Endian.
KEPT_TRANSFER_SYNTAXES = (RLELossless, JPEG2000Lossless, JPEGLSLossless, DeflatedExplicitVRLittleEndian)
_LOSSY_METHOD = {  # LossyImageCompressionMethod (C.7.6.1.1.5) by family of the input's syntax
    "1.2.840.10008.1.2.4.5": "ISO_10918_1",  # JPEG baseline / extended
    "1.2.840.10008.1.2.4.81": "ISO_14495_1",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.91": "ISO_15444_1",  # JPEG 2000
}
_METHOD_LABEL = "xraydenoise"
_J2K_MIN_SIDE = 32
_IS_MAX = 2**31 - 1  # largest IS value (SeriesNumber)
_LO_MAX = 64  # characters in an LO value (SeriesDescription)


def _derivation(method: str | None) -> str:
    return f"Denoised with xraydenoise {method}" if method else "Processed with xraydenoise"


def derived_uid(source_uid: str, method: str | None, role: str) -> UID:
    """UID of a derived object, a pure function of the source UID and the method.

    Every worker process, and every rerun, gives the same answer without sharing state:
    all instances of one source series land in one new series, and sending an output to a
    PACS twice replaces it instead of duplicating it.

    Parameters
    ----------
    source_uid : str
        SeriesInstanceUID (for the new series) or SOPInstanceUID (for the new instance).
    method : str or None
        Denoising method; another method gives another series.
    role : str
        ``"series"`` or ``"instance"``: keeps the two apart even if a writer reused a UID.

    Examples
    --------
    >>> derived_uid("1.2.3", "nlm", "series") == derived_uid("1.2.3", "nlm", "series")
    True
    >>> derived_uid("1.2.3", "nlm", "series") == derived_uid("1.2.3", "bm3d", "series")
    False
    """
    return generate_uid(entropy_srcs=[_METHOD_LABEL, role, str(source_uid), method or ""])


def _transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID", None) if meta is not None else None
    return UID(str(uid)) if uid else ExplicitVRLittleEndian


def _is_lossy(uid: UID) -> bool:
    try:
        return uid.is_compressed and not uid.is_deflated and uid not in _LOSSLESS_COMPRESSED
    except ValueError:  # not a transfer syntax at all
        return False


def _encoder_available(uid: UID) -> bool:
    if _PYDICOM_MAJOR < 3:  # pragma: no cover - pydicom 2.x: no compress(generate_instance_uid)
        return False
    if uid.is_deflated:
        return True  # zlib, in pydicom itself
    from pydicom.pixels import get_encoder

    try:
        return bool(get_encoder(uid).is_available)
    except (NotImplementedError, ValueError):
        return False


def _too_small_for_j2k(rows: int, columns: int) -> bool:
    # openjpeg's encoder always uses 6 wavelet resolutions, which need 2**5 pixels a side.
    return min(rows, columns) < _J2K_MIN_SIDE


def output_transfer_syntax(source: Dataset | None) -> tuple[UID, str | None]:
    """Transfer syntax :func:`write_dicom` uses for an output derived from ``source``.

    The input's syntax when it is one of :data:`KEPT_TRANSFER_SYNTAXES` and its encoder is
    installed, else Explicit VR Little Endian.

    Parameters
    ----------
    source : Dataset or None
        The input dataset (``Image.dicom``); None for a new Secondary Capture.

    Returns
    -------
    uid : UID
        The output transfer syntax.
    note : str or None
        One line for the user when a compressed input is written uncompressed (the same
        text for every file of the same input syntax, so a batch can print it once); None
        when nothing worth saying changed (uncompressed in, uncompressed out).

    Examples
    --------
    >>> output_transfer_syntax(None)
    ('1.2.840.10008.1.2.1', None)
    """
    if source is None:
        return ExplicitVRLittleEndian, None
    ts = _transfer_syntax(source)
    try:
        compressed = ts.is_compressed
    except ValueError:
        compressed = True
    small = ts == JPEG2000Lossless and _too_small_for_j2k(
        int(source.get("Rows", 0) or 0), int(source.get("Columns", 0) or 0))
    if ts in KEPT_TRANSFER_SYNTAXES and _encoder_available(ts) and not small:
        return ts, None
    if not compressed:  # Implicit VR, big endian: same values, only the encoding changes
        return ExplicitVRLittleEndian, None
    label = _ts_label(ts)
    if small:
        why = f"openjpeg cannot encode images under {_J2K_MIN_SIDE} pixels a side"
    elif ts in KEPT_TRANSFER_SYNTAXES:
        why = "its encoder is not installed (pip install 'xraydenoise[dicom]')"
    elif _is_lossy(ts):
        why = "lossy compression would add its own loss to the denoised image"
    else:
        why = "there is no encoder for it"
    return ExplicitVRLittleEndian, f"{label} inputs are written as Explicit VR Little Endian: {why}"


def _stored_bytes(values: np.ndarray, allocated: int, stored: int, signed: bool,
                  photometric: str) -> bytes:
    out = _native_values(values, allocated, stored, signed, photometric).astype(np.uint32)
    # Sign-extend into the unused high bits, as every writer (pydicom included) does: the
    # int32 -> uint32 cast above keeps the two's complement bits of negative values.
    dtype = "<u2" if allocated == 16 else "u1"
    data = (out & ((1 << allocated) - 1)).astype(dtype).tobytes()
    return data + b"\0" if len(data) % 2 else data  # DICOM values have even length


def _native_values(values: np.ndarray, allocated: int, stored: int, signed: bool,
                   photometric: str) -> np.ndarray:
    """Stored values as the file means them (signed when PixelRepresentation is 1), int32."""
    mask = (1 << stored) - 1
    out = values.astype(np.int32)
    if photometric == "MONOCHROME1":
        out = mask - out
    if signed:
        out -= 1 << (stored - 1)  # offset binary -> signed value
    return out


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
    meta.TransferSyntaxUID = ExplicitVRLittleEndian  # compress() changes it where kept
    # The implementation that wrote the file is pydicom, whatever wrote the input.
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    for keyword in ("ImplementationVersionName", "SourceApplicationEntityTitle"):
        if keyword in meta:
            del meta[keyword]
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


def _code_item(code) -> Dataset:
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme_designator
    item.CodeMeaning = code.meaning
    return item


def _series_description(source: Dataset, method: str | None) -> str:
    tail = f"denoised ({method or _METHOD_LABEL})"
    old = str(source.get("SeriesDescription", None) or "").strip()
    if not old:
        return tail[0].upper() + tail[1:]
    room = _LO_MAX - len(tail) - 1
    return f"{old[:room].rstrip()} {tail}" if room > 0 else tail[:_LO_MAX]


def _record_derivation(ds: Dataset, source: Dataset, method: str | None) -> None:
    """Series, instance and provenance elements of a denoised copy of ``source``."""
    from pydicom.sr.codedict import codes

    series = source.get("SeriesInstanceUID", None)
    instance = source.get("SOPInstanceUID", None)
    ds.SeriesInstanceUID = derived_uid(series, method, "series") if series else generate_uid()
    ds.SOPInstanceUID = derived_uid(instance, method, "instance") if instance else generate_uid()
    old_number = source.get("SeriesNumber", None)
    ds.SeriesNumber = min((int(old_number) if old_number not in (None, "") else 0) + SERIES_NUMBER_OFFSET, _IS_MAX)
    ds.SeriesDescription = _series_description(source, method)
    ds.ImageType = _derived_image_type(ds)
    ds.DerivationDescription = _derivation(method)
    ds.DerivationCodeSequence = [_code_item(codes.DCM.Smoothing)]
    if instance and "SOPClassUID" in source:
        reference = Dataset()
        reference.ReferencedSOPClassUID = source.SOPClassUID
        reference.ReferencedSOPInstanceUID = instance
        reference.PurposeOfReferenceCodeSequence = [
            _code_item(codes.DCM.SourceImageForImageProcessingOperation)
        ]
        ds.SourceImageSequence = [reference]
    elif "SourceImageSequence" in ds:
        del ds.SourceImageSequence  # the input's own sources are not this image's


def _update_pixel_range(ds: Dataset, native: np.ndarray, signed: bool) -> None:
    # Stale extremes mislead viewers that window from them; series-wide ones cannot be
    # known from one instance, so they go.
    for keyword in ("SmallestPixelValueInSeries", "LargestPixelValueInSeries"):
        if keyword in ds:
            del ds[keyword]
    vr = "SS" if signed else "US"
    for tag, keyword, reduce in ((0x00280106, "SmallestImagePixelValue", np.min),
                                 (0x00280107, "LargestImagePixelValue", np.max)):
        if keyword in ds:
            ds.add_new(tag, vr, int(reduce(native)) if native.size else 0)


def _record_lossy_history(ds: Dataset, source: Dataset) -> None:
    # A lossy input stays lossy once decoded (C.7.6.1.1.5): say so if the input did not.
    ts = _transfer_syntax(source)
    if not _is_lossy(ts) or str(ds.get("LossyImageCompression", "")) == "01":
        return
    ds.LossyImageCompression = "01"
    method = next((m for prefix, m in _LOSSY_METHOD.items() if ts.startswith(prefix)), None)
    if method and "LossyImageCompressionMethod" not in ds:
        ds.LossyImageCompressionMethod = method
    compressed = len(source.PixelData) if "PixelData" in source else 0
    if compressed and "LossyImageCompressionRatio" not in ds:
        frames = int(source.get("NumberOfFrames", None) or 1)
        raw = int(source.Rows) * int(source.Columns) * frames * (int(source.BitsAllocated) // 8)
        ds.LossyImageCompressionRatio = f"{raw / compressed:.2f}"


def _from_source(source: Dataset, values: np.ndarray, method: str | None) -> Dataset:
    ds = copy.deepcopy(source)
    allocated = int(ds.BitsAllocated)
    stored = dataset_bits_stored(ds)
    signed = int(ds.get("PixelRepresentation", None) or 0) == 1
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    for tag in _ENCAPSULATION_ONLY:
        if tag in ds:
            del ds[tag]
    ds.Rows, ds.Columns = (int(n) for n in values.shape[-2:])
    if values.ndim == 3:
        ds.NumberOfFrames = int(values.shape[0])
    _set_pixel_data(ds, _stored_bytes(values, allocated, stored, signed, photometric), allocated)
    if "SOPClassUID" not in ds:
        ds.SOPClassUID = SecondaryCaptureImageStorage
    _record_derivation(ds, source, method)
    _update_pixel_range(ds, _native_values(values, allocated, stored, signed, photometric), signed)
    _record_lossy_history(ds, source)
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
    """Encode ``values`` as DICOM into ``fh``.

    Parameters
    ----------
    fh : binary file object
        Destination.
    values : ndarray
        2-D (one frame) or 3-D (frames, rows, columns) unsigned values in
        ``0 .. 2**bits_stored - 1``, oriented as MONOCHROME2 and offset as
        :func:`read_dicom` returns them.
    bits_stored : int
        Must match ``source.BitsStored`` when ``source`` is given.
    source : Dataset, optional
        Header to copy (see the module docstring); the output is encoded in
        :func:`output_transfer_syntax` of it. Without one, a minimal Secondary Capture
        image (MONOCHROME2, unsigned, ``BitsStored = bits_stored``, Explicit VR Little
        Endian) is created.
    method : str, optional
        Named in DerivationDescription and SeriesDescription, and part of the new UIDs.

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
    if values.ndim not in (2, 3) or (values.ndim == 3 and source is None):
        raise ValueError(f"values must be 2-D (or 3-D frames with a source), got shape {values.shape}")
    if source is not None:
        if bits_stored != dataset_bits_stored(source):
            raise ValueError("bits_stored differs from the source dataset's BitsStored")
        ds = _from_source(source, values, method)
        syntax, _ = output_transfer_syntax(source)
        if syntax == JPEG2000Lossless and _too_small_for_j2k(*values.shape[-2:]):
            syntax = ExplicitVRLittleEndian  # a crop too small for openjpeg
        if syntax != ExplicitVRLittleEndian and not syntax.is_deflated:
            # The SOP Instance UID is already the derived one; compress() would replace it.
            ds.compress(syntax, generate_instance_uid=False)
        elif syntax.is_deflated:
            ds.file_meta.TransferSyntaxUID = syntax  # dcmwrite deflates the whole data set
    else:
        ds = _secondary_capture(values, bits_stored, method)
    if _PYDICOM_MAJOR >= 3:
        pydicom.dcmwrite(fh, ds, enforce_file_format=True)
    else:  # pragma: no cover - pydicom 2.x
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.preamble = b"\0" * 128
        pydicom.dcmwrite(fh, ds, write_like_original=False)
    return ds


# --------------------------------------------------------------------------- files and file sets


def _head(path: Path) -> bytes:
    """The first 132 bytes (preamble and DICM), or b"" for what cannot be read as a file."""
    try:
        with open(path, "rb") as fh:
            return fh.read(132)
    except OSError:  # missing, a directory, unreadable
        return b""


def is_dicom_file(path: str | Path) -> bool:
    """Whether ``path`` is a DICOM file, judged by its content, not its name.

    True for ``DICM`` at offset 128 (a Part 10 file, whatever its preamble holds: some
    vendors put a TIFF header there) and for a raw data set without preamble that parses
    into standard elements (old PACS exports). False for directories, unreadable files and
    anything else.

    Examples
    --------
    >>> is_dicom_file("README.md")
    False
    """
    p = Path(path)
    head = _head(p)
    if head[128:132] == b"DICM":
        return True
    # A raw data set starts with a group 0008 element (or a meta group 0002 without the
    # preamble), little or big endian, e.g. 08 00 05 00: anything else is not worth parsing.
    if len(head) < 8 or head[:2] not in (b"\x08\x00", b"\x00\x08", b"\x02\x00"):
        return False
    try:
        with library_messages_to_debug():  # a folder scan must stay quiet about odd files
            ds = pydicom.dcmread(p, force=True, stop_before_pixels=True)
            return _plausible(ds)  # inside: converting raw elements warns too
    except Exception:  # noqa: BLE001 - a folder scan must not stop at an odd file: not DICOM
        return False


def is_dicomdir(path: str | Path) -> bool:
    """Whether ``path`` is a DICOMDIR (Media Storage Directory), from its file meta only.

    Examples
    --------
    >>> is_dicomdir("README.md")
    False
    """
    p = Path(path)
    if _head(p)[128:132] != b"DICM":
        return False
    try:
        with library_messages_to_debug():
            meta = pydicom.filereader.read_file_meta_info(p)
    except Exception:  # noqa: BLE001 - an unreadable file meta, whatever pydicom raises: not a DICOMDIR
        return False
    return str(meta.get("MediaStorageSOPClassUID", "")) == MEDIA_STORAGE_DIRECTORY


def _existing_case(folder: Path, parts: list[str]) -> Path:
    """``folder/parts...``, matching each part case-insensitively where the exact name is absent.

    File IDs are upper case on the medium (ISO 9660), but copies made on other systems are
    often lower case; the exact path wins, then a unique case-insensitive match.
    """
    current = folder
    for part in parts:
        exact = current / part
        if not exact.exists() and current.is_dir():
            matches = [entry for entry in current.iterdir() if entry.name.lower() == part.lower()]
            if len(matches) == 1:
                exact = matches[0]
        current = exact
    return current


def dicomdir_referenced_files(path: str | Path) -> list[Path]:
    """The files a DICOMDIR references, in the order of its directory records.

    Parameters
    ----------
    path : str or Path
        A DICOMDIR file.

    Returns
    -------
    list of Path
        ``<folder of the DICOMDIR>/<ReferencedFileID components>`` (matched regardless of
        case when only a lower-case copy exists), without duplicates; files that do not
        exist are listed all the same, so that the caller reports them.

    Raises
    ------
    ImageReadError
        ``"<path>: <reason>"`` if it is not a readable DICOMDIR, or a record points outside
        the DICOMDIR's folder (absolute or ``..`` components: a crafted file set must not
        make a batch read arbitrary files).

    Examples
    --------
    >>> dicomdir_referenced_files("media/DICOMDIR")  # doctest: +SKIP
    [PosixPath('media/IMAGES/IM0001'), PosixPath('media/IMAGES/IM0002')]
    """
    p = Path(path)
    if not is_dicomdir(p):
        raise ImageReadError(f"{p}: not a DICOMDIR")
    try:
        with library_messages_to_debug():
            ds = pydicom.dcmread(p)
            records = list(ds.get("DirectoryRecordSequence", None) or [])
    except Exception as exc:
        raise ImageReadError(f"{p}: cannot read DICOMDIR: {one_line(exc)}") from exc
    folder = p.parent
    found: list[Path] = []
    for record in records:
        file_id = record.get("ReferencedFileID", None)
        if file_id in (None, ""):
            continue  # PATIENT, STUDY, SERIES records reference no file
        parts = [file_id] if isinstance(file_id, str) else [str(part) for part in file_id]
        parts = [part.strip() for part in parts if part.strip()]
        if not parts or any(part in (".", "..") or "/" in part or "\\" in part for part in parts):
            raise ImageReadError(f"{p}: ReferencedFileID {'/'.join(parts)!r} points outside its folder")
        target = _existing_case(folder, parts)
        if target not in found:
            found.append(target)
    return found
