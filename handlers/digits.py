"""Handwritten digit (0-9) in a PNG or JPEG image (scikit-learn random forest, 8x8 features).

Send dark ink on a light (or transparent) background, or light on dark, one digit per
image; the image is cropped to the ink and shrunk to 8x8 like scikit-learn's digits data
set. See models/README.md.
"""

from __future__ import annotations

from typing import Any

from models.digits.examples import SEVEN_DATA_URL, THREE_BASE64
from models.digits.image import MAX_BASE64_CHARS
from models.digits.model import DIGITS, DigitClassifier

NAME = "Digits"  # served at POST /v1/Digits
VERSION = "1.0.0"

INPUT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "image": {
            "type": "string",
            "minLength": 1,
            # About 2 MiB of image, plus a data: prefix and line breaks.
            "maxLength": MAX_BASE64_CHARS,
            "contentEncoding": "base64",
            "description": (
                "A PNG or JPEG (at most 2 MiB and 4096x4096 pixels, one frame), base64-encoded, "
                "optionally as a data: URL such as 'data:image/png;base64,iVBOR...'."
            ),
        }
    },
    "required": ["image"],
    "additionalProperties": False,
    "examples": [{"image": SEVEN_DATA_URL}, {"image": THREE_BASE64}],
}

OUTPUT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "digit": {"type": "integer", "minimum": 0, "maximum": 9, "description": "The most probable digit."},
        "probabilities": {
            "type": "array",
            "items": {"type": "number", "minimum": 0, "maximum": 1},
            "minItems": len(DIGITS),
            "maxItems": len(DIGITS),
            "description": "Probability of each digit 0..9, by index; they sum to 1.",
        },
    },
    "required": ["digit", "probabilities"],
    "additionalProperties": False,
}


def setup() -> DigitClassifier:
    """Load and verify the committed serving form (models/digits/digits.onnx) for ONNX Runtime."""
    return DigitClassifier.load()


def predict(model: DigitClassifier, payload: dict[str, Any]) -> dict[str, Any]:
    """The most probable digit and every digit's probability."""
    return model.predict([payload["image"]])[0]


def predict_batch(model: DigitClassifier, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One result per payload, in order, from a single model call; `InvalidInput` if any is unusable."""
    return model.predict([payload["image"] for payload in payloads])
