"""A fitted StandardScaler + LogisticRegression pipeline as four numpy arrays.

`compile_pipeline` takes the arrays out of the fitted scikit-learn pipeline (the
*serving form*, `iris-pipeline.npz`); `CompiledPipeline` checks them and predicts with
numpy alone, so serving never imports scikit-learn (seconds of start-up).

| name | dtype, shape | meaning |
| --- | --- | --- |
| `mean` | float64 (F,) | `StandardScaler.mean_` |
| `scale` | float64 (F,) | `StandardScaler.scale_` |
| `coef` | float64 (C, F) | `LogisticRegression.coef_` |
| `intercept` | float64 (C,) | `LogisticRegression.intercept_` |

The arithmetic is scikit-learn 1.9's, step by step, so the probabilities are bit for bit
`pipeline.predict_proba` (tests/models check every `load_iris` row, alone and in
batches): `(X - mean) / scale`; `X @ coef.T + intercept`; then
`sklearn.utils.extmath.softmax` (subtract the row's maximum, exp, divide by the row's
sum), which `LogisticRegression.predict_proba` uses for more than two classes. The
matrix product goes to BLAS, whose result can depend on memory layout: scikit-learn's
fitted `coef_` is Fortran-ordered, so its `coef_.T` is C-contiguous, and so is ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

import numpy as np

from models.artifacts import ArtifactError

# name -> (dtype on disk, number of dimensions), for `load_serving_arrays`.
MEMBERS: dict[str, tuple[str, int]] = {
    "mean": ("<f8", 1),
    "scale": ("<f8", 1),
    "coef": ("<f8", 2),
    "intercept": ("<f8", 1),
}


def compile_pipeline(pipeline: Any) -> dict[str, np.ndarray]:
    """The serving arrays of a fitted `make_pipeline(StandardScaler(), LogisticRegression())`.

    Reads only the estimators' attributes, so it needs no scikit-learn import of its own.
    Raises ValueError for a pipeline these arrays cannot represent exactly (other steps,
    a scaler without centring or scaling, two classes, which use the logistic function).
    """
    steps = [type(step).__name__ for _, step in pipeline.steps]
    if steps != ["StandardScaler", "LogisticRegression"]:
        raise ValueError(f"expected StandardScaler + LogisticRegression, found {' + '.join(steps)}")
    scaler, classifier = (step for _, step in pipeline.steps)
    if not (scaler.with_mean and scaler.with_std) or len(classifier.classes_) < 3:
        raise ValueError("only a centring and scaling StandardScaler and a multinomial LogisticRegression compile")
    return {
        "mean": np.asarray(scaler.mean_, dtype="<f8"),
        "scale": np.asarray(scaler.scale_, dtype="<f8"),
        "coef": np.ascontiguousarray(classifier.coef_, dtype="<f8"),
        "intercept": np.asarray(classifier.intercept_, dtype="<f8"),
    }


class CompiledPipeline:
    """Checked serving arrays of the pipeline, and its `predict_proba`. Read-only, thread-safe."""

    def __init__(self, arrays: Mapping[str, np.ndarray], n_features: int, source: str) -> None:
        """Check `arrays` (dtypes and dimensions as in `MEMBERS`) for `n_features` inputs.

        A damaged or crafted file raises `ArtifactError` naming `source` and the problem.
        """
        self.source = source  # the file's name in messages
        for member, (dtype, ndim) in MEMBERS.items():
            array = arrays.get(member)
            if not isinstance(array, np.ndarray) or array.dtype != np.dtype(dtype) or array.ndim != ndim:
                self._refuse(f"`{member}` is missing or not a {ndim}-d array of {dtype}")
        mean, scale, coef, intercept = (arrays[member] for member in MEMBERS)
        n_classes = len(intercept)
        if mean.shape != (n_features,) or scale.shape != (n_features,) or coef.shape != (n_classes, n_features):
            self._refuse(f"the arrays do not describe {n_features} features and {n_classes} classes")
        if n_classes < 3:
            self._refuse("fewer than three classes")
        if not all(np.all(np.isfinite(array)) for array in (mean, scale, coef, intercept)):
            self._refuse("a value is not a finite number")
        if not np.all(scale > 0):
            self._refuse("a scale is not positive")
        self._mean = mean
        self._scale = scale
        self._coef_t = np.ascontiguousarray(coef.T)  # the layout of scikit-learn's coef_.T (see module doc)
        self._intercept = intercept
        self.n_features = n_features
        self.n_classes = n_classes

    def _refuse(self, problem: str) -> NoReturn:
        raise ArtifactError(f"{self.source}: {problem}; the file is corrupt or inconsistent")

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (n_rows, n_classes), for rows of `n_features` floats.

        Raises ValueError for another shape or a value that is not finite.
        """
        values = np.array(rows, dtype=np.float64)  # a copy: the steps below work in place
        if values.ndim != 2 or values.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got shape {values.shape}")
        if not np.all(np.isfinite(values)):
            raise ValueError("features must be finite")
        # StandardScaler.transform
        values -= self._mean
        values /= self._scale
        # LogisticRegression.decision_function
        scores: np.ndarray = values @ self._coef_t + self._intercept
        # sklearn.utils.extmath.softmax(scores, copy=False)
        scores -= scores.max(axis=1).reshape(-1, 1)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1).reshape(-1, 1)
        return scores
