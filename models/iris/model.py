"""The iris species classifier: four flower measurements in, species probabilities out.

`IrisClassifier.load()` serves the pipeline from its numpy serving form
(`iris-pipeline.npz`, see `models.iris.pipeline`) and never imports scikit-learn or
skops. The fitted scikit-learn pipeline it was taken from (`iris.skops`, the source of
truth) is `load_estimator()`, for training and tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.artifacts import ArtifactError, display_path, load_artifact, load_serving_arrays
from models.iris.pipeline import MEMBERS, CompiledPipeline

ARTIFACT_DIR = Path(__file__).resolve().parent
ARTIFACT_FILE = "iris.skops"
SERVING_FILE = "iris-pipeline.npz"

# In the column order of `sklearn.datasets.load_iris().feature_names`, all in cm.
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
# `load_iris().target_names`, indexed by class number.
SPECIES = ("setosa", "versicolor", "virginica")

# Types in iris.skops that skops does not trust by default. Empty: a StandardScaler +
# LogisticRegression pipeline is all numpy arrays and default-trusted estimators.
TRUSTED_TYPES: tuple[str, ...] = ()


class IrisClassifier:
    """A standardising logistic regression behind a plain-Python interface."""

    def __init__(self, pipeline: CompiledPipeline) -> None:
        if pipeline.n_features != len(FEATURES) or pipeline.n_classes != len(SPECIES):
            raise ArtifactError(f"{pipeline.source}: not an iris classifier")
        self._pipeline = pipeline

    @classmethod
    def load(cls, directory: Path = ARTIFACT_DIR) -> IrisClassifier:
        """Load `iris-pipeline.npz`, verified against `artifact.json` and checked for consistency."""
        arrays = load_serving_arrays(directory, SERVING_FILE, MEMBERS)
        return cls(CompiledPipeline(arrays, len(FEATURES), source=display_path(directory / SERVING_FILE)))

    @property
    def pipeline(self) -> CompiledPipeline:
        """The compiled pipeline."""
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


def load_estimator(directory: Path = ARTIFACT_DIR) -> Any:
    """The fitted scikit-learn pipeline (StandardScaler + LogisticRegression) from `iris.skops`.

    Imports scikit-learn and skops (seconds): for training and tests, not for serving.
    """
    pipeline = load_artifact(directory, ARTIFACT_FILE, TRUSTED_TYPES)
    classes = getattr(pipeline, "classes_", None)
    if classes is None or list(classes) != list(range(len(SPECIES))):
        raise ArtifactError(f"{display_path(directory / ARTIFACT_FILE)}: not an iris classifier")
    return pipeline
