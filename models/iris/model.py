"""The iris species classifier: four flower measurements in, species probabilities out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.artifacts import ArtifactError, display_path, load_artifact

ARTIFACT_DIR = Path(__file__).resolve().parent
ARTIFACT_FILE = "iris.skops"

# In the column order of `sklearn.datasets.load_iris().feature_names`, all in cm.
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
# `load_iris().target_names`, indexed by class number.
SPECIES = ("setosa", "versicolor", "virginica")

# Types in iris.skops that skops does not trust by default. Empty: a StandardScaler +
# LogisticRegression pipeline is all numpy arrays and default-trusted estimators.
TRUSTED_TYPES: tuple[str, ...] = ()


class IrisClassifier:
    """A fitted scikit-learn pipeline behind a plain-Python interface."""

    def __init__(self, pipeline: Any) -> None:
        classes = getattr(pipeline, "classes_", None)
        if classes is None or list(classes) != list(range(len(SPECIES))):
            raise ArtifactError(f"{display_path(ARTIFACT_DIR / ARTIFACT_FILE)}: not an iris classifier")
        self._pipeline = pipeline

    @classmethod
    def load(cls, directory: Path = ARTIFACT_DIR) -> IrisClassifier:
        """Load and verify `iris.skops` (see `models.artifacts.load_artifact`)."""
        return cls(load_artifact(directory, ARTIFACT_FILE, TRUSTED_TYPES))

    @property
    def estimator(self) -> Any:
        """The fitted scikit-learn pipeline (StandardScaler + LogisticRegression)."""
        return self._pipeline

    def predict(self, flowers: Sequence[Mapping[str, float]]) -> list[dict[str, Any]]:
        """`{"label", "probabilities"}` for each flower, in one vectorised model call."""
        if not flowers:
            return []
        rows = np.array([[float(flower[name]) for name in FEATURES] for flower in flowers], dtype=np.float64)
        probabilities = self._pipeline.predict_proba(rows)
        return [
            {
                "label": SPECIES[int(np.argmax(row))],
                "probabilities": {species: float(p) for species, p in zip(SPECIES, row, strict=True)},
            }
            for row in probabilities
        ]
