// xraydenoise view: the page. No build step, no library.
//
// The server sends pixels as little-endian float32 in the image's own units (12-bit DICOM:
// 0..4095), so window/level is applied here, exactly and without a round trip. Each array is
// rendered once per window into an offscreen canvas at its own resolution; the visible
// canvases draw those offscreen canvases through one shared view transform, which is what
// keeps zoom and pan of the two panels in step.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  images: [],
  methods: [],
  image: -1,           // index of the image shown
  method: 0,           // index of the method shown
  info: null,          // /api/image/<i>/info
  original: {},        // level ("preview" | "full") -> {width, height, data, factor}
  result: null,        // {width, height, data, factor, level, method, image}
  window: { center: 0.5, width: 1 },
  diffRange: 1,
  split: 0.5,          // fraction of the compare canvas showing the original (left part)
  view: { scale: 1, x0: 0, y0: 0 },   // screen px per image px; image coords at the canvas's top left
  fitted: false,
  imageRequest: 0,     // increases on every image change: stale answers are dropped
  resultRequest: 0,    // increases on every image or method change
};

// Offscreen renderings: grey (windowed) original and result, coloured difference.
const layers = { original: null, result: null, difference: null };

function setStatus(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

async function fetchJson(url) {
  const response = await fetch(url);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

async function fetchPixels(url) {
  const response = await fetch(url);
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  const width = Number(response.headers.get("X-Width"));
  const height = Number(response.headers.get("X-Height"));
  const data = new Float32Array(await response.arrayBuffer());
  if (data.length !== width * height) throw new Error("truncated pixel data");
  return { width, height, data };
}

// ---- rendering of the offscreen layers --------------------------------------------------

function makeCanvas(width, height) {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  return canvas;
}

function renderGrey(array) {
  const canvas = makeCanvas(array.width, array.height);
  const ctx = canvas.getContext("2d");
  const out = ctx.createImageData(array.width, array.height);
  const low = state.window.center - state.window.width / 2;
  const gain = 255 / Math.max(state.window.width, 1e-12);
  const src = array.data, dst = out.data;
  for (let i = 0, j = 0; i < src.length; i++, j += 4) {
    const g = (src[i] - low) * gain;  // Uint8ClampedArray clamps and rounds
    dst[j] = dst[j + 1] = dst[j + 2] = g;
    dst[j + 3] = 255;
  }
  ctx.putImageData(out, 0, 0);
  canvas.factor = array.factor;
  return canvas;
}

// Diverging colour map (blue - white - red, after ColorBrewer RdBu): negative differences
// (denoised brighter) blue, positive (denoised darker) red, zero white.
const STOPS = [
  [-1.0, [33, 102, 172]], [-0.5, [103, 169, 207]], [0.0, [247, 247, 247]],
  [0.5, [239, 138, 98]], [1.0, [178, 24, 43]],
];
const LUT_SIZE = 1025;
const LUT = (() => {
  const lut = new Uint8ClampedArray(LUT_SIZE * 3);
  for (let k = 0; k < LUT_SIZE; k++) {
    const t = (k / (LUT_SIZE - 1)) * 2 - 1;
    let s = 0;
    while (s < STOPS.length - 2 && t > STOPS[s + 1][0]) s++;
    const [t0, c0] = STOPS[s], [t1, c1] = STOPS[s + 1];
    const f = (t - t0) / (t1 - t0);
    for (let c = 0; c < 3; c++) lut[k * 3 + c] = c0[c] + f * (c1[c] - c0[c]);
  }
  return lut;
})();

function colourIndex(value, range) {
  const t = Math.max(-1, Math.min(1, value / range));
  return Math.round((t + 1) / 2 * (LUT_SIZE - 1)) * 3;
}

function renderDifference() {
  const result = state.result;
  const original = result && state.original[result.level];
  if (!result || !original || original.data.length !== result.data.length) return null;
  const canvas = makeCanvas(result.width, result.height);
  const ctx = canvas.getContext("2d");
  const out = ctx.createImageData(result.width, result.height);
  const a = original.data, b = result.data, dst = out.data, range = Math.max(state.diffRange, 1e-12);
  for (let i = 0, j = 0; i < a.length; i++, j += 4) {
    const k = colourIndex(a[i] - b[i], range);
    dst[j] = LUT[k]; dst[j + 1] = LUT[k + 1]; dst[j + 2] = LUT[k + 2]; dst[j + 3] = 255;
  }
  ctx.putImageData(out, 0, 0);
  canvas.factor = result.factor;
  return canvas;
}

function drawColourBar() {
  const canvas = $("colorbar");
  const ctx = canvas.getContext("2d");
  const barX = 4, barW = 16, top = 10, bottom = canvas.height - 10, range = state.diffRange;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  for (let y = top; y < bottom; y++) {
    const value = range * (1 - 2 * (y - top) / (bottom - top - 1));  // +range at the top
    const k = colourIndex(value, range);
    ctx.fillStyle = `rgb(${LUT[k]},${LUT[k + 1]},${LUT[k + 2]})`;
    ctx.fillRect(barX, y, barW, 1);
  }
  ctx.strokeStyle = "#666";
  ctx.strokeRect(barX - 0.5, top - 0.5, barW + 1, bottom - top + 1);
  ctx.fillStyle = "#ccc";
  ctx.font = "11px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  for (const f of [1, 0.5, 0, -0.5, -1]) {
    const y = top + (1 - f) / 2 * (bottom - top - 1);
    ctx.fillRect(barX + barW, Math.round(y), 4, 1);
    ctx.fillText(formatValue(f * range), barX + barW + 7, y);
  }
}

function formatValue(v) {
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 100) return v.toFixed(0);
  if (a >= 1) return v.toFixed(1);
  return v.toPrecision(2);
}

function rebuildGrey() {
  const original = state.original.full || state.original.preview;
  layers.original = original ? renderGrey(original) : null;
  layers.result = state.result ? renderGrey(state.result) : null;
}

function rebuildDifference() {
  layers.difference = renderDifference();
  drawColourBar();
}

// ---- drawing through the shared view ----------------------------------------------------

function sizeCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
  const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
}

function drawLayer(ctx, layer) {
  const { scale, x0, y0 } = state.view;
  const f = layer.factor || 1;
  ctx.setTransform(scale * f, 0, 0, scale * f, -x0 * scale, -y0 * scale);
  // Nearest neighbour when magnified, so single pixels (and the noise in them) stay visible.
  ctx.imageSmoothingEnabled = scale * f < 1;
  ctx.drawImage(layer, 0, 0);
  ctx.setTransform(1, 0, 0, 1, 0, 0);
}

function draw() {
  const compare = $("compare"), difference = $("difference");
  sizeCanvas(compare);
  sizeCanvas(difference);
  let ctx = compare.getContext("2d");
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, compare.width, compare.height);
  const splitX = Math.round(state.split * compare.width);
  if (layers.original) {
    ctx.save();
    ctx.beginPath();
    ctx.rect(0, 0, splitX, compare.height);
    ctx.clip();
    drawLayer(ctx, layers.original);
    ctx.restore();
  }
  ctx.save();
  ctx.beginPath();
  ctx.rect(splitX, 0, compare.width - splitX, compare.height);
  ctx.clip();
  if (layers.result) {
    drawLayer(ctx, layers.result);
  } else if (state.image >= 0) {
    ctx.fillStyle = "#888";
    ctx.font = `${14 * (window.devicePixelRatio || 1)}px system-ui, sans-serif`;
    ctx.fillText("computing…", splitX + 12, 24 * (window.devicePixelRatio || 1));
  }
  ctx.restore();
  ctx.fillStyle = "#ffd400";
  ctx.fillRect(splitX - 1, 0, 2, compare.height);

  ctx = difference.getContext("2d");
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, difference.width, difference.height);
  if (layers.difference) drawLayer(ctx, layers.difference);
}

function fit() {
  const info = state.info;
  if (!info) return;
  const canvas = $("compare");
  sizeCanvas(canvas);
  const scale = Math.min(canvas.width / info.width, canvas.height / info.height);
  state.view = {
    scale,
    x0: (info.width - canvas.width / scale) / 2,
    y0: (info.height - canvas.height / scale) / 2,
  };
  draw();
}

function zoomAt(screenX, screenY, factor) {
  const v = state.view;
  const ix = v.x0 + screenX / v.scale, iy = v.y0 + screenY / v.scale;
  const scale = Math.min(64, Math.max(0.01, v.scale * factor));
  state.view = { scale, x0: ix - screenX / scale, y0: iy - screenY / scale };
  draw();
}

function oneToOne() {
  const canvas = $("compare");
  zoomAt(canvas.width / 2, canvas.height / 2, 1 / state.view.scale);
}

// ---- window / level ---------------------------------------------------------------------

// rebuild: "now", "frame" (at the next animation frame: a drag over a large image re-renders
// once per frame, not once per mouse event) or "none".
let framePending = false;

function rebuildGreyNow() {
  framePending = false;
  rebuildGrey();
  draw();
}

function setWindow(center, width, rebuild = "now") {
  state.window = { center, width: Math.max(width, 1e-6) };
  $("level").value = +center.toPrecision(6);
  $("width").value = +state.window.width.toPrecision(6);
  if (rebuild === "now") {
    rebuildGreyNow();
  } else if (rebuild === "frame" && !framePending) {
    framePending = true;
    requestAnimationFrame(() => { if (framePending) rebuildGreyNow(); });
  }
}

function presets() {
  const info = state.info;
  const list = info.windows.map((w) => ({ name: w.name, center: w.center, width: w.width }));
  const auto = info.auto_window;
  list.push({ name: "Auto (0.5-99.5 %)", center: (auto.low + auto.high) / 2, width: auto.high - auto.low });
  list.push({ name: "Min-max", center: (info.min + info.max) / 2, width: info.max - info.min });
  list.push({ name: "Full scale", center: info.max_value / 2, width: info.max_value });
  return list;
}

function showPresets() {
  const box = $("presets");
  box.replaceChildren();
  for (const p of presets()) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = p.name;
    button.dataset.preset = p.name;
    button.addEventListener("click", () => setWindow(p.center, p.width));
    box.append(button);
  }
}

// ---- loading ----------------------------------------------------------------------------

function showImageList() {
  const list = $("images");
  list.replaceChildren();
  state.images.forEach((image) => {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = image.name;
    button.title = image.name;
    button.dataset.index = image.index;
    button.addEventListener("click", () => loadImage(image.index));
    item.append(button);
    list.append(item);
  });
}

function markCurrent() {
  for (const button of $("images").querySelectorAll("button")) {
    button.setAttribute("aria-current", String(Number(button.dataset.index) === state.image));
  }
}

function showInfo() {
  const info = state.info;
  const depth = info.format === "dicom" || info.bit_depth !== 32 ? `${info.bit_depth}-bit ` : "float ";
  $("image-info").textContent = `${info.width} x ${info.height} px, ${depth}${info.format.toUpperCase()}` +
    (info.preview_factor > 1 ? `; preview 1/${info.preview_factor} first` : "");
  const levels = info.bit_depth === 32 ? "" : ` grey levels of ${info.max_value}`;
  $("noise").textContent = `noise estimate: sigma ${formatValue(info.noise_sigma)}${levels}` +
    ` (${info.noise_sigma_8bit.toFixed(1)}/255)`;
}

async function loadImage(index) {
  const request = ++state.imageRequest;
  state.resultRequest++;
  state.image = index;
  state.original = {};
  state.result = null;
  layers.original = layers.result = layers.difference = null;
  document.body.dataset.state = "loading";
  markCurrent();
  setStatus(`loading ${state.images[index].name}…`);
  draw();
  try {
    const info = await fetchJson(`/api/image/${index}/info`);
    if (request !== state.imageRequest) return;
    state.info = info;
    showInfo();
    showPresets();
    const first = info.windows.length ? info.windows[0] : presets().find((p) => p.name.startsWith("Auto"));
    setWindow(first.center, first.width, "none");
    // Difference scale: three noise sigmas hold nearly all removed noise, so anatomy that was
    // removed stands out as saturated structure.
    state.diffRange = +(Math.max(3 * info.noise_sigma, (info.max - info.min) * 1e-3, 1e-6)).toPrecision(3);
    $("diff-range").value = state.diffRange;
    const levels = info.preview_factor > 1 ? ["preview", "full"] : ["full"];
    for (const level of levels) {
      const array = await fetchPixels(`/api/image/${index}/original?level=${level}`);
      if (request !== state.imageRequest) return;
      array.factor = level === "preview" ? info.preview_factor : 1;
      state.original[level] = array;
      rebuildGrey();
      if (level === levels[0]) fit();
      else draw();
      if (level === "preview") loadResult();  // the preview result while the full original loads
    }
    if (levels.length === 1) await loadResult();
  } catch (error) {
    if (request === state.imageRequest) {
      setStatus(`${state.images[index].name}: ${error.message}`, true);
      document.body.dataset.state = "error";
    }
  }
}

async function loadResult() {
  const request = ++state.resultRequest;
  const index = state.image, method = state.method, info = state.info;
  const name = state.methods[method].name;
  state.result = null;
  layers.result = layers.difference = null;
  document.body.dataset.state = "computing";
  draw();
  const levels = info.preview_factor > 1 ? ["preview", "full"] : ["full"];
  try {
    for (const level of levels) {
      setStatus(level === "preview"
        ? `${name}: computing a 1/${info.preview_factor} preview…`
        : `${name}: computing at full resolution…`);
      const started = performance.now();
      const array = await fetchPixels(`/api/image/${index}/result?method=${method}&level=${level}`);
      if (request !== state.resultRequest) return;
      array.factor = level === "preview" ? info.preview_factor : 1;
      Object.assign(array, { level, method, image: index });
      if (level === "full" && !state.original.full) {
        state.original.full = await fetchPixels(`/api/image/${index}/original?level=full`);
        state.original.full.factor = 1;
        if (request !== state.resultRequest) return;
      }
      state.result = array;
      rebuildGrey();
      rebuildDifference();
      draw();
      $("result-label").textContent = level === "preview"
        ? `${name} (preview 1/${info.preview_factor})` : name;
      setStatus(`${state.images[index].name}: ${name}` +
        (level === "preview" ? ", preview; full resolution on the way…" : ` (${((performance.now() - started) / 1000).toFixed(1)} s)`));
    }
    document.body.dataset.state = "ready";
    document.body.dataset.shown = `${index}:${method}`;
  } catch (error) {
    if (request === state.resultRequest) {
      setStatus(`${name}: ${error.message}`, true);
      document.body.dataset.state = "error";
    }
  }
}

// ---- interaction ------------------------------------------------------------------------

function pointerInteraction(canvas) {
  let drag = null;
  canvas.addEventListener("contextmenu", (event) => event.preventDefault());
  canvas.addEventListener("pointerdown", (event) => {
    const windowing = event.button === 2 || event.shiftKey;
    drag = { x: event.clientX, y: event.clientY, windowing, view: { ...state.view }, window: { ...state.window } };
    canvas.setPointerCapture(event.pointerId);
    event.preventDefault();
  });
  canvas.addEventListener("pointermove", (event) => {
    readout(canvas, event);
    if (!drag) return;
    const ratio = window.devicePixelRatio || 1;
    const dx = (event.clientX - drag.x) * ratio, dy = (event.clientY - drag.y) * ratio;
    if (drag.windowing && state.info) {
      // One screen width of drag sweeps the whole value range.
      const span = Math.max(state.info.max - state.info.min, 1e-6);
      const perPixel = span / Math.max(canvas.width, 1);
      setWindow(drag.window.center - dy * perPixel, Math.max(drag.window.width + dx * perPixel, perPixel), "frame");
    } else if (!drag.windowing) {
      state.view = { ...drag.view, x0: drag.view.x0 - dx / drag.view.scale, y0: drag.view.y0 - dy / drag.view.scale };
      draw();
    }
  });
  const end = () => {
    drag = null;
    if (framePending) rebuildGreyNow();  // the last window of a drag is always shown
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const rect = canvas.getBoundingClientRect(), ratio = window.devicePixelRatio || 1;
    zoomAt((event.clientX - rect.left) * ratio, (event.clientY - rect.top) * ratio, Math.pow(1.2, -event.deltaY / 100));
  }, { passive: false });
}

function valueAt(array, x, y) {
  if (!array) return null;
  const f = array.factor || 1;
  const px = Math.floor(x / f), py = Math.floor(y / f);
  if (px < 0 || py < 0 || px >= array.width || py >= array.height) return null;
  return array.data[py * array.width + px];
}

function readout(canvas, event) {
  const rect = canvas.getBoundingClientRect(), ratio = window.devicePixelRatio || 1, v = state.view;
  const x = Math.floor(v.x0 + (event.clientX - rect.left) * ratio / v.scale);
  const y = Math.floor(v.y0 + (event.clientY - rect.top) * ratio / v.scale);
  const result = state.result;
  const original = valueAt(result ? state.original[result.level] : state.original.full || state.original.preview, x, y);
  if (original === null) { $("readout").textContent = ""; return; }
  const denoised = valueAt(result, x, y);
  $("readout").textContent = `x ${x}, y ${y}: original ${formatValue(original)}` +
    (denoised === null ? "" : `, denoised ${formatValue(denoised)}, difference ${formatValue(original - denoised)}`);
}

function bindControls() {
  pointerInteraction($("compare"));
  pointerInteraction($("difference"));
  $("split").addEventListener("input", (event) => {
    state.split = Number(event.target.value) / 1000;
    draw();
  });
  $("method").addEventListener("change", (event) => {
    state.method = Number(event.target.value);
    if (state.info) loadResult();
  });
  const windowInput = () => {
    const center = Number($("level").value), width = Number($("width").value);
    if (Number.isFinite(center) && Number.isFinite(width) && width > 0) setWindow(center, width);
  };
  $("level").addEventListener("change", windowInput);
  $("width").addEventListener("change", windowInput);
  $("diff-range").addEventListener("change", (event) => {
    const range = Number(event.target.value);
    if (Number.isFinite(range) && range > 0) {
      state.diffRange = range;
      rebuildDifference();
      draw();
    }
  });
  $("fit").addEventListener("click", fit);
  $("one").addEventListener("click", oneToOne);
  new ResizeObserver(() => draw()).observe($("panes"));
  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, select")) return;
    const step = { ArrowDown: 1, ArrowUp: -1 }[event.key];
    if (step && state.images.length) {
      event.preventDefault();
      loadImage((state.image + step + state.images.length) % state.images.length);
    }
  });
}

async function start() {
  bindControls();
  drawColourBar();
  try {
    const body = await fetchJson("/api/state");
    state.images = body.images;
    state.methods = body.methods;
    for (const method of state.methods) {
      const option = document.createElement("option");
      option.value = method.index;
      option.textContent = method.name;
      $("method").append(option);
    }
    showImageList();
    if (state.images.length) loadImage(0);
  } catch (error) {
    setStatus(`cannot reach the viewer's server: ${error.message}`, true);
  }
}

start();
