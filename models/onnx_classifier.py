"""A scikit-learn classifier converted to ONNX (`models/onnx_export.py`), served by ONNX Runtime.

`OnnxClassifier.load(directory, filename, ...)` reads the serving form after its sha256
check against `artifact.json`, makes sure the graph takes float32 rows of the expected
width and gives one probability per class, and answers `predict_proba` with numpy and
ONNX Runtime alone (no scikit-learn, scipy or skops).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from serving.kit import ArtifactError, OnnxModel, OnnxModelError, display_path, load_serving_bytes

# What skl2onnx names them (checked when converting).
INPUT_NAME = "X"
LABEL_OUTPUT = "label"
PROBABILITIES_OUTPUT = "probabilities"


class OnnxClassifier:
    """Class probabilities from rows of `n_features` numbers, through an ONNX graph."""

    def __init__(self, onnx: OnnxModel, n_features: int, n_classes: int, what: str) -> None:
        """Check that `onnx` maps float rows [N, n_features] to probabilities [N, n_classes].

        `what` completes the refusal "<file>: not <what>".
        """
        inputs = [(spec.name, spec.element_type, spec.shape and spec.shape[1:]) for spec in onnx.inputs]
        outputs = {spec.name: (spec.element_type, spec.shape and spec.shape[1:]) for spec in onnx.outputs}
        if inputs != [(INPUT_NAME, "float", (n_features,))] or outputs.get(PROBABILITIES_OUTPUT) != (
            "float",
            (n_classes,),
        ):
            found = "; ".join(spec.describe() for spec in (*onnx.inputs, *onnx.outputs))
            raise ArtifactError(f"{onnx.name}: not {what} (found {found})")
        self.onnx = onnx
        self.n_features = n_features
        self.n_classes = n_classes

    @classmethod
    def load(cls, directory: Path, filename: str, n_features: int, n_classes: int, what: str) -> OnnxClassifier:
        """The verified serving form `directory/filename`; `ArtifactError` naming the file otherwise."""
        data = load_serving_bytes(directory, filename)
        try:
            onnx = OnnxModel(data, name=display_path(directory / filename))
        except OnnxModelError as exc:
            raise ArtifactError(str(exc)) from None
        return cls(onnx, n_features, n_classes, what)

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """float32 probabilities (n_rows, n_classes), in one graph run.

        `rows` is anything of shape (n_rows, n_features), cast to float32 as the graph
        takes it. Raises ValueError for another shape or a value that is not finite as
        float32 (a tree would route NaN by a missing-value rule scikit-learn's may not match).
        """
        with np.errstate(over="ignore"):  # a value too large for float32 becomes inf, refused below
            values = np.asarray(rows, dtype=np.float32)
        if values.ndim != 2 or values.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got shape {values.shape}")
        if not np.all(np.isfinite(values)):
            raise ValueError("features must be finite")
        if len(values) == 0:
            return np.zeros((0, self.n_classes), dtype=np.float32)
        probabilities = self.onnx.run({INPUT_NAME: values}, outputs=[PROBABILITIES_OUTPUT])[PROBABILITIES_OUTPUT]
        # float32 sums may land a hair outside [0, 1]; the output schemas promise probabilities.
        return np.clip(probabilities, 0.0, 1.0)
