"""Digit images as a user would send them, for tests and the committed samples.

- `png_from_features`: a `load_digits` 8x8 image upscaled to a PNG, dark ink on white.
- `draw_digit`: a digit drawn with a pen, as dark-on-white PNG bytes (a "handwritten"
  digit that did not come from the training data).

    python -m models.digits.rendering [--output-dir DIR]

rewrites the sample PNGs in `models/digits/samples/` that models/README.md sends with curl.
"""

from __future__ import annotations

import argparse
import base64
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
SAMPLE_DIGITS = (3, 7)

Stroke = list[tuple[float, float]]


def _loop(cx: float, cy: float, rx: float, ry: float, start: float = 0.0, turns: float = 1.0) -> Stroke:
    """Points on an ellipse, clockwise on screen from `start` radians."""
    steps = max(8, int(48 * turns))
    return [
        (
            cx + rx * math.cos(start + 2 * math.pi * turns * i / steps),
            cy + ry * math.sin(start + 2 * math.pi * turns * i / steps),
        )
        for i in range(steps + 1)
    ]


def _figure_eight() -> Stroke:
    steps = 96
    return [
        (0.5 + 0.16 * math.sin(2 * t), 0.5 - 0.34 * math.cos(t))
        for t in (2 * math.pi * i / steps for i in range(steps + 1))
    ]


# Pen strokes in a unit box (x to the right, y down), shaped like quick handwriting.
STROKES: dict[int, list[Stroke]] = {
    0: [_loop(0.5, 0.5, 0.17, 0.34)],
    1: [[(0.40, 0.28), (0.53, 0.15), (0.53, 0.85)]],
    2: [[(0.32, 0.28), (0.42, 0.17), (0.57, 0.15), (0.67, 0.25), (0.65, 0.40), (0.33, 0.84), (0.70, 0.84)]],
    3: [
        [(0.32, 0.22), (0.45, 0.15), (0.60, 0.17), (0.67, 0.28), (0.62, 0.40), (0.47, 0.47)],
        [(0.47, 0.47), (0.62, 0.53), (0.69, 0.65), (0.64, 0.79), (0.50, 0.85), (0.33, 0.80)],
    ],
    4: [[(0.58, 0.15), (0.30, 0.60), (0.72, 0.60)], [(0.60, 0.35), (0.60, 0.86)]],
    5: [
        [(0.68, 0.16), (0.38, 0.16), (0.35, 0.45), (0.52, 0.42), (0.66, 0.52), (0.68, 0.70), (0.55, 0.84), (0.34, 0.80)]
    ],
    6: [
        [(0.64, 0.18), (0.47, 0.28), (0.37, 0.48), (0.35, 0.70), (0.46, 0.84), (0.60, 0.82), (0.66, 0.67)],
        [(0.66, 0.67), (0.58, 0.54), (0.44, 0.54), (0.36, 0.62)],
    ],
    7: [[(0.30, 0.18), (0.70, 0.18), (0.56, 0.45), (0.46, 0.85)], [(0.43, 0.50), (0.66, 0.48)]],
    8: [_figure_eight()],
    9: [_loop(0.50, 0.32, 0.16, 0.16), [(0.66, 0.32), (0.64, 0.60), (0.58, 0.86)]],
}


def draw_digit(digit: int, size: int = 64, pen: float = 0.1, mode: str = "L", image_format: str = "PNG") -> bytes:
    """`digit` drawn in dark ink on white, `size` pixels square, as PNG (or JPEG) bytes.

    Drawn at 4x and shrunk, so stroke edges are anti-aliased like a real scan or canvas.
    """
    from PIL import Image, ImageDraw

    scale = size * 4
    canvas = Image.new("L", (scale, scale), 255)
    draw = ImageDraw.Draw(canvas)
    width = max(1, round(pen * scale))
    for stroke in STROKES[digit]:
        points = [(x * scale, y * scale) for x, y in stroke]
        draw.line(points, fill=20, width=width, joint="curve")
        for x, y in (points[0], points[-1]):  # round pen tips
            draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=20)
    image = canvas.resize((size, size), Image.Resampling.LANCZOS)
    if mode != "L":
        image = image.convert(mode)
    return _encode(image, image_format)


def png_from_features(features: np.ndarray, scale: int = 8) -> bytes:
    """A `load_digits` image (64 values, 0..16) as a dark-on-white PNG, `scale` px per cell."""
    from PIL import Image

    cells = np.asarray(features, dtype=np.float64).reshape(8, 8)
    gray = np.round(255.0 - cells * (255.0 / 16.0)).astype(np.uint8)
    image = Image.fromarray(gray).resize((8 * scale, 8 * scale), Image.Resampling.NEAREST)
    return _encode(image, "PNG")


def _encode(image: object, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)  # type: ignore[attr-defined]
    return buffer.getvalue()


def as_base64(data: bytes, data_url: bool = False, media_type: str = "image/png") -> str:
    """`data` as the request's `image` string, optionally as a `data:` URL."""
    text = base64.b64encode(data).decode("ascii")
    return f"data:{media_type};base64,{text}" if data_url else text


def write_samples(directory: Path = SAMPLES_DIR) -> list[Path]:
    """Write `<digit>.png` for each of `SAMPLE_DIGITS`; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for digit in SAMPLE_DIGITS:
        path = directory / f"{digit}.png"
        path.write_bytes(draw_digit(digit))
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.digits.rendering", description="Write the sample PNGs.")
    parser.add_argument("--output-dir", type=Path, default=SAMPLES_DIR, help="where to write (default: %(default)s)")
    args = parser.parse_args(argv)
    for path in write_samples(args.output_dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
