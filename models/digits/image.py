"""A user's PNG or JPEG of one handwritten digit, turned into `load_digits`' 8x8 features.

`load_digits` images are 8x8 grids of ink counts from 0 to 16, light strokes on a dark
ground, the digit scaled to fill the height and centred. A user's image is usually the
opposite: dark ink on white paper or a transparent canvas, any size, anywhere in the
frame. `features()` detects the background from the border, inverts when it is light,
crops to the ink, pads to a square (keeping the aspect), shrinks to 8x8 by averaging and
stretches the result to 0..16.

Every way the bytes can be unusable ends in `InvalidInput` with a message for the
caller: not base64, empty, too large, not PNG or JPEG, a header declaring more pixels than
`MAX_PIXELS` (checked before any pixel is decoded), corrupt or truncated data, several
frames, or no ink at all.
"""

from __future__ import annotations

import base64
import binascii
import io
import zlib
from typing import TYPE_CHECKING

import numpy as np

from serving.kit import InvalidInput

if TYPE_CHECKING:
    from PIL import Image

MAX_IMAGE_BYTES = 2 * 1024 * 1024
# Length of the base64 text for MAX_IMAGE_BYTES, plus room for a data: URL prefix and
# line breaks (some encoders wrap base64 every 76 characters).
MAX_BASE64_CHARS = 3_000_000
MAX_SIDE = 4096
# 16.7 million pixels: 64 MiB once decoded to RGBA, yet enough for a phone photo
# (4032x3024). Far below Pillow's own decompression-bomb threshold, so Pillow never
# gets to warn: we refuse first, from the header.
MAX_PIXELS = MAX_SIDE * MAX_SIDE

# An ink peak below this (on 0..255) means a blank or nearly blank image.
MIN_CONTRAST = 40.0
# Pixels below this fraction of the ink peak are paper grain or JPEG noise, not ink,
# when finding the digit's bounding box.
INK_THRESHOLD = 0.1

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
_ACCEPTED_MEDIA_TYPES = {"image/png", "image/jpeg", "image/jpg", "image/pjpeg"}
_OTHER_FORMATS = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
)
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic...); not C4
# (Huffman tables), C8 (reserved) or CC (arithmetic conditioning).
_JPEG_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def decode_base64(text: str) -> bytes:
    """The image bytes in `text`: base64, optionally as a `data:image/...;base64,` URL."""
    if len(text) > MAX_BASE64_CHARS:
        raise InvalidInput(f"image is too large: at most {MAX_IMAGE_BYTES // (1024 * 1024)} MiB")
    if text[:5].lower() == "data:":
        text = _strip_data_url(text)
    compact = "".join(text.split())  # encoders may wrap lines
    if not compact:
        raise InvalidInput("image is empty")
    compact = compact.translate(str.maketrans("-_", "+/"))  # accept the URL-safe alphabet too
    compact += "=" * (-len(compact) % 4)
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("image is not valid base64") from None
    if not data:
        raise InvalidInput("image is empty")
    return data


def _strip_data_url(text: str) -> str:
    header, comma, body = text.partition(",")
    if not comma:
        raise InvalidInput("image data: URL has no ',' before its data")
    media_type, *parameters = (part.strip().lower() for part in header[5:].split(";"))
    if "base64" not in parameters:
        raise InvalidInput("image data: URL must be base64-encoded (data:image/png;base64,...)")
    if media_type and media_type not in _ACCEPTED_MEDIA_TYPES:
        raise InvalidInput(f"unsupported image type {media_type[:40]!r}: send a PNG or JPEG")
    return body


def declared_size(data: bytes) -> tuple[str, int, int]:
    """`(format, width, height)` from the file's header, without decoding any pixels."""
    if data.startswith(PNG_SIGNATURE):
        # The first chunk must be IHDR: length (4), type (4), width (4), height (4).
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise InvalidInput("image is not a valid PNG: its header is missing or corrupt")
        return "PNG", int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data.startswith(JPEG_SIGNATURE):
        size = _jpeg_frame_size(data)
        if size is None:
            raise InvalidInput("image is not a valid JPEG: no frame header before the image data")
        return "JPEG", size[0], size[1]
    for signature, name in _OTHER_FORMATS:
        if data.startswith(signature):
            raise InvalidInput(f"{name} images are not accepted: send a PNG or JPEG")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        raise InvalidInput("WebP images are not accepted: send a PNG or JPEG")
    raise InvalidInput("image is not a PNG or JPEG")


def _jpeg_frame_size(data: bytes) -> tuple[int, int] | None:
    """The largest width and height declared by any frame header before the scan data.

    A well-formed JPEG has one frame header; taking the largest of several means a crafted
    file cannot show a small size here and a huge one to the decoder.
    """
    size: tuple[int, int] | None = None
    position = 2  # after SOI
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # segments without a length
            position += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or the scan data: headers are over
            return size
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if length < 2:
            return None
        if marker in _JPEG_SOF_MARKERS:
            if position + 9 > len(data):
                return None
            height = int.from_bytes(data[position + 5 : position + 7], "big")
            width = int.from_bytes(data[position + 7 : position + 9], "big")
            size = (width, height) if size is None else (max(size[0], width), max(size[1], height))
        position += 2 + length
    return size


def declared_pixels(data: bytes) -> int:
    """The pixels the image in `data` would decode to, from its header; `InvalidInput` when unusable."""
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidInput(f"image is too large: at most {MAX_IMAGE_BYTES // (1024 * 1024)} MiB")
    _, width, height = declared_size(data)
    _check_dimensions(width, height)
    return width * height


def open_image(data: bytes) -> Image.Image:
    """A fully decoded single-frame PNG or JPEG, after checking its declared size."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidInput(f"image is too large: at most {MAX_IMAGE_BYTES // (1024 * 1024)} MiB")
    image_format, width, height = declared_size(data)
    _check_dimensions(width, height)
    try:
        image = Image.open(io.BytesIO(data), formats=[image_format])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidInput(_too_many_pixels_message()) from None
    except UnidentifiedImageError:
        raise InvalidInput(f"image is not a valid {image_format}") from None
    except Exception:  # noqa: BLE001 - a corrupt header fails inside Pillow in many ways
        raise InvalidInput(f"image is not a valid {image_format}: its header is truncated or corrupt") from None
    try:
        _check_dimensions(*image.size)
        if getattr(image, "n_frames", 1) != 1:
            raise InvalidInput("animated or multi-frame images are not accepted: send a single frame")
        try:
            image.load()
            # Phone cameras store the picture sideways plus an "orientation" tag. In place:
            # an upright image is not copied (a copy per request, for nothing).
            ImageOps.exif_transpose(image, in_place=True)
        except Exception:  # noqa: BLE001 - Pillow reports truncated or corrupt data as OSError, SyntaxError, ValueError...
            raise InvalidInput(f"image is not a valid {image_format}: its data is truncated or corrupt") from None
    except BaseException:
        image.close()
        raise
    return image


def _check_dimensions(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise InvalidInput("image has no pixels: its header declares a zero width or height")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise InvalidInput(f"image is {width}x{height} pixels: {_too_many_pixels_message()}")


def _too_many_pixels_message() -> str:
    return f"images may be at most {MAX_SIDE}x{MAX_SIDE} pixels"


def grayscale(image: Image.Image) -> np.ndarray:
    """Luminance from 0 (black) to 255 (white) as float64, transparency resolved."""
    from PIL import Image

    if image.mode.startswith("I"):  # 16-bit grayscale PNG
        return np.clip(np.asarray(image, dtype=np.float64) / 257.0, 0.0, 255.0)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float64)
        luminance = np.asarray(rgba.convert("L"), dtype=np.float64)
        opaque = alpha > 127
        # A canvas widget draws strokes on a transparent ground: put the strokes on the
        # background that contrasts with them (white behind dark ink, black behind light).
        dark_ink = not opaque.any() or float(luminance[opaque].mean()) < 128.0
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255) if dark_ink else (0, 0, 0, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("L"), dtype=np.float64)
    # convert("L") of an "L" image is a copy: skip it for the commonest case.
    return np.asarray(image if image.mode == "L" else image.convert("L"), dtype=np.float64)


def features_from_gray(gray: np.ndarray) -> np.ndarray:
    """The 64 `load_digits`-style features (0..16, row by row) of a grayscale image."""
    # Per image, numpy's fixed cost per call outweighs the arithmetic on a few thousand
    # pixels, so each step below is the cheapest call for the same numbers: the median of
    # the border by one in-place sort (np.median's own checks cost more than the sort), and
    # one ink mask for rows and columns. tests/models/test_digits.py holds the features to
    # those of the straightforward version.
    border = np.concatenate((gray[0, :], gray[-1, :], gray[:, 0], gray[:, -1]))
    border.sort()
    middle = border.size // 2
    background = float(border[middle]) if border.size % 2 else (float(border[middle - 1]) + float(border[middle])) / 2
    # Ink is whatever differs from the background, in the direction away from it.
    ink = background - gray if background > 127.5 else gray - background
    np.maximum(ink, 0.0, out=ink)
    peak = float(ink.max())
    if peak < MIN_CONTRAST:
        raise InvalidInput("no digit found: the image is blank or has too little contrast")

    mask = ink >= peak * INK_THRESHOLD
    rows = mask.any(axis=1).nonzero()[0]
    columns = mask.any(axis=0).nonzero()[0]
    crop = ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    side = max(crop.shape)
    square = np.zeros((side, side), dtype=np.float32)
    top, left = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    square[top : top + crop.shape[0], left : left + crop.shape[1]] = crop

    # BOX averages every source pixel into its cell, as load_digits counted ink per 4x4 block.
    small = np.frombuffer(_box_8x8(square), dtype=np.float32).astype(np.float64)
    small *= 16.0 / float(small.max())
    # Ink is never negative, so only the top needs clipping (np.clip costs three times more).
    return np.minimum(small, 16.0, out=small)


def _box_8x8(square: np.ndarray) -> bytes:
    """Pillow's BOX resize of a square float32 array to 8x8: its 64 float32 values, row by row.

    These are the C calls `Image.frombuffer("F", ...).resize((8, 8), BOX).tobytes()` ends
    in (the array mapped as an "F" image, resampled, written out raw), made directly:
    the Python around them (mode and size checks, a decoder and an encoder object, the
    encoder's loop) cost 10 of that chain's 12 us a digit, more than the resize itself.
    `Image.core` is Pillow's C module, so its calls are held to the public chain's pixels
    by tests/models/test_digits.py for the pinned Pillow.
    """
    from PIL import Image

    side = square.shape[0]
    if side == 8:  # nothing to resample (Pillow's resize returns a copy)
        return bytes(np.ascontiguousarray(square, dtype=np.float32))
    source = Image.core.map_buffer(square, (side, side), "raw", 0, ("F", 0, 1))
    resized = source.resize((8, 8), Image.Resampling.BOX, (0.0, 0.0, float(side), float(side)))
    encoder = Image.core.raw_encoder("F", "F", 0, 1)
    encoder.setimage(resized, (0, 0, 8, 8))
    _, status, data = encoder.encode(64 * 4)
    if status != 1 or len(data) != 64 * 4:
        raise RuntimeError(f"Pillow wrote {len(data)} bytes of an 8x8 float image (status {status})")
    return bytes(data)


def features(text: str) -> np.ndarray:
    """The 64 features of the base64 image in `text`; `InvalidInput` if it is unusable."""
    return features_from_bytes(decode_base64(text))


def features_from_bytes(data: bytes) -> np.ndarray:
    """The 64 features of the PNG or JPEG in `data`; `InvalidInput` if it is unusable."""
    if len(data) <= MAX_IMAGE_BYTES and data.startswith(PNG_SIGNATURE):
        gray = plain_png_gray(data)
        if gray is not None:
            return features_from_gray(gray)
    with open_image(data) as image:
        return features_from_gray(grayscale(image))


# Bit depth 8 and colour type 0 (gray) or 2 (RGB): one byte per channel, no palette, no alpha.
_PLAIN_CHANNELS = {0: 1, 2: 3}
_PLAIN_CHUNKS = (b"IHDR", b"IDAT", b"IEND")
_LUMA_WEIGHTS = np.array([19595, 38470, 7471], dtype=np.uint32)
# Above this, Pillow's fixed cost is small beside the decoding itself, and the check here
# would inflate the whole image once more (50 MB for a 4096x4096 RGB file) for nothing.
PLAIN_MAX_PIXELS = 1024 * 1024


def plain_png_gray(data: bytes) -> np.ndarray | None:
    """The luminance of a plain PNG, equal to `grayscale`'s, decoded by libspng; else None.

    Plain: at most a megapixel of 8-bit gray or RGB, not interlaced, only IHDR, IDAT and
    IEND chunks, every CRC right, the image data inflating to exactly its rows with valid
    filter bytes, nothing after IEND. Canvases and image libraries write a drawn digit so,
    and for such a file Pillow has nothing else to honour (transparency, palette,
    orientation, frames), so the pixels are Pillow's. Pillow takes about 60 us for a 64x64
    digit, mostly Python around its C decoder; this, 20. Any other file, or a plain one
    failing a check, gives None and goes through Pillow, which decodes it or refuses it
    with the usual message. The checks are ours because libspng is lenient: it decodes a
    file with no IEND, or one whose deflate stream is corrupt, where Pillow, the
    reference, refuses. The only file refused here (InvalidInput) is one whose header
    declares no pixels, with the message the Pillow path gives.
    """
    position, size, header, parts = 8, len(data), b"", []
    while True:
        if position + 12 > size:
            return None
        length = int.from_bytes(data[position : position + 4], "big")
        end = position + 12 + length
        kind = data[position + 4 : position + 8]
        if end > size or kind not in _PLAIN_CHUNKS or (kind == b"IHDR") != (position == 8):
            return None
        if zlib.crc32(data[position + 4 : end - 4]) != int.from_bytes(data[end - 4 : end], "big"):
            return None
        if kind == b"IEND":
            if end != size:
                return None
            break
        if kind == b"IHDR":
            header = data[position + 8 : end - 4]
        else:
            parts.append(data[position + 8 : end - 4])
        position = end
    if len(header) != 13 or not parts:
        return None
    width, height = int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")
    depth, colour, compression, filtering, interlace = header[8:13]
    channels = _PLAIN_CHANNELS.get(colour) if depth == 8 else None
    if channels is None or compression or filtering or interlace or width * height > PLAIN_MAX_PIXELS:
        return None
    _check_dimensions(width, height)
    stride = 1 + width * channels
    inflater = zlib.decompressobj()
    try:
        rows = inflater.decompress(b"".join(parts), height * stride + 1)
    except zlib.error:
        return None
    if len(rows) != height * stride or not inflater.eof or inflater.unused_data:
        return None
    if np.frombuffer(rows, dtype=np.uint8)[::stride].max() > 4:  # each row's filter type, 0..4
        return None
    import pyspng

    try:
        pixels: np.ndarray = pyspng.load(data)
    except RuntimeError:
        return None
    if channels == 1:
        return pixels.astype(np.float64)
    # Pillow's convert("L"): ITU-R 601-2 luma in 16-bit fixed point (Convert.c's L24).
    luma: np.ndarray = (pixels * _LUMA_WEIGHTS).sum(axis=2, dtype=np.uint32)
    luma += 0x8000
    luma >>= 16
    return luma.astype(np.float64)
