"""The Digits handler: accuracy, the 8x8 preprocessing, and hostile images."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from handlers import digits
from models.digits import image, rendering
from models.digits.examples import SEVEN_DATA_URL, THREE_BASE64
from models.digits.train import split
from serving.kit import InvalidInput

ACCURACY_FLOOR = 0.9
SAMPLES = Path(digits.__file__).resolve().parents[1] / "models" / "digits" / "samples"


def _encode(picture: Image.Image, image_format: str = "PNG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _drawn(digit: int, size: int = 64) -> Image.Image:
    return Image.open(io.BytesIO(rendering.draw_digit(digit, size=size)))


def _prepared(model: Any, payload: dict[str, Any]) -> Any:
    """What the server hands predict: the handler's `admit`, then `prepare`."""
    return digits.prepare(model, digits.admit(model, payload))


def _predict(model: Any, text: str) -> dict[str, Any]:
    return digits.predict(model, _prepared(model, {"image": text}))


# --- accuracy ------------------------------------------------------------------------


def test_held_out_accuracy_on_the_8x8_features(digits_model: Any) -> None:
    _, _, held_out = split()
    results = digits_model.predict_features(held_out.features)
    accuracy = np.mean([r["digit"] for r in results] == held_out.labels)
    assert accuracy >= ACCURACY_FLOOR


def test_held_out_accuracy_through_the_handler_as_pngs(digits_model: Any) -> None:
    # The full path: each held-out image rendered to a dark-on-white PNG, sent as base64.
    _, _, held_out = split()
    payloads = [{"image": _b64(rendering.png_from_features(f))} for f in held_out.features]
    results = digits.predict_batch(digits_model, [_prepared(digits_model, p) for p in payloads])
    accuracy = np.mean([r["digit"] for r in results] == held_out.labels)
    assert accuracy >= ACCURACY_FLOOR


@pytest.mark.parametrize("digit", [3, 7])
def test_committed_samples_read_as_their_digit(digits_model: Any, digit: int) -> None:
    data = (SAMPLES / f"{digit}.png").read_bytes()
    assert _predict(digits_model, _b64(data))["digit"] == digit


@pytest.mark.parametrize(("text", "digit"), [(THREE_BASE64, 3), (SEVEN_DATA_URL, 7)], ids=["three", "seven"])
def test_schema_examples_read_as_their_digit(digits_model: Any, text: str, digit: int) -> None:
    assert _predict(digits_model, text)["digit"] == digit


@pytest.mark.parametrize("digit", range(10))
@pytest.mark.parametrize("size", [28, 64, 280])
def test_drawn_digits(digits_model: Any, digit: int, size: int) -> None:
    assert _predict(digits_model, _b64(rendering.draw_digit(digit, size=size)))["digit"] == digit


# --- preprocessing -------------------------------------------------------------------


def _centred_full_height(cells: np.ndarray) -> bool:
    ink = cells.reshape(8, 8) >= 16 * image.INK_THRESHOLD
    rows, columns = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    return bool(rows[0] == 0 and rows[-1] == 7 and columns[0] == 7 - columns[-1] and cells.max() == 16)


def test_load_digits_image_rendered_to_png_round_trips() -> None:
    # An image that already fills the height and is centred must come back as it was,
    # within one count of 16: rendering and shrinking only round intensities.
    _, _, held_out = split()
    centred = [f for f in held_out.features if _centred_full_height(f)]
    assert len(centred) > 100
    for cells in centred:
        recovered = image.features(_b64(rendering.png_from_features(cells, scale=8)))
        np.testing.assert_allclose(recovered, cells, atol=1.0)


def test_features_are_in_load_digits_range() -> None:
    features = image.features(_b64(rendering.draw_digit(5)))
    assert features.shape == (64,)
    assert features.min() >= 0
    assert features.max() == pytest.approx(16)


def _transparent(digit: int, ink: tuple[int, int, int]) -> Image.Image:
    gray = _drawn(digit)
    picture = Image.new("RGBA", gray.size, (*ink, 0))
    picture.putalpha(Image.eval(gray, lambda v: 255 - v))
    return picture


VARIANTS: dict[str, Callable[[int], str]] = {
    "png-gray": lambda d: _b64(_encode(_drawn(d))),
    "png-rgb": lambda d: _b64(_encode(_drawn(d).convert("RGB"))),
    "png-palette": lambda d: _b64(_encode(_drawn(d).convert("P"))),
    "png-1bit": lambda d: _b64(_encode(_drawn(d).point(lambda v: 255 if v > 127 else 0).convert("1"))),
    "png-16bit": lambda d: _b64(_encode(Image.fromarray(np.asarray(_drawn(d), dtype=np.uint16) * 257))),
    "png-transparent-canvas": lambda d: _b64(_encode(_transparent(d, (0, 0, 0)))),
    "png-white-ink-on-transparent": lambda d: _b64(_encode(_transparent(d, (255, 255, 255)))),
    "png-white-on-black": lambda d: _b64(_encode(Image.eval(_drawn(d), lambda v: 255 - v))),
    "png-off-centre-in-a-big-frame": lambda d: _b64(_encode(_off_centre(d))),
    "jpeg": lambda d: _b64(_encode(_drawn(d).convert("RGB"), "JPEG", quality=75)),
    "jpeg-gray": lambda d: _b64(_encode(_drawn(d), "JPEG", quality=90)),
    "data-url-png": lambda d: "data:image/png;base64," + _b64(_encode(_drawn(d))),
    "data-url-jpeg": lambda d: "data:image/jpeg;base64," + _b64(_encode(_drawn(d), "JPEG")),
    "base64-with-line-breaks": lambda d: base64.encodebytes(_encode(_drawn(d))).decode(),
    "base64-url-safe-unpadded": lambda d: base64.urlsafe_b64encode(_encode(_drawn(d))).decode().rstrip("="),
}


def _off_centre(digit: int) -> Image.Image:
    frame = Image.new("L", (300, 200), 250)
    frame.paste(_drawn(digit, size=48), (220, 20))
    return frame


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("digit", [3, 7])
def test_image_variants_read_as_the_digit(digits_model: Any, variant: str, digit: int) -> None:
    assert _predict(digits_model, VARIANTS[variant](digit))["digit"] == digit


def test_jpeg_orientation_tag_is_applied(digits_model: Any) -> None:
    # Stored rotated by 90 degrees with EXIF orientation 6 ("rotate 90 CW to view").
    stored = _drawn(7).convert("RGB").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    assert _predict(digits_model, _b64(_encode(stored, "JPEG", exif=exif)))["digit"] == 7


# --- hostile and broken input --------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _crafted_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares `width` x `height` grayscale pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        image.PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


def _jpeg_declaring(width: int, height: int) -> bytes:
    data = bytearray(_encode(_drawn(7), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _jpeg_with_a_second_huge_frame_header() -> bytes:
    data = _encode(_drawn(7), "JPEG")
    sof = data.index(b"\xff\xc0")
    length = int.from_bytes(data[sof + 2 : sof + 4], "big")
    segment = bytearray(data[sof : sof + 2 + length])
    segment[5:9] = struct.pack(">HH", 30_000, 30_000)
    end = sof + 2 + length
    return data[:end] + bytes(segment) + data[end:]


def _animated(frames: int) -> bytes:
    pictures = [_drawn(d) for d in range(frames)]
    return _encode(pictures[0], "PNG", save_all=True, append_images=pictures[1:])


def _corrupt_png() -> bytes:
    data = bytearray(_encode(_drawn(7)))
    data[60:90] = bytes(30)  # inside the compressed pixel data
    return bytes(data)


BAD_INPUTS: dict[str, tuple[Callable[[], str], str]] = {
    "not-base64": (lambda: "this is not base64!", "not valid base64"),
    "empty": (lambda: "", "empty"),
    "only-whitespace": (lambda: " \n ", "empty"),
    "empty-data-url": (lambda: "data:image/png;base64,", "empty"),
    "text-bytes": (lambda: _b64(b"hello, I am a text file"), "not a PNG or JPEG"),
    "gif": (lambda: _b64(_encode(_drawn(7), "GIF")), "GIF images are not accepted"),
    "bmp": (lambda: _b64(_encode(_drawn(7), "BMP")), "BMP images are not accepted"),
    "tiff": (lambda: _b64(_encode(_drawn(7), "TIFF")), "TIFF images are not accepted"),
    "gif-data-url": (lambda: "data:image/gif;base64," + _b64(_encode(_drawn(7), "GIF")), "unsupported image type"),
    "data-url-not-base64": (lambda: "data:image/png,%89PNG", "must be base64"),
    "data-url-without-comma": (lambda: "data:image/png;base64", "no ','"),
    "truncated-png": (lambda: _b64(_encode(_drawn(7))[:200]), "truncated or corrupt"),
    "png-signature-only": (lambda: _b64(image.PNG_SIGNATURE), "header is missing or corrupt"),
    "corrupt-png-data": (lambda: _b64(_corrupt_png()), "truncated or corrupt"),
    "truncated-jpeg": (lambda: _b64(_encode(_drawn(7), "JPEG")[:300]), "truncated or corrupt"),
    "jpeg-without-frame-header": (lambda: _b64(b"\xff\xd8\xff\xda\x00\x08" + bytes(20)), "no frame header"),
    "png-declaring-100000x100000": (lambda: _b64(_crafted_png(100_000, 100_000)), "100000x100000 pixels"),
    "png-declaring-zero-width": (lambda: _b64(_crafted_png(0, 10)), "zero width or height"),
    "jpeg-declaring-60000x60000": (lambda: _b64(_jpeg_declaring(60_000, 60_000)), "60000x60000 pixels"),
    "jpeg-with-a-second-huge-frame-header": (
        lambda: _b64(_jpeg_with_a_second_huge_frame_header()),
        "30000x30000 pixels",
    ),
    "animated-png-3-frames": (lambda: _b64(_animated(3)), "multi-frame"),
    "huge-valid-png-5000x5000": (
        lambda: _b64(_encode(Image.new("1", (5000, 5000), 1))),
        "5000x5000 pixels: images may be at most 4096x4096",
    ),
    "too-wide-valid-png-4097x8": (lambda: _b64(_encode(Image.new("L", (4097, 8), 255))), "4097x8 pixels"),
    "over-2-MiB": (lambda: "A" * 2_900_000, "too large"),
    "over-base64-length": (lambda: "A" * (image.MAX_BASE64_CHARS + 1), "too large"),
    "blank-white": (lambda: _b64(_encode(Image.new("L", (64, 64), 255))), "no digit found"),
    "blank-transparent": (lambda: _b64(_encode(Image.new("RGBA", (64, 64), (0, 0, 0, 0)))), "no digit found"),
    "low-contrast": (lambda: _b64(_encode(Image.eval(_drawn(7), lambda v: 230 + v // 12))), "no digit found"),
}

# Words that would mean a message leaks internals rather than speaking to the caller.
LEAKS = ("Traceback", "PIL", "site-packages", "/work", "Errno", "zlib", "struct")


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_image_is_invalid_input_with_a_clear_message(digits_model: Any, case: str) -> None:
    make, expected = BAD_INPUTS[case]
    with pytest.raises(InvalidInput) as caught:
        _predict(digits_model, make())
    message = str(caught.value)
    assert expected in message
    assert not [word for word in LEAKS if word in message]
    assert len(message) < 200


def test_invalid_input_is_a_value_error() -> None:
    assert issubclass(InvalidInput, ValueError)


def test_the_header_is_checked_before_pillow_sees_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("Image.open must not be reached")

    monkeypatch.setattr(Image, "open", refuse)
    with pytest.raises(InvalidInput, match="100000x100000"):
        image.open_image(_crafted_png(100_000, 100_000))


@pytest.mark.parametrize("source", ["png", "jpeg"])
def test_random_byte_damage_never_escapes_as_another_exception(digits_model: Any, source: str) -> None:
    original = _encode(_drawn(7), "PNG" if source == "png" else "JPEG")
    rng = np.random.default_rng(1234)
    for _ in range(150):
        damaged = bytearray(original)
        for _ in range(int(rng.integers(1, 9))):
            damaged[int(rng.integers(len(damaged)))] = int(rng.integers(256))
        if rng.random() < 0.3:
            damaged = damaged[: int(rng.integers(1, len(damaged)))]
        try:
            result = _predict(digits_model, _b64(bytes(damaged)))
        except InvalidInput:
            continue
        assert 0 <= result["digit"] <= 9


# --- batching and concurrency --------------------------------------------------------


def test_admit_and_prepare_raise_invalid_input_for_a_bad_image(digits_model: Any) -> None:
    # On the request's own thread, before any batch: only that request fails. `admit` reads
    # the base64 and the header only; `prepare` decodes the pixels into the 64 features.
    admitted = digits.admit(digits_model, {"image": THREE_BASE64})
    assert isinstance(admitted, bytes)
    assert digits.prepare(digits_model, admitted).shape == (64,)
    with pytest.raises(InvalidInput):
        digits.admit(digits_model, {"image": "not base64!"})
    with pytest.raises(InvalidInput):
        digits.prepare(digits_model, admitted[:40])  # a header, then nothing


def test_concurrent_predictions_match_sequential_ones(digits_model: Any) -> None:
    texts = [_b64(rendering.draw_digit(d, size=s)) for d in range(10) for s in (28, 64)]
    sequential = [_predict(digits_model, t) for t in texts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda t: _predict(digits_model, t), texts * 3))
    assert concurrent == sequential * 3


# --- the features' cheap calls give the straightforward version's numbers ---------------


def _reference_features(gray: np.ndarray) -> np.ndarray:
    """features_from_gray as first written: np.median, np.clip, a mask per axis."""
    border = np.concatenate([gray[0, :], gray[-1, :], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    ink = background - gray if background > 127.5 else gray - background
    ink = np.clip(ink, 0.0, None)
    peak = float(ink.max())
    if peak < image.MIN_CONTRAST:
        raise InvalidInput("no digit found")
    rows = np.flatnonzero((ink >= peak * image.INK_THRESHOLD).any(axis=1))
    columns = np.flatnonzero((ink >= peak * image.INK_THRESHOLD).any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    side = max(crop.shape)
    square = np.zeros((side, side), dtype=np.float32)
    top, left = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    square[top : top + crop.shape[0], left : left + crop.shape[1]] = crop
    small = np.asarray(Image.fromarray(square).resize((8, 8), Image.Resampling.BOX), dtype=np.float64)
    small *= 16.0 / float(small.max())
    return np.clip(small, 0.0, 16.0).reshape(64)


def _varied_images() -> list[bytes]:
    """load_digits' rendered PNGs, drawn digits of odd and even sides, random RGBA PNGs and gray JPEGs."""
    _, _, held_out = split()
    images = [rendering.png_from_features(row) for row in held_out.features[:200]]
    images += [rendering.draw_digit(d, size=s) for d in range(10) for s in (9, 28, 31, 64)]
    rng = np.random.default_rng(7)
    for _ in range(60):
        width, height = (int(n) for n in rng.integers(5, 90, size=2))
        for mode, channels, fmt in (("RGBA", 4, "PNG"), ("L", 1, "JPEG")):
            pixels = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8).squeeze(
                -1 if channels == 1 else ()
            )
            buffer = io.BytesIO()
            Image.fromarray(pixels, mode).save(buffer, fmt)
            images.append(buffer.getvalue())
    return images


def test_the_features_equal_the_straightforward_computation() -> None:
    compared = 0
    for data in _varied_images():
        with image.open_image(data) as opened:
            gray = image.grayscale(opened)
        try:
            expected = _reference_features(gray.copy())
        except InvalidInput:
            with pytest.raises(InvalidInput):
                image.features_from_gray(gray)
            continue
        np.testing.assert_array_equal(image.features_from_gray(gray), expected)
        compared += 1
    assert compared > 300


# --- plain PNGs take libspng's decoder and give Pillow's pixels -------------------------


def _random_png(mode: str, width: int, height: int, seed: int, **options: Any) -> bytes:
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3}[mode]
    pixels = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    return _encode(Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode), **options)


def _plain_pngs() -> list[bytes]:
    """Gray and RGB PNGs of many sizes and every zlib level, drawn digits and load_digits' renderings."""
    rng = np.random.default_rng(11)
    pngs = [rendering.png_from_features(row) for row in split()[2].features[:50]]
    pngs += [rendering.draw_digit(d, size=s, mode=m) for d in range(10) for s in (9, 64) for m in ("L", "RGB")]
    for seed in range(60):
        width, height = (int(n) for n in rng.integers(1, 130, size=2))
        pngs.append(_random_png("L" if seed % 2 else "RGB", width, height, seed, compress_level=seed % 10))
    pngs.append(_random_png("L", 1, 1, 0))
    pngs.append(_random_png("RGB", 300, 7, 1, optimize=True))
    return pngs


def test_plain_pngs_decode_to_the_pixels_pillow_gives() -> None:
    for data in _plain_pngs():
        gray = image.plain_png_gray(data)
        assert gray is not None
        with image.open_image(data) as opened:
            np.testing.assert_array_equal(gray, image.grayscale(opened))


def _turned() -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    return exif


def _with_chunk_before_idat(data: bytes, chunk: bytes) -> bytes:
    at = data.index(b"IDAT") - 4
    return data[:at] + chunk + data[at:]


def _with_idat(data: bytes, rows: bytes) -> bytes:
    """`data` with its image data replaced by `rows` (already deflated), CRC right."""
    start = data.index(b"IDAT") - 4
    end = data.index(b"IEND") - 4
    return data[:start] + _chunk(b"IDAT", rows) + data[end:]


def _plain() -> bytes:
    return rendering.draw_digit(7, size=32)


def _rows(data: bytes) -> bytes:
    start = data.index(b"IDAT") - 4
    length = int.from_bytes(data[start : start + 4], "big")
    return zlib.decompress(data[start + 8 : start + 8 + length])


def _damaged_deflate() -> bytes:
    deflated = bytearray(zlib.compress(_rows(_plain())))
    deflated[-3] ^= 0xFF  # the Adler-32 check at the stream's end
    return _with_idat(_plain(), bytes(deflated))


def _damaged_deflate_data() -> bytes:
    """Two bytes flipped inside the deflate stream: it still inflates, to other rows (libspng decodes it)."""
    data = _random_png("L", 64, 64, 0)
    start = data.index(b"IDAT") - 4
    deflated = bytearray(data[start + 8 : start + 8 + int.from_bytes(data[start : start + 4], "big")])
    deflated[10] ^= 0xFF
    deflated[11] ^= 0xFF
    return _with_idat(data, bytes(deflated))


def _bad_filter_byte() -> bytes:
    rows = bytearray(_rows(_plain()))
    rows[0] = 9  # filter types are 0..4
    return _with_idat(_plain(), zlib.compress(bytes(rows)))


# Files that are not plain, or plain ones broken in a way libspng alone would let through:
# each goes through Pillow, which decodes it (same features) or refuses it (InvalidInput).
NOT_PLAIN: dict[str, Callable[[], bytes]] = {
    "gray-with-transparency": lambda: _encode(_drawn(7), transparency=255),
    "palette": lambda: _encode(_drawn(7).convert("P")),
    "gray-and-alpha": lambda: _encode(_drawn(7).convert("LA")),
    "rgba": lambda: _encode(_drawn(7).convert("RGBA")),
    "16-bit": lambda: _encode(_drawn(7).convert("I;16")),
    "interlaced": lambda: _with_idat(_plain(), zlib.compress(_rows(_plain()))).replace(
        _chunk(b"IHDR", _plain()[16:29]), _chunk(b"IHDR", _plain()[16:28] + b"\x01")
    ),
    "with-exif-orientation": lambda: _encode(_drawn(7), exif=_turned()),
    "with-dpi": lambda: _encode(_drawn(7), dpi=(300, 300)),
    "with-text": lambda: _with_chunk_before_idat(_plain(), _chunk(b"tEXt", b"Comment\x00hello")),
    "bytes-after-iend": lambda: _plain() + b"trailing",
    "no-iend": lambda: _plain()[:-12],
    "idat-crc-wrong": lambda: _plain()[:-16] + bytes(4) + _plain()[-12:],
    "deflate-check-wrong": _damaged_deflate,
    "deflate-data-damaged": _damaged_deflate_data,
    "filter-byte-out-of-range": _bad_filter_byte,
    "rows-missing": lambda: _with_idat(_plain(), zlib.compress(_rows(_plain())[:-40])),
    "rows-extra": lambda: _with_idat(_plain(), zlib.compress(_rows(_plain()) + bytes(33))),
    "over-a-megapixel": lambda: rendering.draw_digit(7, size=1025),
    "declaring-5000x5000": lambda: _crafted_png(5000, 5000),
}


@pytest.mark.parametrize("case", NOT_PLAIN)
def test_any_other_png_is_left_to_pillow_with_the_same_outcome(case: str) -> None:
    data = NOT_PLAIN[case]()
    assert image.plain_png_gray(data) is None
    try:
        with image.open_image(data) as opened:
            expected = image.features_from_gray(image.grayscale(opened))
    except InvalidInput:
        with pytest.raises(InvalidInput):
            image.features_from_bytes(data)
        return
    np.testing.assert_array_equal(image.features_from_bytes(data), expected)
