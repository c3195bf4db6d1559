"""A corpus of DICOM files written by others (pydicom's test files, dcmtk, gdcm) and dciodvfy.

Built at test time into a temporary folder, from files shipped inside the pydicom wheel and
from a real radiograph bundled with the package converted by dcmtk's and gdcm's tools, so
that no binary DICOM is committed. A missing tool is a test failure, never a skip:
``tests/setup_system_deps.sh`` installs them (Debian packages dcmtk, dicom3tools and
libgdcm-tools).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import PIL.Image
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

ROOT = Path(__file__).resolve().parents[1]
CHEST = ROOT / "src" / "xraydenoise" / "samples" / "nih_00001629_002.png"
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
SETUP_HINT = "run tests/setup_system_deps.sh (Debian packages dcmtk, dicom3tools, libgdcm-tools)"

#: pydicom's own test files (several with a TIFF header in the preamble) -> output syntax.
FROM_PYDICOM = {
    "CT_small.dcm": ExplicitVRLittleEndian,
    "MR_small.dcm": ExplicitVRLittleEndian,
    "MR_small_RLE.dcm": RLELossless,
    "MR_small_jp2klossless.dcm": JPEG2000Lossless,
    "MR_small_jpeg_ls_lossless.dcm": JPEGLSLossless,
    "MR_small_implicit.dcm": ExplicitVRLittleEndian,
    "MR_small_bigendian.dcm": ExplicitVRLittleEndian,
    "JPEG2000.dcm": ExplicitVRLittleEndian,  # lossy JPEG 2000: never re-encoded lossy
    "JPGExtended.dcm": ExplicitVRLittleEndian,
    "image_dfl.dcm": DeflatedExplicitVRLittleEndian,
}
#: dcmtk and gdcm command lines that turn dx12.dcm (or, with {sc}, img2dcm's output) into
#: corpus files -> output syntax.
FROM_TOOLS = {
    "sc_img2dcm.dcm": (["img2dcm", "-i", "BMP", "{bmp}", "{out}"], ExplicitVRLittleEndian),
    "sc_jpeg_baseline.dcm": (["dcmcjpeg", "+eb", "{sc}", "{out}"], ExplicitVRLittleEndian),
    "dx12_jpeg_lossless_sv1.dcm": (["dcmcjpeg", "+e1", "{dx}", "{out}"], ExplicitVRLittleEndian),
    "dx12_jpeg_lossless_p14.dcm": (["dcmcjpeg", "+el", "{dx}", "{out}"], ExplicitVRLittleEndian),
    "dx12_jpeg_extended.dcm": (["dcmcjpeg", "+ee", "{dx}", "{out}"], ExplicitVRLittleEndian),
    "dx12_jpeg_ls.dcm": (["dcmcjpls", "{dx}", "{out}"], JPEGLSLossless),
    # near-lossless JPEG-LS is lossy: decoded, never re-encoded lossily
    "dx12_jpeg_ls_near_lossless.dcm": (["dcmcjpls", "+en", "{dx}", "{out}"], ExplicitVRLittleEndian),
    "dx12_rle.dcm": (["dcmcrle", "{dx}", "{out}"], RLELossless),
    "dx12_big_endian.dcm": (["dcmconv", "+tb", "{dx}", "{out}"], ExplicitVRLittleEndian),
    "dx12_implicit.dcm": (["dcmconv", "+ti", "{dx}", "{out}"], ExplicitVRLittleEndian),
    "dx12_gdcm_j2k.dcm": (["gdcmconv", "--j2k", "{dx}", "{out}"], JPEG2000Lossless),
    "dx12_gdcm_jpegls.dcm": (["gdcmconv", "--jpegls", "{dx}", "{out}"], JPEGLSLossless),
    "dx12_gdcm_rle.dcm": (["gdcmconv", "--rle", "{dx}", "{out}"], RLELossless),
    "dx12_gdcm_jpeg_lossless.dcm": (["gdcmconv", "--jpeg", "{dx}", "{out}"], ExplicitVRLittleEndian),
    "sc_gdcm_j2k_lossy.dcm": (["gdcmconv", "--j2k", "--lossy", "-q", "50", "{sc}", "{out}"],
                              ExplicitVRLittleEndian),
}
#: Multi-frame corpus (frames of the same radiograph): name -> (command or None, output syntax).
MULTI_FRAME = {
    "mf12.dcm": (None, ExplicitVRLittleEndian),
    "mf12_rle.dcm": (["dcmcrle", "{mf}", "{out}"], RLELossless),
    "mf12_gdcm_j2k.dcm": (["gdcmconv", "--j2k", "{mf}", "{out}"], JPEG2000Lossless),
}


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: {SETUP_HINT}")
    return path


def dciodvfy_errors(path: Path) -> set[str]:
    """The distinct "Error - ..." lines dciodvfy reports for ``path``."""
    result = subprocess.run([require_tool("dciodvfy"), str(path)], capture_output=True, text=True, timeout=120)
    lines = (result.stdout + result.stderr).splitlines()
    return {line.strip() for line in lines if line.startswith("Error")}


def new_instance(sop_class: str) -> Dataset:
    """An empty instance of ``sop_class`` with fresh UIDs and Part 10 file meta."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    return ds


def dx12_dataset(pixels: np.ndarray) -> Dataset:
    """A 12-bit Digital X-Ray (For Presentation) header such as a modality writes."""
    ds = new_instance("1.2.840.10008.5.1.4.1.1.1.1")  # DX For Presentation
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Corpus^Chest", "C-1", "", "O"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240102", "101500", "1", ""
    ds.ReferringPhysicianName = ""
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.Laterality = "DX", 2, 1, ""
    ds.Manufacturer, ds.PatientOrientation = "", ["A", "R"]
    ds.ContentDate, ds.ContentTime = "20240102", "101500"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PresentationIntentType, ds.BurnedInAnnotation = "FOR PRESENTATION", "NO"
    ds.DetectorType, ds.ImagerPixelSpacing, ds.PixelSpacing = "DIRECT", [0.143, 0.143], [0.143, 0.143]
    ds.ExposureIndex = None
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "US"
    ds.WindowCenter, ds.WindowWidth = "2048", "4096"
    ds.PresentationLUTShape, ds.LossyImageCompression = "IDENTITY", "00"
    ds.PixelPaddingValue = 0  # a collimator border, padded as some detectors do
    ds.SmallestImagePixelValue, ds.LargestImagePixelValue = int(pixels.min()), int(pixels.max())
    block = ds.private_block(0x0029, "CORPUS VENDOR", create=True)
    block.add_new(0x01, "LO", "private value")
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds["PixelData"].VR = "OW"
    return ds


def build_corpus(folder: Path) -> dict[str, tuple[Path, str]]:
    """Write the corpus into ``folder``; returns name -> (path, expected output syntax)."""
    folder.mkdir(parents=True, exist_ok=True)
    corpus: dict[str, tuple[Path, str]] = {}
    for name, syntax in FROM_PYDICOM.items():
        source = PYDICOM_FILES / name
        assert source.is_file(), f"{source} is missing from the installed pydicom"
        corpus[name] = (Path(shutil.copyfile(source, folder / name)), syntax)

    scratch = folder.parent / f"{folder.name}-sources"  # tool inputs, not corpus members
    scratch.mkdir(exist_ok=True)
    bmp = scratch / "chest.bmp"
    PIL.Image.open(CHEST).convert("L").crop((300, 300, 556, 556)).save(bmp)
    pixels = chest_12bit(slice(300, 556), slice(300, 556))
    pixels[:, :12] = 0  # the padded border
    dx = scratch / "dx12.dcm"
    pydicom.dcmwrite(dx, dx12_dataset(pixels), enforce_file_format=True)
    corpus["dx12.dcm"] = (Path(shutil.copyfile(dx, folder / "dx12.dcm")), ExplicitVRLittleEndian)

    names = {"bmp": bmp, "dx": dx, "sc": folder / "sc_img2dcm.dcm"}
    for name, (command, syntax) in FROM_TOOLS.items():
        corpus[name] = (run_tool(command, folder / name, names), syntax)
    return corpus


def run_tool(command: list[str], out: Path, names: dict[str, Path]) -> Path:
    argv = [require_tool(command[0])] + [arg.format(out=out, **names) for arg in command[1:]]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and out.is_file(), f"{' '.join(argv)} failed: {result.stderr}"
    return out


def chest_12bit(rows: slice, cols: slice) -> np.ndarray:
    """A crop of the bundled chest radiograph, spread from 8 to the full 12 bits."""
    grey = np.asarray(PIL.Image.open(CHEST).convert("L"))[rows, cols]
    return (grey.astype(np.uint16) << 4) | (grey >> 4)


def build_multi_frame_corpus(folder: Path) -> dict[str, tuple[Path, str]]:
    """Multi-frame greyscale files (Multi-frame Grayscale Word SC, 3 frames of 12 bits)."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = np.stack([chest_12bit(slice(r, r + 96), slice(300, 396)) for r in (300, 400, 500)])
    ds = dx12_dataset(frames[0])
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7.3"
    ds.Modality, ds.ConversionType = "OT", "WSD"
    for keyword in ("PresentationIntentType", "DetectorType", "ImagerPixelSpacing", "ExposureIndex",
                    "PixelPaddingValue", "RescaleType", "PresentationLUTShape"):
        del ds[keyword]
    ds.NumberOfFrames = len(frames)
    ds.FrameIncrementPointer = 0x00181063  # FrameTime
    ds.FrameTime = "100"
    ds.PixelData = frames.astype("<u2").tobytes()
    source = folder / "mf12.dcm"
    pydicom.dcmwrite(source, ds, enforce_file_format=True)
    corpus = {}
    for name, (command, syntax) in MULTI_FRAME.items():
        path = source if command is None else run_tool(command, folder / name, {"mf": source})
        corpus[name] = (path, syntax)
    return corpus


def waveform_file(path: Path) -> Path:
    """A 12-lead ECG object: DICOM, with a waveform and no pixel data."""
    ds = new_instance("1.2.840.10008.5.1.4.1.1.9.1.1")  # 12-lead ECG Waveform
    ds.PatientID, ds.Modality = "ECG-1", "ECG"
    channel = Dataset()
    channel.NumberOfWaveformChannels, channel.NumberOfWaveformSamples = 1, 4
    channel.WaveformBitsAllocated, channel.WaveformSampleInterpretation = 16, "SS"
    channel.WaveformData = np.zeros(4, "<i2").tobytes()
    ds.WaveformSequence = [channel]
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path
