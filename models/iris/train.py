"""Train the iris classifier and write `iris.skops`, `iris.onnx` and `artifact.json`.

    python -m models.iris.train [--output-dir DIR]

Reproducible: a fixed split and seed, and BLAS held to one thread (a different thread
count may sum in a different order and change the last bits of the coefficients).

The serving form (`iris.onnx`) is converted from the fitted pipeline by skl2onnx and
written only if, on every `load_iris` flower, ONNX Runtime gives the pipeline's species
and its probabilities within `model.PROBABILITY_TOLERANCE`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.artifact_writer import ServingForm, output_dir, print_written, write_artifact
from models.iris import model
from models.onnx_export import check_parity, sklearn_to_onnx

SEED = 0
TEST_SIZE = 0.3  # 45 of the 150 flowers, 15 per species, never seen in training


@dataclass(frozen=True)
class HeldOut:
    """The test split: features in `model.FEATURES` order and class numbers."""

    features: np.ndarray
    labels: np.ndarray

    def payloads(self) -> list[dict[str, float]]:
        """The held-out flowers as request bodies for the Iris handler."""
        return [dict(zip(model.FEATURES, map(float, row), strict=True)) for row in self.features]


@dataclass(frozen=True)
class TrainingResult:
    pipeline: Any
    held_out: HeldOut
    accuracy: float


def split(seed: int = SEED) -> tuple[np.ndarray, np.ndarray, HeldOut]:
    """`load_iris` split into training features, training labels and the held-out set."""
    from sklearn.datasets import load_iris  # type: ignore[import-untyped]
    from sklearn.model_selection import train_test_split  # type: ignore[import-untyped]

    data = load_iris()
    if tuple(data.target_names) != model.SPECIES:
        raise RuntimeError(f"load_iris names its species {list(data.target_names)}, not {list(model.SPECIES)}")
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=TEST_SIZE, stratify=data.target, random_state=seed
    )
    return x_train, y_train, HeldOut(x_test, y_test)


def fit(seed: int = SEED, progress: bool = True) -> TrainingResult:
    """Fit StandardScaler + LogisticRegression on the training split; score the rest."""
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
    from sklearn.pipeline import make_pipeline  # type: ignore[import-untyped]
    from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    from tqdm import tqdm  # type: ignore[import-untyped]

    with tqdm(total=3, desc="iris", unit="step", disable=not progress) as bar, threadpool_limits(limits=1):
        bar.set_postfix_str("split")
        x_train, y_train, held_out = split(seed)
        bar.update()
        bar.set_postfix_str("fit")
        pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
        pipeline.fit(x_train, y_train)
        bar.update()
        bar.set_postfix_str("evaluate")
        accuracy = float(pipeline.score(held_out.features, held_out.labels))
        bar.update()
    return TrainingResult(pipeline, held_out, accuracy)


def serving_form(pipeline: Any) -> ServingForm:
    """The pipeline as ONNX, after checking it predicts as the pipeline does on every `load_iris` flower."""
    from sklearn.datasets import load_iris  # type: ignore[import-untyped]

    data = sklearn_to_onnx(pipeline, len(model.FEATURES))
    check_parity(model.SERVING_FILE, data, pipeline, load_iris().data, model.PROBABILITY_TOLERANCE)
    return ServingForm(model.SERVING_FILE, data)


def main(argv: Sequence[str] | None = None) -> int:
    directory = output_dir("python -m models.iris.train", "Train the iris classifier.", model.ARTIFACT_DIR, argv)

    result = fit()
    manifest = write_artifact(
        result.pipeline,
        directory,
        model.ARTIFACT_FILE,
        trusted_types=model.TRUSTED_TYPES,
        held_out_accuracy=result.accuracy,
        seed=SEED,
        training={
            "command": "python -m models.iris.train",
            "dataset": "sklearn.datasets.load_iris",
            "estimator": "StandardScaler + LogisticRegression(max_iter=1000)",
            "test_size": TEST_SIZE,
            "n_train": 150 - len(result.held_out.labels),
            "n_held_out": len(result.held_out.labels),
        },
        serving=serving_form(result.pipeline),
    )
    print(f"held-out accuracy: {result.accuracy:.4f} on {len(result.held_out.labels)} flowers")
    print_written(manifest, directory)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
