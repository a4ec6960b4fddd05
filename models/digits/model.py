"""The digit classifier: a PNG or JPEG of one handwritten digit in, 0-9 probabilities out.

`DigitClassifier.load()` serves the forest from its numpy serving form
(`digits-forest.npz`, see `models.digits.forest`) and never imports scikit-learn or
skops. The fitted scikit-learn estimator it was compiled from (`digits.skops`, the
source of truth) is `load_estimator()`, for training, tests and the benchmark's baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.artifacts import ArtifactError, display_path, load_artifact, load_serving_arrays
from models.digits import image
from models.digits.forest import MEMBERS, CompiledForest, compile_forest

ARTIFACT_DIR = Path(__file__).resolve().parent
ARTIFACT_FILE = "digits.skops"
SERVING_FILE = "digits-forest.npz"
N_FEATURES = 64
DIGITS = tuple(range(10))

# Types in digits.skops that skops does not trust by default. A Tree holds raw node
# indices that scikit-learn follows without bounds checks, so a crafted file could make
# predict() read out of bounds: we trust it only after the sha256 check, and
# `load_estimator` checks every index the way `CompiledForest` checks the serving form's.
TRUSTED_TYPES: tuple[str, ...] = ("sklearn.tree._tree.Tree",)


class DigitClassifier:
    """A random forest of 8x8 digit images behind a plain-Python interface."""

    def __init__(self, forest: CompiledForest) -> None:
        if forest.n_features != N_FEATURES or forest.n_classes != len(DIGITS):
            raise ArtifactError(f"{forest.source}: not a classifier of 8x8 digit images")
        self._forest = forest

    @classmethod
    def load(cls, directory: Path = ARTIFACT_DIR) -> DigitClassifier:
        """Load `digits-forest.npz`, verified against `artifact.json` and checked for consistency."""
        arrays = load_serving_arrays(directory, SERVING_FILE, MEMBERS)
        return cls(CompiledForest(arrays, N_FEATURES, source=display_path(directory / SERVING_FILE)))

    @property
    def forest(self) -> CompiledForest:
        """The compiled forest."""
        return self._forest

    def predict(self, images: Sequence[str]) -> list[dict[str, Any]]:
        """`{"digit", "probabilities"}` per base64 image; `InvalidInput` if one is unusable."""
        if not images:
            return []
        return self.predict_features(np.stack([image.features(text) for text in images]))

    def predict_features(self, rows: np.ndarray) -> list[dict[str, Any]]:
        """Results for rows of 64 `load_digits`-style features, in one model call."""
        probabilities = self._forest.predict_proba(np.asarray(rows, dtype=np.float64).reshape(-1, N_FEATURES))
        return [{"digit": int(np.argmax(row)), "probabilities": [float(p) for p in row]} for row in probabilities]


def load_estimator(directory: Path = ARTIFACT_DIR) -> Any:
    """The fitted scikit-learn `RandomForestClassifier` from `digits.skops`, verified.

    Imports scikit-learn and skops (seconds): for training, tests and comparisons, not
    for serving.
    """
    name = display_path(directory / ARTIFACT_FILE)
    forest = load_artifact(directory, ARTIFACT_FILE, TRUSTED_TYPES)
    classes = getattr(forest, "classes_", None)
    if classes is None or list(classes) != list(DIGITS) or getattr(forest, "n_features_in_", None) != N_FEATURES:
        raise ArtifactError(f"{name}: not a classifier of 8x8 digit images")
    try:
        compiled = compile_forest(forest)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{name}: not a forest of depth-first trees ({exc})") from None
    CompiledForest(compiled, N_FEATURES, source=name)  # raises if any node index is out of range
    return forest
