"""Reading and writing greyscale radiographs (PNG, TIFF, DICOM) without losing a bit.

>>> from xraydenoise.io import load_image, save_image
>>> img = load_image("chest.dcm")  # doctest: +SKIP
>>> save_image("chest_denoised.dcm", img.with_float(img.to_float()), method="nlm")  # doctest: +SKIP
"""

from xraydenoise.io.dicom import (
    dicomdir_referenced_files,
    is_dicom_file,
    is_dicomdir,
    output_transfer_syntax,
)
from xraydenoise.io.image import (
    SUPPORTED_SUFFIXES,
    Image,
    is_supported_path,
    load_image,
    save_image,
    with_image_suffix,
)

__all__ = [
    "SUPPORTED_SUFFIXES",
    "Image",
    "dicomdir_referenced_files",
    "is_dicom_file",
    "is_dicomdir",
    "is_supported_path",
    "load_image",
    "output_transfer_syntax",
    "save_image",
    "with_image_suffix",
]
