"""Handwritten digit (0-9) in a PNG or JPEG image (scikit-learn random forest, 8x8 features).

Send dark ink on a light (or transparent) background, or light on dark, one digit per
image; the image is cropped to the ink and shrunk to 8x8 like scikit-learn's digits data
set. See models/README.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.digits.examples import SEVEN_DATA_URL, THREE_BASE64
from models.digits.image import MAX_BASE64_CHARS
from models.digits.model import DIGITS, DigitClassifier

NAME = "Digits"  # served at POST /v1/Digits
VERSION = "1.0.0"
# digits.onnx and its manifest (artifact.json, which the sha256 check reads): the committed
# copy by default; `MODEL_ARTIFACTS=Digits=gs://BUCKET/digits/` serves an uploaded one.
ARTIFACTS = "models/digits/"

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


def setup(artifacts: Path) -> DigitClassifier:
    """Load and verify the serving form (`digits.onnx` in `artifacts`) for ONNX Runtime."""
    return DigitClassifier.load(artifacts)


def admit(model: DigitClassifier, payload: dict[str, Any]) -> bytes:
    """The image's bytes, its pixels (from its header) charged to the request; nothing decoded yet."""
    return model.admit(payload["image"])


def prepare(model: DigitClassifier, data: bytes) -> np.ndarray:
    """The admitted image's 64 features: decoded on the request's thread, outside the batch."""
    return model.features(data)


def predict(model: DigitClassifier, features: np.ndarray) -> dict[str, Any]:
    """The most probable digit and every digit's probability."""
    return model.predict_features(features[np.newaxis])[0]


def predict_batch(model: DigitClassifier, rows: list[np.ndarray]) -> list[dict[str, Any]]:
    """One result per image, in order, from a single model call over the gathered rows."""
    return model.predict_features(np.stack(rows)) if rows else []
