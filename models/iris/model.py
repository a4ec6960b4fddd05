"""The iris species classifier: four flower measurements in, species probabilities out.

`IrisClassifier.load()` serves the pipeline from its ONNX serving form (`iris.onnx`,
converted by skl2onnx when training) with ONNX Runtime, and never imports scikit-learn or
skops. The fitted scikit-learn pipeline it was converted from (`iris.skops`, the source
of truth) is `load_estimator()`, for training and tests.

The graph computes in float32 where scikit-learn uses float64: its probabilities differ
by at most `PROBABILITY_TOLERANCE`, and every `load_iris` flower gets scikit-learn's
species (tests/models/test_serving_forms.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.onnx_classifier import OnnxClassifier
from serving.kit import ArtifactError, OnnxModel, display_path, json_float_rows, load_artifact

ARTIFACT_DIR = Path(__file__).resolve().parent
ARTIFACT_FILE = "iris.skops"
SERVING_FILE = "iris.onnx"
# Largest difference from scikit-learn's float64 probabilities (float32 arithmetic).
PROBABILITY_TOLERANCE = 1e-6

# In the column order of `sklearn.datasets.load_iris().feature_names`, all in cm.
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
# `load_iris().target_names`, indexed by class number.
SPECIES = ("setosa", "versicolor", "virginica")

# Types in iris.skops that skops does not trust by default. Empty: a StandardScaler +
# LogisticRegression pipeline is all numpy arrays and default-trusted estimators.
TRUSTED_TYPES: tuple[str, ...] = ()


class IrisClassifier:
    """A standardising logistic regression behind a plain-Python interface."""

    def __init__(self, classifier: OnnxClassifier) -> None:
        self._classifier = classifier

    @classmethod
    def load(cls, directory: Path = ARTIFACT_DIR) -> IrisClassifier:
        """Load `iris.onnx`, verified against `artifact.json`."""
        return cls(OnnxClassifier.load(directory, SERVING_FILE, len(FEATURES), len(SPECIES), "an iris classifier"))

    @property
    def onnx(self) -> OnnxModel:
        """The ONNX model served."""
        return self._classifier.onnx

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """float32 probabilities (n_rows, 3) for rows of 4 finite measurements; ValueError otherwise."""
        return self._classifier.predict_proba(rows)

    def predict(self, flowers: Sequence[Mapping[str, float]]) -> list[dict[str, Any]]:
        """`{"label", "probabilities"}` for each flower, in one vectorised model call."""
        if not flowers:
            return []
        rows = np.array([[float(flower[name]) for name in FEATURES] for flower in flowers], dtype=np.float64)
        probabilities = self.predict_proba(rows)
        # Whole-batch conversions: per row, numpy's call overhead cost more than the model.
        labels = probabilities.argmax(axis=1).tolist()
        return [
            {"label": SPECIES[label], "probabilities": dict(zip(SPECIES, row, strict=True))}
            for label, row in zip(labels, json_float_rows(probabilities), strict=True)
        ]


def load_estimator(directory: Path = ARTIFACT_DIR) -> Any:
    """The fitted scikit-learn pipeline (StandardScaler + LogisticRegression) from `iris.skops`.

    Imports scikit-learn and skops (seconds): for training and tests, not for serving.
    """
    pipeline = load_artifact(directory, ARTIFACT_FILE, TRUSTED_TYPES)
    classes = getattr(pipeline, "classes_", None)
    if classes is None or list(classes) != list(range(len(SPECIES))):
        raise ArtifactError(f"{display_path(directory / ARTIFACT_FILE)}: not an iris classifier")
    return pipeline
