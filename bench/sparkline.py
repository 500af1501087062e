"""Sparkline cost per digest company, against the floor of any PNG of that size.

    .venv/bin/python bench/sparkline.py [--calls 2000]

Line 1 (baseline): Pillow encoding an already drawn RGBA image of the sparkline's output size
as PNG, the least any PNG sparkline costs. Line 2: `sparkline_png` (draw at 2x supersampling,
reduce, encode a palette PNG). The ratio is what matters: both run on the same machine in the
same run. A digest batch of 250 users over ~30 distinct companies draws each company once
(deallens/notify/render.py caches), so per-call cost times distinct companies is the batch's
sparkline time.
"""

from __future__ import annotations

import argparse
import io
import time

from PIL import Image

from deallens.notify.sparkline import sparkline_png


def _series(count: int) -> list[list[float]]:
    return [[100 + ((i + k) * 7919 % 17) for i in range(30)] for k in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    calls = parser.parse_args().calls
    series = _series(calls)
    width, height, scale = 120, 32, 2
    image = Image.new("RGBA", (width * scale, height * scale), (21, 128, 61, 0))
    for x in range(0, width * scale, 3):
        image.putpixel((x, (x * 7) % (height * scale)), (21, 128, 61, 255))
    sparkline_png(series[0])  # warm-up: imports, palettes

    started = time.perf_counter()
    for _ in series:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
    baseline = (time.perf_counter() - started) * 1000 / calls

    started = time.perf_counter()
    sizes = [len(sparkline_png(closes)) for closes in series]
    ours = (time.perf_counter() - started) * 1000 / calls

    print(f"1. baseline: encode a drawn RGBA PNG {width * scale}x{height * scale}: {baseline:.3f} ms per image")
    print(f"2. sparkline_png (draw, supersample, palette PNG):   {ours:.3f} ms per image, {sum(sizes) / calls:.0f} bytes")
    print(f"ratio 2/1: {ours / baseline:.2f}x  (budget: 2 ms per sparkline)")


if __name__ == "__main__":
    main()
