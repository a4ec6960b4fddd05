"""The digit classifier: a PNG or JPEG of one handwritten digit in, 0-9 probabilities out.

`DigitClassifier.load()` serves the forest from its ONNX serving form (`digits.onnx`,
converted by skl2onnx when training) with ONNX Runtime, and never imports scikit-learn
or skops. The fitted scikit-learn estimator it was converted from (`digits.skops`, the
source of truth) is `load_estimator()`, for training, tests and the benchmark's baseline.

ONNX Runtime compares float32 features with float32 thresholds and sums the trees'
float32 probabilities, where scikit-learn uses float64 for both: the thresholds of a
forest trained on `load_digits`' integer features are halves (3.5), exact in float32, so
every row takes the same path, and the probabilities differ from scikit-learn's by at
most `PROBABILITY_TOLERANCE` (tests/models/test_serving_forms.py checks both).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.digits import image
from models.onnx_classifier import OnnxClassifier
from serving.kit import ArtifactError, OnnxModel, display_path, json_float_rows, load_artifact, request_scope

ARTIFACT_DIR = Path(__file__).resolve().parent
ARTIFACT_FILE = "digits.skops"
SERVING_FILE = "digits.onnx"
N_FEATURES = 64
DIGITS = tuple(range(10))
# Largest difference from scikit-learn's float64 probabilities: 200 float32 sums.
PROBABILITY_TOLERANCE = 2e-6

# Types in digits.skops that skops does not trust by default. A Tree holds raw node
# indices that scikit-learn follows without bounds checks, so a crafted file could make
# predict() read out of bounds: we trust it only after the sha256 check, and
# `load_estimator` checks every index.
TRUSTED_TYPES: tuple[str, ...] = ("sklearn.tree._tree.Tree",)
_WHAT = "a classifier of 8x8 digit images"


class DigitClassifier:
    """A random forest of 8x8 digit images behind a plain-Python interface."""

    def __init__(self, classifier: OnnxClassifier) -> None:
        self._classifier = classifier

    @classmethod
    def load(cls, directory: Path = ARTIFACT_DIR) -> DigitClassifier:
        """Load `digits.onnx`, verified against `artifact.json`."""
        return cls(OnnxClassifier.load(directory, SERVING_FILE, N_FEATURES, len(DIGITS), _WHAT))

    @property
    def onnx(self) -> OnnxModel:
        """The ONNX model served."""
        return self._classifier.onnx

    def predict(self, images: Sequence[str]) -> list[dict[str, Any]]:
        """`{"digit", "probabilities"}` per base64 image; `InvalidInput` if one is unusable.

        Within a request (serving/runtime/request_scope.py) the images' pixels are charged
        to its allowance (MAX_PIXELS_PER_REQUEST) from their headers before any is decoded,
        and decoding stops between images once nobody waits for the answer.
        """
        if not images:
            return []
        data = [image.decode_base64(text) for text in images]
        pixels = sum(image.declared_pixels(item) for item in data)
        request_scope.charge_pixels(pixels, f"{len(data)} images")
        try:
            rows = []
            for item in data:
                request_scope.check(ask_client=True)  # an image costs up to seconds: a peek is nothing
                rows.append(image.features_from_bytes(item))
        except BaseException:
            # predict_batch's failure is retried image by image, which charges them again.
            request_scope.refund_pixels(pixels)
            raise
        return self.predict_features(np.stack(rows))

    def admit(self, text: str) -> bytes:
        """One base64 image's bytes, its pixels charged to its request's allowance from its header.

        The handler's `admit` stage, on the request's own thread: cheap (no pixel is decoded),
        and the server admits every image of a request before it decodes any, so a request of
        many images is refused (413, MAX_PIXELS_PER_REQUEST) before any of them is decoded.
        """
        data = image.decode_base64(text)
        request_scope.charge_pixels(image.declared_pixels(data), "images")
        return data

    def features(self, data: bytes) -> np.ndarray:
        """An admitted image's 64 features (see `admit`); not started once nobody waits for the answer.

        The handler's `prepare` stage: on the request's own thread, outside the batch, so
        requests decode in parallel while a batch runs and the batch gathers ready rows.
        """
        request_scope.check(ask_client=True)  # an image costs up to seconds: a peek is nothing
        return image.features_from_bytes(data)

    def predict_features(self, rows: np.ndarray) -> list[dict[str, Any]]:
        """Results for rows of 64 `load_digits`-style features, in one model call."""
        probabilities = self.predict_proba(rows)
        # Whole-batch conversions: per row, numpy's call overhead cost more than the forest.
        digits = probabilities.argmax(axis=1).tolist()
        return [
            {"digit": digit, "probabilities": row}
            for digit, row in zip(digits, json_float_rows(probabilities), strict=True)
        ]

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """float32 probabilities (n_rows, 10) for rows of 64 finite features; ValueError otherwise."""
        return self._classifier.predict_proba(rows)


def load_estimator(directory: Path = ARTIFACT_DIR) -> Any:
    """The fitted scikit-learn `RandomForestClassifier` from `digits.skops`, verified.

    Imports scikit-learn and skops (seconds): for training, tests and comparisons, not
    for serving.
    """
    name = display_path(directory / ARTIFACT_FILE)
    forest = load_artifact(directory, ARTIFACT_FILE, TRUSTED_TYPES)
    classes = getattr(forest, "classes_", None)
    if classes is None or list(classes) != list(DIGITS) or getattr(forest, "n_features_in_", None) != N_FEATURES:
        raise ArtifactError(f"{name}: not {_WHAT}")
    for estimator in getattr(forest, "estimators_", ()):
        problem = _node_index_problem(estimator.tree_, N_FEATURES)
        if problem:
            raise ArtifactError(f"{name}: {problem}; the file is corrupt or was crafted")
    return forest


def _node_index_problem(tree: Any, n_features: int) -> str | None:
    """What is wrong with a fitted tree's node indices, or None.

    scikit-learn's Cython follows them without bounds checks. It numbers nodes depth
    first, so an internal node's two children lie after it; a leaf has neither (-1).
    """
    count = int(tree.node_count)
    nodes = np.arange(count)
    left, right, feature = (np.asarray(a)[:count] for a in (tree.children_left, tree.children_right, tree.feature))
    if len(left) != count or len(right) != count or len(feature) != count:
        return "a tree's arrays are shorter than its node count"
    leaf = left == -1
    internal = ~leaf
    if not np.all(right[leaf] == -1) or not np.all(
        (left[internal] > nodes[internal])
        & (right[internal] > nodes[internal])
        & (left[internal] != right[internal])
        & (left[internal] < count)
        & (right[internal] < count)
    ):
        return "a node's children are out of range"
    if not np.all((feature[internal] >= 0) & (feature[internal] < n_features)):
        return f"a node's feature is outside 0..{n_features - 1}"
    return None
