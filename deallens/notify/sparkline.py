"""Sparkline PNGs for the digest: a company's last closes as a small line chart.

Drawn once per company per batch (deallens/notify/render.py caches them), at `scale` times the
size the HTML shows, so that it stays crisp on phones. The image is a palette PNG: every palette
entry is the line's colour, the entry's index is its alpha (tRNS chunk), so the antialiased
coverage mask *is* the image data. One byte per pixel, transparent background, fast to encode,
and the same input always gives the same bytes (no timestamp or text chunk is written).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from PIL import Image, ImageChops, ImageDraw

UP = (21, 128, 61)  # green-700: readable on white, and still distinguishable from red when printed grey
DOWN = (185, 28, 28)  # red-700

# Drawn at this many times the output size, then box-reduced: cheap antialiasing.
_SUPERSAMPLE = 2
# CSS pixels.
_LINE_WIDTH = 1.5
_DOT_RADIUS = 2.0
# Alpha (0..255) of the area under the line.
_AREA_ALPHA = 28

_ALPHA_TRNS = bytes(range(256))


def _palette(colour: tuple[int, int, int]) -> list[int]:
    return list(colour) * 256


_PALETTES = {UP: _palette(UP), DOWN: _palette(DOWN)}


def _png(mask: Image.Image, colour: tuple[int, int, int]) -> bytes:
    """The coverage mask (mode L) as a palette PNG of one colour with alpha = coverage."""
    image = Image.frombytes("P", mask.size, mask.tobytes())  # index == coverage
    image.putpalette(_PALETTES.get(colour) or _palette(colour))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=_ALPHA_TRNS, compress_level=6)
    return buffer.getvalue()


def sparkline_png(closes: Sequence[float], *, width: int = 120, height: int = 32, scale: int = 2) -> bytes:
    """A PNG line chart of `closes` (oldest first), `width*scale` x `height*scale` pixels.

    Green when the last value is at or above the first, red otherwise. No values: a valid,
    fully transparent PNG of the same size. One value or a constant series: a flat line
    across the middle. Non-finite values (NaN, inf) are ignored.
    """
    if width < 1 or height < 1 or scale < 1:
        raise ValueError(f"sparkline size must be positive, got {width}x{height} at scale {scale}")
    out_w, out_h = width * scale, height * scale
    values = [v for v in (float(c) for c in closes) if math.isfinite(v)]
    if not values:
        return _png(Image.new("L", (out_w, out_h), 0), UP)

    colour = UP if values[-1] >= values[0] else DOWN
    ss = scale * _SUPERSAMPLE  # supersampled pixels per CSS pixel
    big_w, big_h = out_w * _SUPERSAMPLE, out_h * _SUPERSAMPLE
    line_w = max(1, round(_LINE_WIDTH * ss))
    dot_r = _DOT_RADIUS * ss
    margin = max(line_w / 2, dot_r) + ss * 0.5
    left, right = margin, big_w - 1 - margin
    top, bottom = margin, big_h - 1 - margin

    lo, hi = min(values), max(values)
    n = len(values)
    if n == 1 or hi == lo:
        mid = (top + bottom) / 2
        points = [(left, mid), (right, mid)]
    else:
        x_step = (right - left) / (n - 1)
        y_span = (bottom - top) / (hi - lo)
        points = [(left + i * x_step, bottom - (v - lo) * y_span) for i, v in enumerate(values)]

    line = Image.new("L", (big_w, big_h), 0)
    draw = ImageDraw.Draw(line)
    draw.line(points, fill=255, width=line_w, joint="curve")
    x_end, y_end = points[-1]
    draw.ellipse((x_end - dot_r, y_end - dot_r, x_end + dot_r, y_end + dot_r), fill=255)

    area = Image.new("L", (big_w, big_h), 0)
    ImageDraw.Draw(area).polygon([*points, (right, big_h), (left, big_h)], fill=_AREA_ALPHA)

    mask = ImageChops.lighter(line, area).reduce(_SUPERSAMPLE)
    return _png(mask, colour)
