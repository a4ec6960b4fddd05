"""Iris species from four flower measurements in cm (scikit-learn logistic regression).

Trained on scikit-learn's copy of Fisher's iris data set; see models/README.md.
"""

from __future__ import annotations

from typing import Any

from models.iris.model import FEATURES, SPECIES, IrisClassifier

NAME = "Iris"  # served at POST /v1/Iris
VERSION = "1.0.0"
# Four numbers through a fixed ONNX graph take microseconds and cannot hang: no time
# budget, so calls stay on the request thread instead of going to a call thread and back,
# which cost more than the model (a table of 500 rows: 16 hand-offs; docs/security.md,
# "Time budget"). BigQuery's max_batching_rows is then the route's ceiling, 10,000.
TIMEOUT_S = 0

# Measured flowers in the data set span 0.1 to 7.9 cm. A length must be positive; the
# 30 cm ceiling is far above any iris yet rejects millimetres sent as centimetres (a
# 51 mm sepal as "51"), where the model would extrapolate and answer with false confidence.
_MEASUREMENT = {"type": "number", "exclusiveMinimum": 0, "maximum": 30}
_DESCRIPTIONS = {
    "sepal_length": "Sepal length in cm (the data set: 4.3 to 7.9).",
    "sepal_width": "Sepal width in cm (the data set: 2.0 to 4.4).",
    "petal_length": "Petal length in cm (the data set: 1.0 to 6.9).",
    "petal_width": "Petal width in cm (the data set: 0.1 to 2.5).",
}

INPUT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {name: {**_MEASUREMENT, "description": _DESCRIPTIONS[name]} for name in FEATURES},
    "required": list(FEATURES),
    "additionalProperties": False,
    "examples": [
        {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
        {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3},
    ],
}

_PROBABILITY = {"type": "number", "minimum": 0, "maximum": 1}
OUTPUT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "label": {"enum": list(SPECIES), "description": "The most probable species."},
        "probabilities": {
            "type": "object",
            "description": "Probability of each species; they sum to 1.",
            "properties": {species: _PROBABILITY for species in SPECIES},
            "required": list(SPECIES),
            "additionalProperties": False,
        },
    },
    "required": ["label", "probabilities"],
    "additionalProperties": False,
    "examples": [
        {"label": "setosa", "probabilities": {"setosa": 0.98, "versicolor": 0.02, "virginica": 0.0}},
    ],
}


def setup() -> IrisClassifier:
    """Load and verify the committed serving form (models/iris/iris.onnx) for ONNX Runtime."""
    return IrisClassifier.load()


def predict(model: IrisClassifier, payload: dict[str, Any]) -> dict[str, Any]:
    """The most probable species and every species' probability."""
    return model.predict([payload])[0]


def predict_batch(model: IrisClassifier, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One result per payload, in order, from a single model call."""
    return model.predict(payloads)
