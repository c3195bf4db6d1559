"""Burned-in annotations and metal painted onto training patches.

Radiographs carry what no anatomy looks like: burned-in text, side markers and logos, and
metal (screws, plates, wires) whose edges are sharper and whose values are flatter than any
bone's. They cover a few percent of a radiograph, so random training patches rarely hold
them, and a network trained on patches learns to soften them. At low noise that is where it
lost to BM3D, which finds the repeated strokes of text anywhere in the image: the test images
on which the shipped network trailed BM3D at sigma 10 were those with text, a logo or an
implant. Painting such shapes onto a share of the patches (``data.overlay_probability``)
teaches the network to keep them.

Shapes are drawn with Pillow in a mask (text antialiased, shapes sometimes drawn at twice the
size and reduced, as a downscaled image shows them) and blended in at one value each: bright
like metal or a burned-in label, dark like a masked border, or any grey.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: What burned-in text is made of: capitals, digits and the punctuation of dates and labels.
ALPHABET = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ./:-")


@lru_cache(maxsize=64)
def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _draw_text(draw, rng: np.random.Generator, width: int, height: int, scale: int) -> None:
    size = int(rng.integers(7, 40)) * scale
    text = "".join(rng.choice(ALPHABET, size=int(rng.integers(1, 12))))
    x, y = int(rng.integers(-size, width)), int(rng.integers(-size, height))
    draw.text((x, y), text, fill=255, font=_font(size))


def _draw_shape(draw, rng: np.random.Generator, width: int, height: int, scale: int) -> None:
    x0, y0 = int(rng.integers(-width // 4, width)), int(rng.integers(-height // 4, height))
    w, h = (int(v) for v in rng.integers(2 * scale, max(3 * scale, width // 2), size=2))
    kind = rng.integers(4)
    if kind == 0:  # a plate or a label box
        draw.rectangle((x0, y0, x0 + w, y0 + h), fill=255 if rng.random() < 0.6 else None, outline=255,
                       width=int(rng.integers(1, 4)) * scale)
    elif kind == 1:  # a clip, a marker dot, a ring
        draw.ellipse((x0, y0, x0 + w, y0 + h), fill=255 if rng.random() < 0.6 else None, outline=255,
                     width=int(rng.integers(1, 4)) * scale)
    elif kind == 2:  # a wire or a ruler's line
        x1, y1 = int(rng.integers(0, width)), int(rng.integers(0, height))
        draw.line((x0, y0, x1, y1), fill=255, width=int(rng.integers(1, 7)) * scale)
    else:  # a screw: a long thin bar with a thread of teeth along one side
        length, thick = max(w, h), int(rng.integers(3, 12)) * scale
        angle = rng.uniform(0, np.pi)
        along, across = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
        start = np.array([x0, y0], dtype=float)
        corners = [start, start + length * along, start + length * along + thick * across, start + thick * across]
        draw.polygon([tuple(c) for c in corners], fill=255)
        pitch = int(rng.integers(3, 8)) * scale
        for t in range(0, length, pitch):
            base = start + t * along
            tooth = [base, base + pitch / 2 * along - thick / 3 * across, base + pitch * along]
            draw.polygon([tuple(c) for c in tooth], fill=255)


def paint_overlays(image: np.ndarray, rng: np.random.Generator, *, max_shapes: int = 3) -> np.ndarray:
    """``image`` (2-D, float in [0, 1]) with one to ``max_shapes`` text strings or shapes painted on."""
    from PIL import Image, ImageDraw

    height, width = image.shape
    out = np.asarray(image, dtype=np.float32).copy()
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        scale = 2 if rng.random() < 0.5 else 1  # drawn large and reduced: edges as a downscaled image has them
        mask_image = Image.new("L", (width * scale, height * scale), 0)
        draw = ImageDraw.Draw(mask_image)
        (_draw_text if rng.random() < 0.5 else _draw_shape)(draw, rng, width * scale, height * scale, scale)
        if scale > 1:
            mask_image = mask_image.reduce(scale)
        mask = np.asarray(mask_image, dtype=np.float32) / 255.0
        kind = rng.random()
        value = rng.uniform(0.85, 1.0) if kind < 0.55 else rng.uniform(0.0, 0.1) if kind < 0.75 else rng.uniform(0.0, 1.0)
        opacity = 1.0 if rng.random() < 0.7 else rng.uniform(0.3, 1.0)  # metal over bone need not hide it
        alpha = opacity * mask
        out = out * (1.0 - alpha) + np.float32(value) * alpha
    return np.clip(out, 0.0, 1.0).astype(np.float32)
