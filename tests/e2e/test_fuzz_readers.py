"""Fuzzing the image readers: mutated real files must load or raise ImageReadError, nothing else.

Seeds are valid files made from a real radiograph (8-bit PNG, 16-bit PNG, 16-bit TIFF,
float32 TIFF, DICOM). Each example applies a few mutations: byte flips, truncation, random insertions,
duplication of a slice (a chunk, a tag, a strip), and overwriting 4 bytes with a boundary
integer (lengths, offsets, image sizes). For PNG, chunk CRCs are sometimes recomputed so
that the mutation reaches the decoder instead of stopping at the checksum.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xraydenoise.errors import ImageReadError
from xraydenoise.io import Image, load_image

SEEDS = ["hand8.png", "hand16.png", "hand16.tif", "handf32.tif", "hand.dcm"]
#: Examples per seed file; raise it for a longer hunt (XRAYDENOISE_FUZZ_EXAMPLES=5000).
EXAMPLES = int(os.environ.get("XRAYDENOISE_FUZZ_EXAMPLES", "150"))
#: Small enough that a mutated size field can never make a reader allocate much memory.
MAX_PIXELS = 2**22
BOUNDARY_INTS = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 100_000,
                 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]


def _fix_png_crcs(data: bytes) -> bytes:
    """Recompute the CRC of every whole chunk, so a mutation is judged by the decoder."""
    out = bytearray(data)
    pos = 8
    while pos + 12 <= len(out):
        (length,) = struct.unpack(">I", out[pos : pos + 4])
        end = pos + 8 + length
        if end + 4 > len(out):
            break
        out[end : end + 4] = struct.pack(">I", zlib.crc32(bytes(out[pos + 4 : end])))
        pos = end + 4
    return bytes(out)


@st.composite
def mutations(draw, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        size = len(data)
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "duplicate", "integer"]))
        if size == 0:
            break
        at = draw(st.integers(0, size - 1))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "duplicate":
            length = draw(st.integers(1, 64))
            to = draw(st.integers(0, size))
            data[to:to] = data[at : at + length]
        else:
            value = draw(st.sampled_from(BOUNDARY_INTS))
            order = draw(st.sampled_from([">I", "<I"]))
            data[at : at + 4] = struct.pack(order, value)
    if seed.startswith(b"\x89PNG") and draw(st.booleans()):
        return _fix_png_crcs(bytes(data))
    return bytes(data)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def test_seeds_are_valid(seed_files, fuzz_dir):
    """The fuzzer starts from files that load, so its failures mean something."""
    for name in SEEDS:
        path = fuzz_dir / f"seed_{name}"
        path.write_bytes(seed_files[name])
        image = load_image(path, max_pixels=MAX_PIXELS)
        assert image.pixels.shape == (24, 24)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", SEEDS)
def test_mutated_files_load_or_raise_image_read_error(name, seed_files, fuzz_dir):
    path = fuzz_dir / f"mutant_{name}"  # the suffix stays, so the reader is chosen as for real files
    found: list[str] = []

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=mutations(seed_files[name]))
    def check(data: bytes) -> None:
        path.write_bytes(data)
        try:
            image = load_image(path, max_pixels=MAX_PIXELS)
        except ImageReadError as exc:
            message = str(exc)
            assert message.startswith(f"{path}: ") and "\n" not in message, message
            found.append("error")
            return
        assert isinstance(image, Image)
        assert image.pixels.ndim == 2 and image.pixels.size > 0
        assert image.pixels.dtype in (np.uint8, np.uint16, np.float32)
        assert np.isfinite(image.to_float()).all()  # NaN/Inf in a float TIFF must be refused
        found.append("loaded")

    check()
    print(f"{name}: {found.count('loaded')} loaded, {found.count('error')} ImageReadError")
    # Both outcomes occur: the mutations are neither all harmless nor all fatal at the magic.
    assert "error" in found
