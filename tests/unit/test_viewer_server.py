"""The viewer server's helpers: DICOM VOI windows in pixel units, downsampling, the LRU cache."""

from __future__ import annotations

import threading
import time
import warnings

import numpy as np
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from xraydenoise.viewer.server import LRUCache, downsample, preview_factor, voi_windows


def window_dataset(**elements) -> Dataset:
    ds = Dataset()
    for key, value in elements.items():
        setattr(ds, key, value)
    return ds


def test_voi_window_mapped_through_rescale_sign_and_monochrome1():
    # 12-bit signed, slope 2, intercept -1000: a window centred on rescaled value 0 is stored
    # value 500, offset by 2048 into the unsigned range, then inverted for MONOCHROME1.
    ds = window_dataset(WindowCenter=["0", "200"], WindowWidth=["400", "100"], RescaleSlope="2",
                        RescaleIntercept="-1000", PixelRepresentation=1, BitsStored=12,
                        WindowCenterWidthExplanation=["SOFT", "BONE"])
    windows = voi_windows(ds, 4095, "MONOCHROME1")
    assert windows == [
        {"name": "SOFT", "center": 4095 - (500 + 2048), "width": 200.0},
        {"name": "BONE", "center": 4095 - (600 + 2048), "width": 50.0},
    ]


@pytest.mark.parametrize("elements", [
    {},
    {"WindowCenter": "100"},
    {"WindowCenter": "100", "WindowWidth": "0"},
    {"WindowCenter": b"x ", "WindowWidth": b"10"},
])
def test_missing_or_bad_voi_window_gives_none(elements):
    ds = Dataset()
    for keyword, value in elements.items():
        tag = Tag(keyword)
        # Raw elements, as read from a file: pydicom would refuse a malformed value assigned here.
        ds[tag] = RawDataElement(tag, "DS", len(value), value if isinstance(value, bytes) else value.encode(), 0, True, True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the malformed value, as it should
        assert voi_windows(ds, 4095, "MONOCHROME2") == []
    assert voi_windows(None, 255, "MONOCHROME2") == []


def test_downsample_is_a_block_mean_with_edges_repeated():
    values = np.arange(25, dtype=np.float32).reshape(5, 5)
    small = downsample(values, 2)
    assert small.shape == (3, 3)
    assert small[0, 0] == np.mean([0, 1, 5, 6])
    assert small[2, 2] == 24  # the corner block is the last pixel repeated
    assert preview_factor(4096, 3000, side=1024) == 4 and preview_factor(1024, 10, side=1024) == 1


def test_cache_evicts_oldest_by_bytes_and_computes_once():
    cache = LRUCache(max_bytes=2 * 800)
    for key in "abc":
        cache.get(key, lambda: np.zeros(100))  # 800 bytes each
    assert "a" not in cache and "b" in cache and "c" in cache

    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.2)
        return np.ones(10)

    threads = [threading.Thread(target=cache.get, args=("d", slow)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1


def test_method_list_adds_weights_files_and_refuses_the_rest(tmp_path):
    from xraydenoise.denoisers import list_methods
    from xraydenoise.errors import ConfigError
    from xraydenoise.viewer.command import resolve_methods

    weights = tmp_path / "mine.safetensors"
    weights.write_bytes(b"")  # only its existence is checked here; loading happens on demand
    methods, labels, first = resolve_methods([str(weights)])
    assert methods[:3] == ["network", "bm3d", "nlm"] and sorted(methods[:-1]) == sorted(list_methods())
    assert methods[first] == str(weights) and labels[first] == "mine.safetensors"
    assert resolve_methods(["nlm"])[2] == 2 and resolve_methods([])[2] == 0
    for bad, message in [("sharpen", "unknown method"), (str(tmp_path / "gone.onnx"), "no such weights file"),
                         (str(tmp_path / "model.pt"), "pickles")]:
        with pytest.raises(ConfigError, match=message):
            resolve_methods([bad])


@pytest.mark.parametrize("no_browser", [False, True])
def test_view_opens_the_browser_at_the_served_address_unless_no_browser(monkeypatch, no_browser):
    import webbrowser

    from typer.testing import CliRunner

    from tests.conftest import CHEST
    from xraydenoise.cli import app
    from xraydenoise.viewer.server import ViewerServer

    opened: list[str] = []
    served: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *args, **kwargs: opened.append(url) or True)
    # Serving returns at once, as after Ctrl-C: the command then closes the server and exits.
    monkeypatch.setattr(ViewerServer, "serve_forever", lambda self, *args, **kwargs: served.append(self.url))
    args = ["view", str(CHEST), "--port", "0", *(["--no-browser"] if no_browser else [])]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(served) == 1 and served[0].startswith("http://127.0.0.1:")
    assert served[0] in result.output  # the address printed is the one served
    assert opened == ([] if no_browser else served)
