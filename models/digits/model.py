"""The digit classifier: a PNG or JPEG of one handwritten digit in, 0-9 probabilities out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.artifacts import ArtifactError, display_path, load_artifact
from models.digits import image

ARTIFACT_DIR = Path(__file__).resolve().parent
ARTIFACT_FILE = "digits.skops"
N_FEATURES = 64
DIGITS = tuple(range(10))

# Types in digits.skops that skops does not trust by default. A Tree holds raw node
# indices that scikit-learn follows without bounds checks, so a crafted file could make
# predict() read out of bounds: we trust it only after the sha256 check, and
# `_check_trees` re-checks every index on load.
TRUSTED_TYPES: tuple[str, ...] = ("sklearn.tree._tree.Tree",)


class DigitClassifier:
    """A fitted RandomForestClassifier behind a plain-Python interface."""

    def __init__(self, forest: Any) -> None:
        name = display_path(ARTIFACT_DIR / ARTIFACT_FILE)
        classes = getattr(forest, "classes_", None)
        if classes is None or list(classes) != list(DIGITS) or getattr(forest, "n_features_in_", None) != N_FEATURES:
            raise ArtifactError(f"{name}: not a classifier of 8x8 digit images")
        _check_trees(forest, name)
        # One thread per call: the core runs requests on threads of its own, and joblib
        # workers inside a request would only contend with them for the same cores.
        forest.set_params(n_jobs=1)
        self._forest = forest

    @classmethod
    def load(cls, directory: Path = ARTIFACT_DIR) -> DigitClassifier:
        """Load and verify `digits.skops` (see `models.artifacts.load_artifact`)."""
        return cls(load_artifact(directory, ARTIFACT_FILE, TRUSTED_TYPES))

    @property
    def estimator(self) -> Any:
        """The fitted RandomForestClassifier."""
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


def _check_trees(forest: Any, name: str) -> None:
    """Refuse trees whose node indices point outside their own arrays."""
    for tree in (estimator.tree_ for estimator in getattr(forest, "estimators_", ())):
        nodes = np.arange(tree.node_count)
        left, right, feature = tree.children_left, tree.children_right, tree.feature
        leaf = left == -1
        internal = ~leaf
        # scikit-learn numbers nodes depth-first, so a child's index exceeds its parent's.
        consistent = (
            len(left) == len(right) == len(feature) == tree.node_count
            and bool(np.array_equal(leaf, right == -1))
            and bool(np.all((left[internal] > nodes[internal]) & (left[internal] < tree.node_count)))
            and bool(np.all((right[internal] > nodes[internal]) & (right[internal] < tree.node_count)))
            and bool(np.all((feature[internal] >= 0) & (feature[internal] < N_FEATURES)))
            and tree.value.shape == (tree.node_count, 1, len(DIGITS))
        )
        if not consistent:
            raise ArtifactError(f"{name}: a tree's node indices are out of range; the file is corrupt")
    if not getattr(forest, "estimators_", None):
        raise ArtifactError(f"{name}: the forest has no trees")
