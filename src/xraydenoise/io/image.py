"""Greyscale radiographs in and out: PNG (8/16-bit), TIFF (8/16-bit, float32) and DICOM.

Every reader returns an :class:`Image` that keeps the file's native values, so that a
load -> save round trip is bit-exact; models work on :meth:`Image.to_float` and hand their
result back through :meth:`Image.with_float`, which restores the native type and header.

Every failure a user can cause raises :class:`~xraydenoise.errors.ImageReadError` or
:class:`~xraydenoise.errors.ImageWriteError` with a one-line ``"<path>: <reason>"``.

Examples
--------
>>> import numpy as np, tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> img = Image(np.array([[0, 65535]], np.uint16), "png", 65535.0)
>>> out = save_image(folder / "a.png", img.with_float(img.to_float() * 0.5))
>>> load_image(out).pixels.tolist()
[[0, 32768]]
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable

import numpy as np
import PIL.Image
import tifffile

from xraydenoise import settings
from xraydenoise.errors import ImageReadError, ImageWriteError
from xraydenoise.io import dicom as _dicom
from xraydenoise.io._atomic import atomic_write
from xraydenoise.io._messages import one_line
from xraydenoise.io._quiet import library_messages_to_debug

if TYPE_CHECKING:  # pragma: no cover
    import os

    import pydicom

#: File suffixes (lower case) that :func:`load_image` and :func:`save_image` accept.
SUPPORTED_SUFFIXES: tuple[str, ...] = (".png", ".tif", ".tiff", ".dcm", ".dicom")
FORMATS: tuple[str, ...] = ("png", "tiff", "dicom")
_FORMAT_BY_SUFFIX = {".png": "png", ".tif": "tiff", ".tiff": "tiff", ".dcm": "dicom", ".dicom": "dicom"}

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
_DICOM_MAGIC_OFFSET = 128
_INT_MAX = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}


@dataclass(eq=False)  # numpy arrays have no boolean ==, so a generated __eq__ would mislead
class Image:
    """A 2-D greyscale radiograph with its native values and, for DICOM, its header.

    Parameters
    ----------
    pixels : ndarray
        2-D ``uint8``, ``uint16`` or ``float32`` (other float types are converted to
        float32). DICOM MONOCHROME1 and TIFF MinIsWhite are already inverted, so that
        bright means dense everywhere.
    format : str
        ``"png"``, ``"tiff"`` or ``"dicom"``: the format the pixels were read from.
    max_value : float
        The value that means 1.0: 255 (8-bit), 65535 (16-bit PNG/TIFF),
        ``2**BitsStored - 1`` (DICOM), 1.0 (float).
    source_path : Path, optional
        File the image was read from; :func:`save_image` refuses to overwrite it.
    dicom : pydicom.Dataset, optional
        Full dataset of a DICOM input; shared, never modified, by :meth:`with_float`
        and :func:`save_image`.
    photometric : str
        ``"MONOCHROME1"`` or ``"MONOCHROME2"`` as stored in the file (MinIsWhite TIFF is
        reported as MONOCHROME1); the pixels are MONOCHROME2 in either case.
    frames : ndarray, optional
        Every frame of a multi-frame DICOM, ``(n, rows, columns)`` in the dtype of
        ``pixels``, which is then ``frames[0]``. Only set by
        ``load_image(..., all_frames=True)``; process it with :meth:`map_frames` (which
        also works for single-frame images), write it with :func:`save_image`.
    padding : numpy.ma.MaskedArray, optional
        Native values of the DICOM padding pixels (PixelPaddingValue, or the range up to
        PixelPaddingRangeLimit), unmasked where a pixel is padding; shaped like ``frames``
        or ``pixels``. :meth:`with_float` and :meth:`map_frames` put these values back, so
        padding never takes denoised values.
    pixel_spacing_mm : (float, float), optional
        Size of a pixel (between rows, between columns) in millimetres, from a PNG's pHYs
        (dpi), a TIFF's resolution tags or a DICOM's PixelSpacing / ImagerPixelSpacing; PNG and
        TIFF outputs carry it on, so measurements on a denoised image stay calibrated.

    Notes
    -----
    Float TIFF values outside [0, 1] are kept as they are: :meth:`to_float` returns them
    unclipped, :meth:`with_float` and quantising writers clip them.

    Examples
    --------
    >>> img = Image(np.array([[0, 128, 255]], np.uint8), "png", 255.0)
    >>> img.bit_depth, float(img.to_float()[0, 2])
    (8, 1.0)
    >>> img.with_float(np.array([[2.0, 0.5, -1.0]])).pixels.tolist()
    [[255, 128, 0]]
    """

    pixels: np.ndarray
    format: str
    max_value: float
    source_path: Path | None = None
    dicom: pydicom.Dataset | None = None
    photometric: str = "MONOCHROME2"
    frames: np.ndarray | None = None
    padding: np.ma.MaskedArray | None = None
    pixel_spacing_mm: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.frames is not None:
            self.frames = np.asarray(self.frames)
            if self.frames.ndim != 3 or self.frames.shape[0] < 1:
                raise ValueError(f"Image.frames must be 3-D (frames, rows, columns), got {self.frames.shape}")
            if self.frames.dtype != np.asarray(self.pixels).dtype:
                raise TypeError("Image.frames and Image.pixels must have the same dtype")
        pixels = np.asarray(self.pixels)
        if pixels.ndim != 2:
            raise ValueError(f"Image.pixels must be 2-D, got shape {pixels.shape}")
        if np.issubdtype(pixels.dtype, np.floating) and pixels.dtype != np.float32:
            pixels = pixels.astype(np.float32)
        if pixels.dtype not in (np.uint8, np.uint16, np.float32):
            raise TypeError(f"Image.pixels must be uint8, uint16 or float32, got {pixels.dtype}")
        self.pixels = pixels
        if self.format not in FORMATS:
            raise ValueError(f"Image.format must be one of {FORMATS}, got {self.format!r}")
        self.max_value = float(self.max_value)
        if not (np.isfinite(self.max_value) and self.max_value > 0):
            raise ValueError(f"Image.max_value must be positive, got {self.max_value}")
        if pixels.dtype in _INT_MAX and self.max_value > _INT_MAX[pixels.dtype]:
            raise ValueError(f"Image.max_value {self.max_value:g} does not fit {pixels.dtype}")
        if self.photometric not in _dicom.MONOCHROME:
            raise ValueError(f"Image.photometric must be MONOCHROME1/2, got {self.photometric!r}")
        if self.source_path is not None:
            self.source_path = Path(self.source_path)

    @property
    def is_float(self) -> bool:
        """True for float32 pixels (float TIFF, or results of float processing)."""
        return self.pixels.dtype == np.float32

    @property
    def bit_depth(self) -> int:
        """8 or 16 for integer files, ``BitsStored`` for DICOM, 32 for float."""
        if self.is_float:
            return 32
        levels = int(self.max_value) + 1
        if levels & (levels - 1) == 0:  # max_value is 2**n - 1
            return levels.bit_length() - 1
        return self.pixels.dtype.itemsize * 8

    def to_float(self) -> np.ndarray:
        """Pixels as a new float32 array, ``pixels / max_value``.

        Integer images land in [0, 1]; float images are returned as a copy, unclipped.

        Examples
        --------
        >>> Image(np.array([[0, 4095]], np.uint16), "dicom", 4095).to_float().tolist()
        [[0.0, 1.0]]
        """
        out = self.pixels.astype(np.float32, copy=True)
        if not self.is_float:
            out /= np.float32(self.max_value)
        return out

    def with_float(self, array: np.ndarray) -> Image:
        """New Image like this one (format, dtype, header) holding ``array``.

        Parameters
        ----------
        array : array_like
            2-D values on the [0, 1] scale of :meth:`to_float`; clipped to [0, 1]. Its
            shape may differ (a crop); the DICOM header is updated on save.

        Returns
        -------
        Image
            ``round(clip(array, 0, 1) * max_value)`` in the original integer dtype, or
            clipped float32 for float images; DICOM padding pixels (see ``padding``)
            keep their original values.

        Raises
        ------
        ValueError
            If ``array`` is not 2-D or contains NaN/Inf (a model bug, not user input), or
            the image has several ``frames`` (use :meth:`map_frames`).

        Examples
        --------
        >>> img = Image(np.zeros((1, 2), np.uint8), "png", 255)
        >>> img.with_float([[0.5, 1.0]]).pixels.tolist()
        [[128, 255]]
        """
        if self.frames is not None and self.frames.shape[0] > 1:
            raise ValueError("with_float on a multi-frame image would drop frames; use map_frames")
        values = self._quantise(array)
        padding = self.padding
        if padding is not None:
            padding = padding.reshape(self.pixels.shape)
            if padding.shape == values.shape:
                values = _restore_padding(values, padding)
            else:  # a crop: the mask no longer lines up, and the writer needs none
                padding = None
        return dataclasses.replace(self, pixels=values, frames=None, padding=padding)

    def map_frames(self, fn: Callable[[np.ndarray], np.ndarray]) -> Image:
        """Apply a 2-D float function to every frame; the result keeps header and frames.

        Parameters
        ----------
        fn : callable
            ``fn(frame: float32 HxW on the [0, 1] scale of to_float) -> HxW`` of the same
            shape, e.g. ``lambda x: denoiser(x, sigma)``.

        Returns
        -------
        Image
            For a single-frame image, ``self.with_float(fn(self.to_float()))``; for a
            multi-frame one, every frame replaced (padding restored), ready for
            :func:`save_image`, which writes one multi-frame file.

        Examples
        --------
        >>> img = Image(np.zeros((2, 2), np.uint8), "dicom", 255, frames=np.zeros((3, 2, 2), np.uint8))
        >>> img.map_frames(lambda x: x + 0.5).frames[:, 0, 0].tolist()
        [128, 128, 128]
        """
        if self.frames is None:
            return self.with_float(fn(self.to_float()))
        scale = np.float32(1.0 if self.is_float else self.max_value)
        out = np.empty_like(self.frames)
        for index, frame in enumerate(self.frames):
            result = self._quantise(fn(frame.astype(np.float32) / scale))
            if result.shape != frame.shape:
                raise ValueError(f"map_frames: fn changed a frame's shape {frame.shape} to {result.shape}")
            out[index] = result
        if self.padding is not None:
            out = _restore_padding(out, self.padding)
        return dataclasses.replace(self, pixels=out[0], frames=out)

    def _quantise(self, array: Any) -> np.ndarray:
        """``array`` on the [0, 1] scale as native values (see :meth:`with_float`)."""
        values = np.array(array, dtype=np.float32, copy=True)
        if values.ndim != 2:
            raise ValueError(f"with_float needs a 2-D array, got shape {values.shape}")
        if not np.isfinite(values).all():
            raise ValueError("with_float: array contains NaN or Inf")
        np.clip(values, 0.0, 1.0, out=values)
        if not self.is_float:
            values *= np.float32(self.max_value)
            np.rint(values, out=values)
            values = values.astype(self.pixels.dtype)
        return values


def _restore_padding(values: np.ndarray, padding: np.ma.MaskedArray) -> np.ndarray:
    keep = ~np.ma.getmaskarray(padding)
    values[keep] = padding.data[keep]  # values is always a fresh array of ours
    return values


# --------------------------------------------------------------------------- helpers


def is_supported_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a file this module reads and writes.

    Decided by the suffix (:data:`SUPPORTED_SUFFIXES`, any case). A file with another or
    no suffix counts only if it exists and its content is DICOM
    (:func:`~xraydenoise.io.dicom.is_dicom_file`): PACS exports and DICOM media name files
    by UID (``1.2.840.113619.2.55.3``) or by number (``IM0001``). A DICOMDIR is an index,
    not an image: False (follow it with :func:`~xraydenoise.io.dicom.dicomdir_referenced_files`).

    Examples
    --------
    >>> is_supported_path("scan.TIFF"), is_supported_path("notes.txt")
    (True, False)
    """
    p = Path(path)
    fmt = _FORMAT_BY_SUFFIX.get(p.suffix.lower())
    if fmt is not None:
        return fmt != "dicom" or not _dicom.is_dicomdir(p)
    return _dicom.is_dicom_file(p) and not _dicom.is_dicomdir(p)


def with_image_suffix(path: str | os.PathLike[str], suffix: str) -> Path:
    """``path`` with its image suffix replaced by ``suffix``, or ``suffix`` appended.

    Only a known image suffix is replaced: the last dot-part of a UID-named file
    (``1.2.840.113619.2.55.3``) is part of its name, and replacing it would map two
    instances onto one output.

    Examples
    --------
    >>> str(with_image_suffix("a/scan.png", ".dcm")), str(with_image_suffix("1.2.3.44", ".dcm"))
    ('a/scan.dcm', '1.2.3.44.dcm')
    """
    p = Path(path)
    if p.suffix.lower() in _FORMAT_BY_SUFFIX:
        return p.with_suffix(suffix)
    return p.with_name(p.name + suffix)


def _sniff(head: bytes) -> str | None:
    # DICM at 128 first: a dual-personality file keeps a TIFF header in its preamble, and
    # read as TIFF it has no readable page.
    if head[_DICOM_MAGIC_OFFSET : _DICOM_MAGIC_OFFSET + 4] == b"DICM":
        return "dicom"
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head[:4] in _TIFF_MAGICS:
        return "tiff"
    return None


def _too_large(path: Path, width: int, height: int, limit: int) -> ImageReadError:
    return ImageReadError(
        f"{path}: image is {width}x{height} = {width * height} pixels, above the limit of "
        f"{limit} pixels (decompression-bomb guard, see {settings.MAX_PIXELS_ENV})"
    )


def _single_channel(path: Path, arr: np.ndarray, colour: int) -> np.ndarray:
    """First channel of H x W x C if the first ``colour`` channels agree, else refuse."""
    for c in range(1, colour):
        if not np.array_equal(arr[..., 0], arr[..., c]):
            raise ImageReadError(
                f"{path}: colour image (channels differ); convert to greyscale first"
            )
    return np.ascontiguousarray(arr[..., 0])


# --------------------------------------------------------------------------- PNG


def _raise_pillow_limit(limit: int) -> None:
    # Our own check runs first with the user's limit; Pillow's guard (a warning above
    # MAX_IMAGE_PIXELS, an error above twice that) must not fire below it. Only ever raised,
    # never disabled, so other Pillow users in the process keep a guard.
    current = PIL.Image.MAX_IMAGE_PIXELS
    if current is not None and current < limit:
        PIL.Image.MAX_IMAGE_PIXELS = limit


def _read_png(path: Path, limit: int) -> Image:
    with open(path, "rb") as fh:
        head = fh.read(33)
        if len(head) < 33 or head[12:16] != b"IHDR":
            raise ImageReadError(f"{path}: truncated or invalid PNG (no IHDR header)")
        width, height, depth, colour_type = struct.unpack(">IIBB", head[16:26])
        if width * height > limit:
            raise _too_large(path, width, height, limit)
        if depth == 16 and colour_type in (2, 4, 6):
            # Pillow silently reduces 16-bit RGB(A)/LA to 8 bits; better refuse than lose data.
            raise ImageReadError(
                f"{path}: 16-bit colour or grey+alpha PNG cannot be read without losing "
                "precision; save it as 16-bit greyscale"
            )
        fh.seek(0)
        _raise_pillow_limit(limit)
        with PIL.Image.open(fh, formats=["PNG"]) as im:
            if getattr(im, "n_frames", 1) > 1:
                raise ImageReadError(f"{path}: animated PNG ({im.n_frames} frames) is not supported")
            im.load()  # decodes now, so a truncated file fails here and not later
            pixels = _pil_grey(path, im)
            dpi = im.info.get("dpi")
    max_value = 255.0 if pixels.dtype == np.uint8 else 65535.0
    spacing = _spacing_from_density(dpi[1], dpi[0], 25.4) if dpi else None
    return Image(pixels, "png", max_value, source_path=path, pixel_spacing_mm=spacing)


def _spacing_from_density(rows_per_unit: float, columns_per_unit: float, unit_mm: float) -> tuple[float, float] | None:
    """Pixel spacing in mm from pixels per unit (dpi: unit 25.4 mm); None when not positive."""
    try:
        rows, columns = float(rows_per_unit), float(columns_per_unit)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not (rows > 0 and columns > 0 and np.isfinite(rows) and np.isfinite(columns)):
        return None
    return unit_mm / rows, unit_mm / columns


def _pil_grey(path: Path, im: PIL.Image.Image) -> np.ndarray:
    mode = im.mode
    if mode == "1":
        return np.asarray(im.convert("L"))
    if mode == "L":
        return np.asarray(im).copy()
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16)
    if mode == "I":  # how older Pillow versions open 16-bit greyscale
        arr = np.asarray(im)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ImageReadError(f"{path}: 32-bit integer values out of the 16-bit range")
        return arr.astype(np.uint16)
    if mode in ("LA", "La"):
        return np.asarray(im)[..., 0].copy()
    if mode in ("P", "PA"):
        im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("RGB", "RGBA"):
        return _single_channel(path, np.asarray(im), 3)
    raise ImageReadError(f"{path}: PNG mode {mode} is not supported")


def _write_png(fh: BinaryIO, values: np.ndarray, method: str | None, spacing: tuple[float, float] | None) -> None:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", "xraydenoise")
    if method:
        info.add_text("Description", f"Denoised with xraydenoise {method}")
    extra = {"dpi": (25.4 / spacing[1], 25.4 / spacing[0])} if spacing else {}
    PIL.Image.fromarray(values).save(fh, format="PNG", pnginfo=info, **extra)


# --------------------------------------------------------------------------- TIFF


def _read_tiff(path: Path, limit: int) -> Image:
    with tifffile.TiffFile(path) as tif:
        n_pages = len(tif.pages)
        if n_pages == 0:
            raise ImageReadError(f"{path}: TIFF contains no readable image")
        if n_pages != 1:
            raise ImageReadError(
                f"{path}: TIFF has {n_pages} pages; only single 2-D images are supported"
            )
        page = tif.pages[0]
        width, height, depth = int(page.imagewidth), int(page.imagelength), int(page.imagedepth)
        if depth > 1:
            raise ImageReadError(f"{path}: 3-D TIFF (depth {depth}) is not supported")
        if width * height > limit:
            raise _too_large(path, width, height, limit)
        photometric = page.photometric
        photometrics = tifffile.PHOTOMETRIC
        if photometric not in (photometrics.MINISBLACK, photometrics.MINISWHITE, photometrics.RGB):
            raise ImageReadError(
                f"{path}: TIFF photometric {photometric.name} is not supported; "
                "save as greyscale (MinIsBlack)"
            )
        samples = int(page.samplesperpixel)
        extras = tuple(page.extrasamples or ())
        # tifffile fills missing strips with zeros and only logs it; a black image from a
        # damaged file must not pass for a radiograph.
        size = path.stat().st_size
        offsets, counts = page.dataoffsets, page.databytecounts
        if not counts or any(n == 0 for n in counts):
            raise ImageReadError(f"{path}: TIFF image data is missing (empty strips or tiles)")
        if any(o + n > size for o, n in zip(offsets, counts)):
            raise ImageReadError(f"{path}: truncated TIFF (image data past the end of the file)")
        arr = page.asarray()
        axes = page.axes
        spacing = _tiff_spacing(page)

    if "S" in axes:
        arr = np.moveaxis(arr, axes.index("S"), -1)
    if arr.ndim == 3 and samples == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 + (samples > 1) or arr.shape[:2] != (height, width):
        raise ImageReadError(f"{path}: TIFF data has shape {arr.shape}; expected one 2-D image")
    if samples > 1:
        alpha = (tifffile.EXTRASAMPLE.ASSOCALPHA, tifffile.EXTRASAMPLE.UNASSALPHA)
        if len(extras) != sum(e in alpha for e in extras):
            # An unspecified extra sample may be a second measurement: not ours to drop.
            raise ImageReadError(f"{path}: TIFF with {samples} samples per pixel is not supported")
        colour = samples - len(extras)  # alpha is dropped
        if photometric == photometrics.RGB and colour == 3:
            arr = _single_channel(path, arr, 3)
        elif photometric != photometrics.RGB and colour == 1:
            arr = np.ascontiguousarray(arr[..., 0])
        else:
            raise ImageReadError(f"{path}: TIFF with {samples} samples per pixel is not supported")

    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageReadError(f"{path}: float TIFF contains NaN or Inf")
        if arr.dtype != np.float32:
            arr = arr.astype(np.float32)
            if not np.isfinite(arr).all():
                raise ImageReadError(f"{path}: float TIFF values overflow float32 (contains NaN or Inf)")
        if photometric == photometrics.MINISWHITE:
            raise ImageReadError(f"{path}: float TIFF with MinIsWhite photometric is not supported")
        return Image(arr, "tiff", 1.0, source_path=path, pixel_spacing_mm=spacing)
    if arr.dtype not in _INT_MAX:
        raise ImageReadError(
            f"{path}: TIFF sample type {arr.dtype} is not supported (uint8, uint16 or float32)"
        )
    max_value = _INT_MAX[arr.dtype]
    stored = "MONOCHROME2"
    if photometric == photometrics.MINISWHITE:
        arr = (max_value - arr).astype(arr.dtype)
        stored = "MONOCHROME1"
    return Image(np.ascontiguousarray(arr), "tiff", float(max_value), source_path=path,
                 photometric=stored, pixel_spacing_mm=spacing)


#: Millimetres per TIFF ResolutionUnit (2: inch, 3: centimetre; 1: no absolute unit).
_TIFF_UNIT_MM = {2: 25.4, 3: 10.0}


def _tiff_spacing(page: Any) -> tuple[float, float] | None:
    tags = page.tags
    unit = tags.get("ResolutionUnit")
    unit_mm = _TIFF_UNIT_MM.get(int(unit.value) if unit is not None else 2)  # the TIFF default is inch
    x, y = tags.get("XResolution"), tags.get("YResolution")
    if unit_mm is None or x is None or y is None:
        return None
    try:
        (xn, xd), (yn, yd) = x.value, y.value
        return _spacing_from_density(yn / yd, xn / xd, unit_mm)
    except (TypeError, ValueError, ZeroDivisionError):  # a malformed rational is no calibration
        return None


def _write_tiff(fh: BinaryIO, values: np.ndarray, minis_white: bool, method: str | None,
                spacing: tuple[float, float] | None) -> None:
    if minis_white:
        values = (_INT_MAX[values.dtype] - values).astype(values.dtype)
    extra: dict[str, Any] = {"resolution": (10.0 / spacing[1], 10.0 / spacing[0]), "resolutionunit": "CENTIMETER"} if spacing else {}
    tifffile.imwrite(
        fh,
        values,
        photometric="miniswhite" if minis_white else "minisblack",
        metadata=None,  # no tifffile JSON in ImageDescription
        software="xraydenoise",
        description=f"Denoised with xraydenoise {method}" if method else None,
        **extra,
    )


# --------------------------------------------------------------------------- DICOM


def _read_dicom(path: Path, limit: int, all_frames: bool = False) -> Image:
    found = _dicom.read_dicom(path, limit, all_frames=all_frames)
    pixels = found.pixels
    frames = pixels if pixels.ndim == 3 else None
    padding = None
    if found.padding is not None:
        padding = np.ma.masked_array(pixels, mask=~found.padding)
    return Image(pixels[0] if frames is not None else pixels, "dicom", float(found.max_value),
                 source_path=path, dicom=found.dataset, photometric=found.photometric,
                 frames=frames, padding=padding, pixel_spacing_mm=_dicom_spacing(found.dataset))


def _dicom_spacing(ds: Any) -> tuple[float, float] | None:
    """(row, column) spacing in mm: PixelSpacing (calibrated at the patient) before
    ImagerPixelSpacing (at the detector), as a viewer measures."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword, None)
        try:
            rows, columns = (float(v) for v in value)
        except (TypeError, ValueError):
            continue
        if rows > 0 and columns > 0:
            return rows, columns
    return None


# --------------------------------------------------------------------------- public API

_READERS = {"png": _read_png, "tiff": _read_tiff, "dicom": _read_dicom}


def load_image(path: str | os.PathLike[str], *, max_pixels: int | None = None,
               all_frames: bool = False) -> Image:
    """Read a greyscale radiograph.

    Parameters
    ----------
    path : str or PathLike
        A PNG, TIFF or DICOM file (see :func:`is_supported_path`). The content decides the
        reader, so a TIFF named ``.png`` still loads (as ``format="tiff"``).
    max_pixels : int, optional
        Refuse images with more pixels, checked from the header before decoding.
        Default: :func:`xraydenoise.settings.max_pixels`.
    all_frames : bool
        Accept multi-frame DICOM: every frame is in :attr:`Image.frames` (and the first in
        ``pixels``). Off by default, so that code written for 2-D images gets a clear
        refusal instead of one frame.

    Returns
    -------
    Image
        Native values; colour files whose channels are all equal become one channel and
        alpha is dropped.

    Raises
    ------
    ImageReadError
        ``"<path>: <reason>"`` for a missing, empty, truncated, colour, multi-page or
        multi-frame, too large or otherwise unreadable file; never another exception type.

    Examples
    --------
    >>> img = load_image("chest.dcm")  # doctest: +SKIP
    >>> img.format, img.bit_depth, img.pixels.dtype  # doctest: +SKIP
    ('dicom', 12, dtype('uint16'))
    """
    p = Path(path)
    limit = settings.max_pixels() if max_pixels is None else int(max_pixels)
    try:
        st = p.stat()
        if p.is_dir():
            raise ImageReadError(f"{p}: is a directory, not an image")
        if not p.is_file():
            raise ImageReadError(f"{p}: not a regular file")
        if st.st_size == 0:
            raise ImageReadError(f"{p}: empty file")
        with open(p, "rb") as fh:
            head = fh.read(_DICOM_MAGIC_OFFSET + 4)
    except FileNotFoundError:
        raise ImageReadError(f"{p}: no such file") from None
    except OSError as exc:
        raise ImageReadError(f"{p}: cannot open: {one_line(exc)}") from exc

    suffix = p.suffix.lower()
    kind = _sniff(head)
    if suffix not in _FORMAT_BY_SUFFIX and kind is None and _dicom.is_dicom_file(p):
        kind = "dicom"  # a raw data set (no preamble) named IM0001 or by UID
    if suffix not in _FORMAT_BY_SUFFIX and kind != "dicom":
        raise ImageReadError(
            f"{p}: unsupported file type {suffix or '(no suffix)'}; "
            f"use one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if kind is None:
        expected = _FORMAT_BY_SUFFIX[suffix]
        if expected != "dicom":  # DICOM may lack the preamble; pydicom decides
            raise ImageReadError(f"{p}: not a {expected.upper()} file (unrecognised content)")
        kind = "dicom"

    try:
        with library_messages_to_debug():
            if kind == "dicom":
                return _read_dicom(p, limit, all_frames)
            return _READERS[kind](p, limit)
    except ImageReadError:
        raise
    except PIL.Image.DecompressionBombError as exc:
        raise ImageReadError(f"{p}: {one_line(exc)} (decompression-bomb guard)") from exc
    except MemoryError as exc:
        raise ImageReadError(f"{p}: not enough memory to decode the image") from exc
    except Exception as exc:  # third-party decoders raise anything; the user gets one line
        raise ImageReadError(f"{p}: cannot read {kind.upper()}: {one_line(exc)}") from exc


def _quantised(image: Image, target_max: int, dtype: Any) -> np.ndarray:
    """Integer values on ``0..target_max``: native values when the scale matches, else
    ``round(clip(to_float) * target_max)`` (float images, or a 12-bit DICOM to PNG)."""
    if not image.is_float and image.max_value == target_max:
        return np.minimum(image.pixels, target_max).astype(dtype, copy=False)
    values = image.to_float()
    np.clip(values, 0.0, 1.0, out=values)
    values *= np.float32(target_max)
    np.rint(values, out=values)
    return values.astype(dtype)


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def save_image(
    path: str | os.PathLike[str],
    image: Image,
    *,
    method: str | None = None,
    overwrite: bool = True,
) -> Path:
    """Write ``image`` atomically in the format named by the suffix of ``path``.

    Parameters
    ----------
    path : str or PathLike
        ``.png``: 8-bit for uint8, else 16-bit (float and DICOM values other than 8/16-bit
        are scaled to 16 bits). ``.tif``/``.tiff``: uint8, uint16 or float32 as held
        (MinIsWhite restored for a MinIsWhite input). ``.dcm``/``.dicom``: the input
        header as a derived series (see :mod:`xraydenoise.io.dicom`), or a new Secondary
        Capture file when the image has no dataset (float images stored as 16-bit). Any
        other suffix, or none (``IM0001``, ``1.2.840.113619.2.55.3``), is written as DICOM
        when ``image.format`` is ``"dicom"``; multi-frame images only as DICOM.
    image : Image
        What to write.
    method : str, optional
        Denoising method, recorded in DICOM DerivationDescription and PNG/TIFF text.
    overwrite : bool
        If False, an existing file is an error.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    ImageWriteError
        ``"<path>: <reason>"``: unknown suffix, the path is the image's source, exists with
        ``overwrite=False``, the folder cannot be created, NaN in the pixels, any
        encoder or disk error. No partial file is ever left under ``path`` and an
        existing file is untouched on failure.

    Examples
    --------
    >>> img = load_image("in.dcm")  # doctest: +SKIP
    >>> save_image("out/in.dcm", img.with_float(denoise(img.to_float())), method="bm3d")  # doctest: +SKIP
    PosixPath('out/in.dcm')
    """
    target = Path(path)
    if not isinstance(image, Image):
        raise TypeError(f"save_image needs an Image, got {type(image).__name__}")
    fmt = _FORMAT_BY_SUFFIX.get(target.suffix.lower())
    if fmt is None and image.format == "dicom":
        # DICOM media and PACS exports name files IM0001 or by UID (whose last dot-part
        # looks like a suffix): such names stay, and the content stays DICOM.
        fmt = "dicom"
    if image.frames is not None and image.frames.shape[0] > 1 and fmt != "dicom":
        raise ImageWriteError(
            f"{target}: a multi-frame image can only be written as DICOM, not {fmt or target.suffix}"
        )
    if fmt is None:
        raise ImageWriteError(
            f"{target}: cannot tell the output format from the suffix "
            f"{target.suffix or '(none)'}; use one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if image.source_path is not None and _same_file(target, image.source_path):
        raise ImageWriteError(f"{target}: refusing to overwrite the input")
    if image.is_float and not np.isfinite(image.pixels).all():
        raise ImageWriteError(f"{target}: image contains NaN or Inf")

    if fmt == "png":
        bits = 8 if image.pixels.dtype == np.uint8 and image.max_value <= 255 else 16
        values = _quantised(image, (1 << bits) - 1, np.uint8 if bits == 8 else np.uint16)

        def write(fh: BinaryIO) -> None:
            _write_png(fh, values, method, image.pixel_spacing_mm)

    elif fmt == "tiff":
        if image.is_float:
            values = image.pixels
        else:
            bits = 8 if image.pixels.dtype == np.uint8 and image.max_value <= 255 else 16
            values = _quantised(image, (1 << bits) - 1, np.uint8 if bits == 8 else np.uint16)
        # MinIsWhite is restored only for a TIFF that had it; DICOM MONOCHROME1 -> TIFF
        # is written as displayed (MinIsBlack), the common expectation for an export.
        minis_white = image.format == "tiff" and image.photometric == "MONOCHROME1" and not image.is_float

        def write(fh: BinaryIO) -> None:
            _write_tiff(fh, values, minis_white, method, image.pixel_spacing_mm)

    else:
        source = image.dicom
        if source is not None:
            stored = _dicom.dataset_bits_stored(source)
        else:
            stored = 16 if image.is_float else image.bit_depth
        if image.frames is not None:
            if source is None:
                raise ImageWriteError(f"{target}: frames without a DICOM header cannot be written")
            values = image.frames  # map_frames already gave them the native type
        else:
            values = _quantised(image, (1 << stored) - 1, np.uint16 if stored > 8 else np.uint8)

        def write(fh: BinaryIO) -> None:
            with library_messages_to_debug():
                _dicom.write_dicom(fh, values, bits_stored=stored, source=source, method=method)

    return atomic_write(target, write, overwrite=overwrite)
