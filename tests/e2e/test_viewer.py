"""``xraydenoise view``: the page driven in headless Chromium, the server's URL handling, the CLI.

The browser tests read pixels back from the page's canvases, so they check what a user sees:
the image is not blank, the before/after slider and window/level change the pixels shown, the
method switch loads another result, a large image shows a preview before its full result.

Chromium is the Debian package (``tests/setup_system_deps.sh`` installs it), driven by
Playwright for Python (in the ``dev`` extra); Playwright's own browser downloads are not
used. Without either, these tests fail with the command that fixes it: they never skip.

``XRAYDENOISE_VIEWER_SCREENSHOTS=docs/viewer`` makes ``test_screenshots`` write the
screenshots of ``docs/viewer.md`` there.
"""

from __future__ import annotations

import http.client
import io
import os
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from tests.conftest import CHEST, SAMPLES, run_cli

CHROMIUM = os.environ.get("XRAYDENOISE_CHROMIUM", "/usr/bin/chromium")
#: Flags for a closed network: without the background-networking ones Chromium's own
#: connections (updates, sync) are refused and slow the start down.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
HIP = SAMPLES / "fracatlas_IMG0002544.png"
#: The DICOM test image's VOI window (stored values; slope 1, intercept 0, MONOCHROME2).
DICOM_WINDOW = (1500.0, 1600.0)
#: Methods the page offers in these tests: the shipped network first (shown at start), then
#: a fast filter to switch to.
METHODS = ["network", "gaussian", "median"]
#: The large image's preview side: the 1024 px chest is shown at 1/2 first.
PREVIEW_SIDE = 512
TIMEOUT_MS = 120_000


# ---- fixtures ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def viewer_images(tmp_path_factory) -> list[Path]:
    """Real radiographs with visible noise: an 8-bit hip PNG (FracAtlas), a 12-bit DICOM chest
    crop with a VOI window in its header, and a 1024 px chest the page first shows as a preview."""
    import pydicom

    from tests.dicom_corpus import chest_12bit, dx12_dataset

    folder = tmp_path_factory.mktemp("viewer-images")
    rng = np.random.default_rng(0)
    hip = np.asarray(PIL.Image.open(HIP).convert("L"), dtype=np.float64)
    noisy = np.clip(np.rint(hip + rng.normal(0, 12, hip.shape)), 0, 255).astype(np.uint8)
    PIL.Image.fromarray(noisy).save(folder / "hip_noisy.png")

    chest = chest_12bit(slice(300, 556), slice(300, 556)).astype(np.float64)
    chest = np.clip(np.rint(chest + rng.normal(0, 80, chest.shape)), 1, 4095).astype(np.uint16)
    dataset = dx12_dataset(chest)
    dataset.WindowCenter, dataset.WindowWidth = str(DICOM_WINDOW[0]), str(DICOM_WINDOW[1])
    del dataset.PixelPaddingValue  # no padding: every pixel is denoised
    pydicom.dcmwrite(folder / "chest_12bit.dcm", dataset, enforce_file_format=True)

    big = np.asarray(PIL.Image.open(CHEST).convert("L"), dtype=np.float64)
    big = np.clip(np.rint(big + rng.normal(0, 8, big.shape)), 0, 255).astype(np.uint8)
    PIL.Image.fromarray(big).save(folder / "chest_large.png")
    return [folder / "hip_noisy.png", folder / "chest_12bit.dcm", folder / "chest_large.png"]


@pytest.fixture(scope="module")
def viewer_url(viewer_images):
    """A viewer server on a free loopback port, in a thread of the test process."""
    from xraydenoise.viewer.server import ViewerServer, ViewerState

    state = ViewerState(viewer_images, [p.name for p in viewer_images], METHODS, METHODS, preview_side=PREVIEW_SIDE)
    server = ViewerServer(state, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.url
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def cli_viewer(viewer_images, tiny_weights, tmp_path_factory):
    """``xraydenoise view`` started as a user starts it, on the small (256x256) DICOM image, so
    that BM3D stays quick: ``--method gaussian`` (shown first) and a weights file, which the
    page's method list then offers after the built-in methods. Yields (url, method labels)."""
    import subprocess
    import sys

    log = tmp_path_factory.mktemp("cli-viewer") / "view.log"
    command = [sys.executable, "-m", "xraydenoise.cli", "view", str(viewer_images[1]), "--port", "0", "--no-browser",
               "--method", "gaussian", "--method", str(tiny_weights)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(log, "wb") as errors:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, f"{line}{log.read_text()}"
        yield line.split("at ", 1)[1].split()[0]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium through Playwright; a failure (not a skip) when either is missing."""
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.fail(f"{CHROMIUM} not found: run tests/setup_system_deps.sh (Debian package chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[dev]'")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, viewer_url):
    """The viewer's page, opened on the first image with the first method's full result shown."""
    page, errors = open_cli_page(browser, viewer_url)
    yield page
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def wait_shown(page, image: int, method: int) -> None:
    """Wait until the page shows the full-resolution result of ``method`` on ``image``."""
    # A function, not an expression: the page's Content-Security-Policy forbids eval.
    page.wait_for_function(
        "(shown) => document.body.dataset.state === 'ready' && document.body.dataset.shown === shown",
        arg=f"{image}:{method}",
        timeout=TIMEOUT_MS,
    )


def canvas_grey(page, canvas: str, box=(0.3, 0.3, 0.7, 0.7)) -> np.ndarray:
    """RGB pixels of ``canvas`` inside ``box`` (fractions of its size: left, top, right, bottom)."""
    values = page.evaluate(
        """([id, box]) => {
            const c = document.getElementById(id);
            const x = Math.floor(box[0] * c.width), y = Math.floor(box[1] * c.height);
            const w = Math.floor((box[2] - box[0]) * c.width), h = Math.floor((box[3] - box[1]) * c.height);
            const d = c.getContext('2d').getImageData(x, y, w, h).data;
            return [w, h, Array.from(d)];
        }""",
        [canvas, list(box)],
    )
    width, height, data = values
    return np.asarray(data, dtype=np.float64).reshape(height, width, 4)[..., :3]


def canvas_png(page, canvas: str) -> np.ndarray:
    """All RGB pixels of ``canvas``, read back as a PNG (lossless, and much smaller to carry out
    of the page than :func:`canvas_grey`'s numbers)."""
    import base64

    url = page.evaluate("(id) => document.getElementById(id).toDataURL('image/png')", canvas)
    png = PIL.Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
    return np.asarray(png, dtype=np.float64)


def set_split(page, end: str) -> None:
    """Move the before/after slider all the way with the keyboard: End shows the original
    over the whole canvas, Home the denoised result."""
    page.focus("#split")
    page.keyboard.press(end)


# ---- the page ---------------------------------------------------------------------------

def test_page_loads_and_renders_image_difference_and_colour_bar(page):
    assert page.locator("#images button").count() == 3
    assert page.locator("#method option").all_inner_texts() == METHODS
    shown = canvas_grey(page, "compare", (0.1, 0.3, 0.45, 0.7))  # left of the slider's line
    assert shown.std() > 10, "the compare canvas is blank"
    assert np.allclose(shown[..., 0], shown[..., 2]), "the radiograph is drawn in grey"
    difference = canvas_grey(page, "difference")
    assert difference.std() > 5, "the difference canvas is blank"
    assert (np.abs(difference[..., 0] - difference[..., 2]) > 30).mean() > 0.05, "the difference map has no colour"
    bar = canvas_grey(page, "colorbar", (0.05, 0.02, 0.3, 0.98))
    assert (bar[..., 2] - bar[..., 0] > 80).any() and (bar[..., 0] - bar[..., 2] > 80).any(), "colour bar lacks blue or red"
    assert "noise estimate: sigma" in page.inner_text("#noise")


def test_slider_switches_between_original_and_denoised(page):
    set_split(page, "End")
    original = canvas_grey(page, "compare")
    set_split(page, "Home")
    denoised = canvas_grey(page, "compare")
    # Noise of sigma 12 grey levels was added: the denoised pixels differ by several levels,
    # and are smoother (less spread between neighbours).
    assert np.abs(original - denoised).mean() > 3
    roughness = lambda a: np.abs(np.diff(a[..., 0], axis=1)).mean()  # noqa: E731
    assert roughness(denoised) < 0.7 * roughness(original)


def test_window_level_by_drag_and_preset_changes_pixels(page):
    before = canvas_grey(page, "compare")
    level_before = float(page.input_value("#level"))
    box = page.locator("#compare").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down(button="right")
    page.mouse.move(x - 150, y + 60, steps=5)  # narrower window, lower level: more contrast
    page.mouse.up(button="right")
    after_drag = canvas_grey(page, "compare")
    assert float(page.input_value("#level")) < level_before
    assert np.abs(after_drag - before).mean() > 5
    assert after_drag.std() > before.std(), "a narrower window shows more contrast"
    page.click("button[data-preset='Full scale']")
    assert float(page.input_value("#width")) == 255
    assert np.abs(canvas_grey(page, "compare") - after_drag).mean() > 5


def test_dicom_voi_window_from_header(page):
    page.click("#images button[data-index='1']")
    wait_shown(page, 1, 0)
    assert float(page.input_value("#level")) == DICOM_WINDOW[0]
    assert float(page.input_value("#width")) == DICOM_WINDOW[1]
    assert page.locator("button[data-preset='DICOM window 1']").count() == 1
    assert "12-bit DICOM" in page.inner_text("#image-info")
    # The window is applied to the 12-bit values on the page: a value v shows as the grey
    # 255 * (v - (center - width / 2)) / width, clipped. Read canvas pixels back and compare
    # with the file's values at the same image pixels (through the page's view transform).
    set_split(page, "End")
    view = page.evaluate("() => state.view")
    center, width = DICOM_WINDOW
    status, body = raw_get(page.url, "/api/image/1/original?level=full")
    original = np.frombuffer(body, "<f4").reshape(256, 256)
    size = page.evaluate("() => [document.getElementById('compare').width, document.getElementById('compare').height]")
    compared = 0
    for y in range(60, 200, 30):
        for x in range(60, 200, 30):
            # The canvas pixel under the centre of image pixel (x, y): never on a pixel border.
            px, py = (np.floor(((x, y) - np.array([view["x0"], view["y0"]]) + 0.5) * view["scale"]) + 0.5) / size
            grey = canvas_grey(page, "compare", (px, py, px + 1.5 / size[0], py + 1.5 / size[1]))[0, 0, 0]
            expected = np.clip(255 * (original[y, x] - (center - width / 2)) / width, 0, 255)
            assert abs(grey - expected) <= 1, (x, y, grey, expected)
            compared += 0 < expected < 255
    assert compared >= 10, "too few pixels inside the window to check it"


def test_method_switch_loads_another_result(page):
    set_split(page, "Home")
    network = canvas_grey(page, "compare")
    page.select_option("#method", label="median")
    wait_shown(page, 0, METHODS.index("median"))
    median = canvas_grey(page, "compare")
    assert np.abs(network - median).mean() > 1
    assert page.inner_text("#result-label") == "median"


def test_zoom_and_pan_are_synchronised(page):
    compare_before, difference_before = canvas_grey(page, "compare"), canvas_grey(page, "difference")
    box = page.locator("#compare").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -600)  # zoom in on the compare panel only
    compare_after, difference_after = canvas_grey(page, "compare"), canvas_grey(page, "difference")
    assert np.abs(compare_after - compare_before).mean() > 3
    assert np.abs(difference_after - difference_before).mean() > 3, "the difference panel did not follow the zoom"


def test_drag_pans_both_panels(page):
    # The denoised result over the whole compare canvas: the slider's line stays where it is
    # while the image moves, so every pixel that moves is image.
    set_split(page, "Home")
    compare_before, difference_before = canvas_png(page, "compare"), canvas_png(page, "difference")
    view_before = page.evaluate("() => state.view")
    box = page.locator("#compare").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    dx, dy = 60, 40  # CSS pixels = canvas pixels at device scale factor 1
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y + dy, steps=6)
    page.mouse.up()
    view = page.evaluate("() => state.view")
    assert view["scale"] == view_before["scale"], "a drag must pan, not zoom"
    assert view["x0"] == pytest.approx(view_before["x0"] - dx / view["scale"])
    assert view["y0"] == pytest.approx(view_before["y0"] - dy / view["scale"])
    margin = 4  # clear of the slider's line at the left edge
    for name, before in (("compare", compare_before), ("difference", difference_before)):
        after = canvas_png(page, name)
        assert after.shape == before.shape
        moved = after[dy + margin:-margin, dx + margin:-margin]
        assert np.abs(after - before).mean() > 3, f"the {name} panel did not move"
        # What was at (x, y) is now at (x + dx, y + dy): the same pixels, shifted.
        assert np.abs(moved - before[margin:-dy - margin, margin:-dx - margin]).mean() < 0.5, f"the {name} panel did not follow"
        assert moved.std() > 5, f"the {name} panel is blank where the image should be"


def open_cli_page(browser, url):
    page = browser.new_page(viewport={"width": 1280, "height": 720}, device_scale_factor=1)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    wait_shown(page, 0, 0)
    return page, errors


@pytest.mark.parametrize("label", ["bm3d", "nlm", "tiny.safetensors"])
def test_method_switch_renders_bm3d_nlm_and_a_weights_file(browser, cli_viewer, viewer_images, tiny_weights, label):
    page, errors = open_cli_page(browser, cli_viewer)
    try:
        labels = page.locator("#method option").all_inner_texts()
        # The first --method is shown at start; the weights file is added after the built-in methods.
        assert labels[0] == "gaussian" and labels[-1] == "tiny.safetensors"
        assert {"network", "bm3d", "nlm"} <= set(labels)
        set_split(page, "Home")
        gaussian = canvas_grey(page, "compare")
        page.select_option("#method", label=label)
        wait_shown(page, 0, labels.index(label))
        assert page.inner_text("#result-label") == label
        shown = canvas_grey(page, "compare")
        assert shown.std() > 10, "the compare canvas is blank"
        assert np.abs(shown - gaussian).mean() > 0.5, f"{label} shows the same pixels as gaussian"
        assert canvas_grey(page, "difference").std() > 2, "the difference canvas is blank"
        assert f"{label} (" in page.inner_text("#status")  # "<image>: <label> (<seconds> s)"
        if label.endswith(".safetensors"):
            # It is that network's result: what `xraydenoise denoise --method PATH` computes.
            from xraydenoise.denoisers import denoise_image, get_denoiser
            from xraydenoise.io import load_image

            status, body = raw_get(cli_viewer, f"/api/image/0/result?method={labels.index(label)}&level=full")
            assert status == 200
            expected = denoise_image(load_image(viewer_images[1]), get_denoiser(str(tiny_weights))).pixels
            served = np.frombuffer(body, "<f4").reshape(expected.shape)
            assert np.abs(served - expected).max() <= 1  # PyTorch's thread count may move the last unit
    finally:
        page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_large_image_shows_a_preview_first(page):
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.click("#images button[data-index='2']")
    wait_shown(page, 2, 0)
    results = [url for url in requests if "/result?" in url]
    assert len(results) == 2 and "level=preview" in results[0] and "level=full" in results[1]
    assert "preview 1/2 first" in page.inner_text("#image-info")
    assert page.inner_text("#result-label") == "network", "the full result replaced the preview"


def test_screenshots(page):
    """Screenshots for docs/viewer.md, written where XRAYDENOISE_VIEWER_SCREENSHOTS says."""
    folder = os.environ.get("XRAYDENOISE_VIEWER_SCREENSHOTS")
    shots = [("viewer-hip.png", 0, None), ("viewer-hip-gaussian.png", 0, "gaussian"), ("viewer-dicom-zoom.png", 1, "zoom")]
    for name, image, action in shots:
        if image:
            page.click(f"#images button[data-index='{image}']")
            wait_shown(page, image, page.evaluate("() => state.method"))
        if action == "gaussian":  # a filter that blurs: bone edges show up in the difference
            page.select_option("#method", label="gaussian")
            wait_shown(page, image, METHODS.index("gaussian"))
        if action == "zoom":
            box = page.locator("#compare").bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.5)
            page.mouse.wheel(0, -700)
        png = page.screenshot()
        assert PIL.Image.open(io.BytesIO(png)).size == (1280, 720)
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            # A 160-colour palette without dithering keeps each screenshot under 300 KB; the page
            # is grey and a few colours.
            shot = PIL.Image.open(io.BytesIO(png)).convert("RGB").quantize(160, dither=PIL.Image.Dither.NONE)
            shot.save(Path(folder) / name, optimize=True)


# ---- the server's URL handling ----------------------------------------------------------

def raw_get(url: str, path: str, host: str | None = None) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (no normalising of ``..`` or ``%2e``, unlike a browser)."""
    address = url.split("//", 1)[1].rstrip("/")
    name, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(name, int(port), timeout=60)
    connection.putrequest("GET", path, skip_host=host is not None)
    if host is not None:
        connection.putheader("Host", host)
    connection.endheaders()
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body


@pytest.mark.parametrize("path", [
    "/../../../../etc/passwd",
    "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/..%2f..%2f..%2fetc%2fpasswd",
    "/%2E%2E%2F%2E%2E%2Fpyproject.toml",
    "/viewer.js/../../../../etc/passwd",
    "/static/../../../pyproject.toml",
    "/api/image/0/../../../../etc/passwd",
    "/api/image/..%2F..%2Fetc%2Fpasswd/original",
    "/api/image/0%2F..%2F1/original",
    "/api/image/-1/original",
    "/api/image/3/original",
    "/api/image/99999999999/info",
    "/api/image/0/result?method=../../etc/passwd",
    "/api/image/0/result?method=-1",
    "/api/image/0/original?level=../../etc/passwd",
    "//etc/passwd",
    "/etc/passwd",
    "/hip_noisy.png",
    "/" + "%2e%2e/" * 3 + "tmp",
])
def test_urls_outside_the_page_are_refused(viewer_url, path):
    status, body = raw_get(viewer_url, path)
    assert status in (400, 404)
    assert b"root:" not in body and b"[project]" not in body and not body.startswith(b"\x89PNG")


def test_only_given_images_are_served_by_index(viewer_url, viewer_images):
    status, body = raw_get(viewer_url, "/api/image/0/original?level=full")
    assert status == 200
    expected = np.asarray(PIL.Image.open(viewer_images[0]), dtype=np.float32)
    assert np.array_equal(np.frombuffer(body, "<f4").reshape(expected.shape), expected)


def test_foreign_host_header_is_refused(viewer_url):
    """A page on another site whose name was rebound to 127.0.0.1 sends its own Host."""
    status, _ = raw_get(viewer_url, "/api/state", host="attacker.example:80")
    assert status == 403
    assert raw_get(viewer_url, "/api/state", host="localhost:1")[0] == 200


# ---- the command line -------------------------------------------------------------------

def test_view_binds_loopback_by_default(viewer_images):
    import subprocess
    import sys

    command = [sys.executable, "-m", "xraydenoise.cli", "view", str(viewer_images[0]), "--port", "0", "--no-browser"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, line + proc.stderr.read() if proc.poll() is not None else line
        url = line.split("at ", 1)[1].split()[0]
        assert raw_get(url, "/api/state")[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_view_without_images_fails_in_one_line(tmp_path):
    result = run_cli("view", str(tmp_path), "--no-browser", "--port", "0")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error: ")
    assert "no supported image" in result.stderr


def test_view_with_unknown_method_fails_in_one_line(viewer_images):
    result = run_cli("view", str(viewer_images[0]), "--method", "sharpen", "--no-browser", "--port", "0")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown method 'sharpen'; use one of ")


def test_view_with_port_in_use_fails_in_one_line(viewer_images):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("view", str(viewer_images[0]), "--no-browser", "--port", str(port))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: port {port} is in use; choose another with --port (0 picks a free one)"
