"""A corpus of bad inputs, each run through the command line in a subprocess.

Every bad input must give exit code 2 and one ``error:`` line per bad file that names the
file and the reason, never a traceback; leave no output (and no ``.partial`` temporary) for
that input; and leave every input byte-for-byte unchanged. Degenerate but valid images
(1x1, 1xN, Nx1) must be denoised, not refused. Each case is a builder function in the
``REFUSED`` table below; one parametrized test runs them all.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

#: Options of the tiny U-Net used wherever weights are under test.
TINY_UNET = {"base_channels": 4, "levels": 2}
SUMMARY = re.compile(r"^(\d+) denoised, (\d+) skipped \(already done\), (\d+) failed$", re.M)


# --------------------------------------------------------------------------- helpers


def tree_digest(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file below ``folder`` (what must not change)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def write_png(path: Path, pixels: np.ndarray) -> Path:
    from xraydenoise.io import Image, save_image

    return save_image(path, Image(pixels, "png", 255 if pixels.dtype == np.uint8 else 65535))


def write_dicom(path: Path, pixels: np.ndarray) -> Path:
    """A real DICOM file (Secondary Capture, MONOCHROME2) written by the package itself."""
    return write_png(path, pixels)  # the suffix decides the format


def write_weights(path: Path, architecture: str = "unet", options: dict | None = None, *,
                  card_architecture: str | None = None, card_options: dict | None = None) -> Path:
    """Random-weight network ``architecture(**options)`` saved as safetensors with a card that
    says ``card_architecture(**card_options)`` (by default: the truth)."""
    import torch

    from xraydenoise.models import create_model
    from xraydenoise.weights import save_weights

    options = dict(TINY_UNET if options is None else options)
    torch.manual_seed(0)
    card = {
        "name": path.stem,
        "architecture": card_architecture or architecture,
        "options": options if card_options is None else card_options,
    }
    return save_weights(create_model(architecture, **options), path, card)


@dataclass
class Setup:
    """What a case builder made: the command line and what its error must say."""

    args: list  # arguments after ``python -m xraydenoise.cli``
    bad: list[Path]  # files (or folders) each error line names, one line each
    reason: str  # regex every error line must match
    marker: Path | None = None  # a file that must never come into existence


def denoise(inputs, out: Path, *options) -> list:
    return ["denoise", *(inputs if isinstance(inputs, list) else [inputs]), "-o", out, "--method", "gaussian", *options]


# --------------------------------------------------------------------------- builders
# Each takes (case folder, a real 48x40 uint8 radiograph crop) and returns a Setup.


def empty_file(d: Path, px) -> Setup:
    bad = d / "empty.png"
    bad.write_bytes(b"")
    return Setup(denoise(bad, d / "out"), [bad], r"empty file")


def truncated_png(d: Path, px) -> Setup:
    bad = write_png(d / "cut.png", px)
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    return Setup(denoise(bad, d / "out"), [bad], r"cannot read PNG: .*truncated")


def truncated_dicom(d: Path, px) -> Setup:
    bad = write_dicom(d / "cut.dcm", px.astype(np.uint16) * 16)
    bad.write_bytes(bad.read_bytes()[: int(bad.stat().st_size * 0.6)])
    return Setup(denoise(bad, d / "out"), [bad], r"(pixel data|truncated)")


def text_named_png(d: Path, px) -> Setup:
    bad = d / "notes.png"
    bad.write_text("Patient moved during exposure; please repeat.\n" * 20)
    return Setup(denoise(bad, d / "out"), [bad], r"not a PNG file")


def dicom_without_pixel_data(d: Path, px) -> Setup:
    import pydicom

    bad = write_dicom(d / "nopix.dcm", px)
    ds = pydicom.dcmread(bad)
    del ds.PixelData
    ds.save_as(bad, enforce_file_format=True)
    return Setup(denoise(bad, d / "out"), [bad], r"DICOM file has no pixel data")


def dicom_jpeg2000_junk(d: Path, px) -> Setup:
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    bad = write_dicom(d / "j2k.dcm", px)
    ds = pydicom.dcmread(bad)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"junk, not a codestream" * 4])
    ds["PixelData"].VR = "OB"
    ds.save_as(bad, enforce_file_format=True)
    return Setup(denoise(bad, d / "out"), [bad],
                 r"transfer syntax JPEG 2000 .*1\.2\.840\.10008\.1\.2\.4\.90.*cannot be decoded")


def output_overwrites_another_input(d: Path, px) -> Setup:
    # scan.png's output as TIFF would land on the 16-bit input scan.tif.
    import tifffile

    png = write_png(d / "in" / "scan.png", px)
    tif = d / "in" / "scan.tif"
    tifffile.imwrite(tif, px.astype(np.uint16) * 257, photometric="minisblack")
    return Setup(denoise(d / "in", d / "in", "--format", "tiff", "--overwrite"), [png, tif],
                 r"(would overwrite the input .*scan\.tif|output path .*scan\.tif equals the input)")


def two_inputs_share_an_output(d: Path, px) -> Setup:
    write_png(d / "a" / "scan.png", px)
    second = write_png(d / "b" / "scan.png", px[::-1])
    return Setup(denoise([d / "a" / "scan.png", second], d / "out"), [second], r"also the output of .*common folder")


def format_change_merges_two_inputs(d: Path, px) -> Setup:
    import tifffile

    write_png(d / "in" / "scan.png", px)
    tif = d / "in" / "scan.tif"
    tifffile.imwrite(tif, px, photometric="minisblack")
    return Setup(denoise(d / "in", d / "out", "--format", "png"), [tif], r"also the output of .*own format")


def colour_png(d: Path, px) -> Setup:
    # A radiograph with a red annotation box, as exported from a viewer.
    rgb = np.repeat(px[..., None], 3, axis=2)
    import PIL.Image

    rgb[5:10, 5:30] = (255, 0, 0)
    bad = d / "annotated.png"
    PIL.Image.fromarray(rgb, "RGB").save(bad)
    return Setup(denoise(bad, d / "out"), [bad], r"colour image")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_header_png(d: Path, px) -> Setup:
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    bad = d / "bomb.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
                    + _chunk(b"IDAT", zlib.compress(b"\0" * 100_001)) + _chunk(b"IEND", b""))
    return Setup(denoise(bad, d / "out"), [bad], r"100000x100000 .*above the limit")


def float_tiff_nan_inf(d: Path, px) -> Setup:
    import tifffile

    values = px.astype(np.float32) / 255
    values[3, 4], values[10, 11], values[20, 2] = np.nan, np.inf, -np.inf
    bad = d / "float.tif"
    tifffile.imwrite(bad, values, photometric="minisblack")
    return Setup(denoise(bad, d / "out"), [bad], r"float TIFF contains NaN or Inf")


def empty_folder(d: Path, px) -> Setup:
    bad = d / "nothing_here"
    bad.mkdir()
    return Setup(denoise(bad, d / "out"), [bad], r"folder contains no supported image")


def missing_input(d: Path, px) -> Setup:
    bad = d / "never_scanned.png"
    return Setup(denoise(bad, d / "out"), [bad], r"no such file")


def output_parent_is_a_file(d: Path, px) -> Setup:
    good = write_png(d / "a.png", px)
    blocker = d / "somefile.txt"
    blocker.write_text("not a folder\n")
    out = blocker / "out"
    return Setup(denoise(good, out), [out], r"cannot create output folder")


def output_folder_is_an_input_file(d: Path, px) -> Setup:
    good = write_png(d / "a.png", px)
    return Setup(denoise(good, good), [good], r"cannot create output folder")


def output_file_is_the_input(d: Path, px) -> Setup:
    good = write_png(d / "a.png", px)
    return Setup(denoise(good, d, "--overwrite"), [good], r"output path .* equals the input")


def output_folder_is_the_input_folder(d: Path, px) -> Setup:
    a = write_png(d / "scans" / "a.png", px)
    b = write_png(d / "scans" / "sub" / "b.png", px[::-1])
    return Setup(denoise(d / "scans", d / "scans", "--overwrite"), [a, b], r"output path .* equals the input")


def output_is_a_link_to_the_input(d: Path, px) -> Setup:
    good = write_png(d / "a.png", px)
    (d / "out").mkdir()
    (d / "out" / "a.png").symlink_to(good)
    return Setup(denoise(good, d / "out", "--overwrite"), [good], r"output path .*out/a\.png equals the input")


def output_name_taken_by_a_folder(d: Path, px) -> Setup:
    good = write_png(d / "a.png", px)
    (d / "out" / "a.png").mkdir(parents=True)
    return Setup(denoise(good, d / "out"), [d / "out" / "a.png"], r"is a directory")


def noise_output_is_the_input(d: Path, px) -> Setup:
    good = write_png(d / "a.png", px)
    return Setup(["noise", good, "-o", good, "--sigma", "25", "--overwrite"], [good], r"refusing to overwrite the input")


def _with_weights(d: Path, weights: Path) -> list:
    good = write_png(d / "a.png", np.tile(np.arange(40, dtype=np.uint8) * 6, (48, 1)))
    return ["denoise", good, "-o", d / "out", "--method", weights]


def _card(path: Path, architecture="unet", options=None) -> None:
    path.with_suffix(".json").write_text(json.dumps({"name": "x", "architecture": architecture,
                                                     "options": TINY_UNET if options is None else options}))


def zero_byte_weights(d: Path, px) -> Setup:
    w = d / "empty.safetensors"
    w.write_bytes(b"")
    _card(w)
    return Setup(_with_weights(d, w), [w], r"weights file is empty")


def junk_weights(d: Path, px) -> Setup:
    w = d / "junk.safetensors"
    w.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}" + bytes(range(256)))
    _card(w)
    return Setup(_with_weights(d, w), [w], r"not a valid safetensors file")


def weights_without_card(d: Path, px) -> Setup:
    w = write_weights(d / "lonely.safetensors")
    w.with_suffix(".json").unlink()
    return Setup(_with_weights(d, w), [w], r"model card lonely\.json not found")


def dncnn_weights_unet_card(d: Path, px) -> Setup:
    w = write_weights(d / "dncnn.safetensors", "dncnn", {"depth": 3, "channels": 4},
                      card_architecture="unet", card_options=TINY_UNET)
    return Setup(_with_weights(d, w), [w], r"weights do not match architecture 'unet'")


def unet_weights_other_options(d: Path, px) -> Setup:
    w = write_weights(d / "wide.safetensors", "unet", {"base_channels": 8, "levels": 2}, card_options=TINY_UNET)
    return Setup(_with_weights(d, w), [w], r"weights do not match architecture 'unet'")


def card_unknown_architecture(d: Path, px) -> Setup:
    w = write_weights(d / "mystery.safetensors", card_architecture="transformer9000")
    return Setup(_with_weights(d, w), [w], r"unknown network")


class Evil:
    """Unpickling this creates ``marker``: proof that a file was (or was not) unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _evil(d: Path, name: str, protocol: int = pickle.HIGHEST_PROTOCOL, card: bool = True) -> tuple[Path, Path]:
    marker = d / "PWNED"
    path = d / name
    path.write_bytes(pickle.dumps(Evil(marker), protocol=protocol))
    if card:
        _card(path)
    return path, marker


def pickle_as_safetensors(d: Path, px) -> Setup:
    w, marker = _evil(d, "evil.safetensors")
    return Setup(_with_weights(d, w), [w], r"pickle", marker=marker)


def protocol0_pickle_as_safetensors(d: Path, px) -> Setup:
    # Protocol 0 has no 0x80 magic: it must still only ever be parsed as safetensors.
    w, marker = _evil(d, "evil0.safetensors", protocol=0)
    return Setup(_with_weights(d, w), [w], r"not a valid safetensors file", marker=marker)


def torch_save_as_safetensors(d: Path, px) -> Setup:
    import torch

    marker = d / "PWNED"
    w = d / "ckpt.safetensors"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hook": Evil(marker)}, w)
    _card(w)
    return Setup(_with_weights(d, w), [w], r"pickle", marker=marker)


def pickle_as_pt(d: Path, px) -> Setup:
    w, marker = _evil(d, "evil.pt", card=False)
    return Setup(_with_weights(d, w), [w], r"pickles, which can run code, and are never loaded", marker=marker)


def pickle_as_pkl(d: Path, px) -> Setup:
    w, marker = _evil(d, "evil.pkl", card=False)
    return Setup(_with_weights(d, w), [w], r"pickles, which can run code, and are never loaded", marker=marker)


REFUSED: list[Callable[[Path, np.ndarray], Setup]] = [
    empty_file,
    truncated_png,
    truncated_dicom,
    text_named_png,
    dicom_without_pixel_data,
    dicom_jpeg2000_junk,
    colour_png,
    bomb_header_png,
    float_tiff_nan_inf,
    empty_folder,
    missing_input,
    output_overwrites_another_input,
    two_inputs_share_an_output,
    format_change_merges_two_inputs,
    output_parent_is_a_file,
    output_folder_is_an_input_file,
    output_file_is_the_input,
    output_folder_is_the_input_folder,
    output_is_a_link_to_the_input,
    output_name_taken_by_a_folder,
    noise_output_is_the_input,
    zero_byte_weights,
    junk_weights,
    weights_without_card,
    dncnn_weights_unet_card,
    unet_weights_other_options,
    card_unknown_architecture,
    pickle_as_safetensors,
    protocol0_pickle_as_safetensors,
    torch_save_as_safetensors,
    pickle_as_pt,
    pickle_as_pkl,
]


@pytest.mark.parametrize("build", REFUSED, ids=lambda f: f.__name__)
def test_bad_input_is_refused_cleanly(build, tmp_path, hand_pixels, cli):
    setup = build(tmp_path, hand_pixels)
    before = tree_digest(tmp_path)

    result = cli(*setup.args)

    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.error_lines
    assert len(lines) == len(setup.bad), result.stderr
    for line in lines:  # one line per bad file, naming it and the reason
        assert re.search(setup.reason, line), line
    for bad in setup.bad:
        assert sum(f"{bad}:" in line for line in lines) == 1, (bad, lines)
    # Inputs, weights and everything else in the case folder are byte for byte the same, and
    # no file appeared anywhere: no output for a bad input, no .partial temporary.
    assert not list(tmp_path.rglob("*.partial"))
    assert tree_digest(tmp_path) == before
    if setup.marker is not None:
        assert not setup.marker.exists(), "a pickle was unpickled"
    if setup.args[0] == "denoise":
        summary = SUMMARY.search(result.stderr)
        if summary:  # the batch got as far as running: nothing counted as done
            assert summary.group(1) == "0"


def test_the_evil_pickle_really_runs_code_when_unpickled(tmp_path):
    """Guards the pickle cases above: loading this file *would* create the marker."""
    path, marker = _evil(tmp_path, "evil.pkl", card=False)
    pickle.loads(path.read_bytes())
    assert marker.exists()


# --------------------------------------------------------------------------- valid edge cases


@pytest.fixture(scope="module")
def tiny_unet(tmp_path_factory) -> Path:
    return write_weights(tmp_path_factory.mktemp("weights") / "tiny.safetensors")


@pytest.mark.parametrize("method", ["gaussian", "median", "tiny-unet"])
def test_one_pixel_and_one_row_images_are_denoised(method, tmp_path, hand_pixels, tiny_unet, cli):
    """1x1, 1xN and Nx1 images are valid: padded and denoised, never refused."""
    from xraydenoise.io import load_image

    src = tmp_path / "in"
    write_png(src / "dot.png", hand_pixels[:1, :1])
    write_png(src / "row.png", hand_pixels[:1, :37])
    write_png(src / "column.png", hand_pixels[:29, :1])
    write_dicom(src / "row16.dcm", hand_pixels[5:6, :].astype(np.uint16) * 257)
    before = tree_digest(src)
    out = tmp_path / "out"
    result = cli("denoise", src, "-o", out, "--method", tiny_unet if method == "tiny-unet" else method)

    assert "Traceback" not in result.stderr
    assert result.returncode == 0, result.stderr
    assert result.error_lines == []
    assert SUMMARY.search(result.stderr).groups() == ("4", "0", "0")
    for name in ("dot.png", "row.png", "column.png", "row16.dcm"):
        original, denoised = load_image(src / name), load_image(out / name)
        assert denoised.pixels.shape == original.pixels.shape, name
        assert denoised.pixels.dtype == original.pixels.dtype, name
    assert tree_digest(src) == before


# --------------------------------------------------------------------------- batches


def test_batch_with_bad_files_denoises_the_good_ones(tmp_path, hand_pixels, cli):
    src = tmp_path / "scans"
    good = [write_png(src / f"good{i}.png", np.roll(hand_pixels, 5 * i, axis=1)) for i in range(3)]
    (src / "broken.png").write_bytes(good[0].read_bytes()[:200])
    (src / "sub").mkdir()
    (src / "sub" / "zero.dcm").write_bytes(b"")
    before = tree_digest(src)
    out = tmp_path / "out"

    result = cli(*denoise(src, out), "--workers", "2")  # the process-pool path

    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "good0.png", "good1.png", "good2.png"]
    lines = result.error_lines
    assert len(lines) == 2, result.stderr
    assert any(str(src / "broken.png") in line for line in lines)
    assert any(str(src / "sub" / "zero.dcm") in line and "empty file" in line for line in lines)
    assert SUMMARY.search(result.stderr).groups() == ("3", "0", "2")
    assert tree_digest(src) == before

    # A rerun (in-process path) resumes: the good ones are skipped, the bad ones fail again,
    # nothing is rewritten.
    outputs = tree_digest(out)
    again = cli(*denoise(src, out))
    assert again.returncode == 2 and len(again.error_lines) == 2
    assert SUMMARY.search(again.stderr).groups() == ("0", "3", "2")
    assert tree_digest(out) == outputs


def test_batch_with_bad_weights_and_workers_fails_in_one_line(tmp_path, hand_pixels, cli):
    """A network that cannot be loaded fails once, cleanly, also with worker processes."""
    src = tmp_path / "scans"
    for i in range(2):
        write_png(src / f"good{i}.png", hand_pixels)
    w = tmp_path / "empty.safetensors"
    w.write_bytes(b"")
    _card(w)
    result = cli("denoise", src, "-o", tmp_path / "out", "--method", w, "--workers", "2")
    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stderr
    assert len(result.error_lines) == 1 and str(w) in result.error_lines[0], result.stderr
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


def test_one_nan_pixel_is_refused_through_the_api_not_spread():
    import numpy as np

    import xraydenoise
    from xraydenoise.errors import XRayDenoiseError

    image = np.full((64, 64), 0.5, np.float32)
    image[10, 20] = np.nan
    for method in ("network", "gaussian"):
        with pytest.raises(XRayDenoiseError, match="NaN or Inf"):
            xraydenoise.denoise(image, method=method)
