"""Train the digit classifier and write `digits.skops`, `digits.onnx` and `artifact.json`.

    python -m models.digits.train [--output-dir DIR]

RandomForestClassifier(n_estimators=200) on `load_digits`, a quarter held out. The
forest grows in steps of `STEP` trees with `warm_start` for the progress bar; scikit-learn
seeds each tree from `random_state` in order, so the result equals one 200-tree fit
(tests/models check that). Single-threaded: reproducible and gentle on small machines.

The serving form (`digits.onnx`) is converted from the fitted forest by skl2onnx and
written only if, on every `load_digits` image, ONNX Runtime gives the forest's most
probable digit and its probabilities within `model.PROBABILITY_TOLERANCE`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.artifact_writer import ServingForm, output_dir, print_written, write_artifact
from models.digits import model
from models.onnx_export import check_parity, sklearn_to_onnx

SEED = 0
N_ESTIMATORS = 200
STEP = 10
TEST_SIZE = 0.25  # 450 of the 1797 images, stratified by digit


@dataclass(frozen=True)
class HeldOut:
    """The test split: 8x8 images as 64 features (0..16), and their digits."""

    features: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class TrainingResult:
    forest: Any
    held_out: HeldOut
    accuracy: float


def split(seed: int = SEED) -> tuple[np.ndarray, np.ndarray, HeldOut]:
    """`load_digits` split into training features, training labels and the held-out set."""
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]
    from sklearn.model_selection import train_test_split  # type: ignore[import-untyped]

    features, labels = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=TEST_SIZE, stratify=labels, random_state=seed
    )
    return x_train, y_train, HeldOut(x_test, y_test)


def fit(seed: int = SEED, progress: bool = True) -> TrainingResult:
    """Grow the forest on the training split and score it on the held-out set."""
    from sklearn.ensemble import RandomForestClassifier  # type: ignore[import-untyped]
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    from tqdm import tqdm  # type: ignore[import-untyped]

    x_train, y_train, held_out = split(seed)
    forest = RandomForestClassifier(n_estimators=STEP, random_state=seed, n_jobs=1, warm_start=True)
    with tqdm(total=N_ESTIMATORS, desc="digits", unit="tree", disable=not progress) as bar, threadpool_limits(1):
        for n_estimators in range(STEP, N_ESTIMATORS + 1, STEP):
            forest.set_params(n_estimators=n_estimators)
            forest.fit(x_train, y_train)
            bar.update(STEP)
    forest.set_params(warm_start=False)
    accuracy = float(forest.score(held_out.features, held_out.labels))
    return TrainingResult(forest, held_out, accuracy)


def serving_form(forest: Any) -> ServingForm:
    """The forest as ONNX, after checking it predicts as the forest does on every `load_digits` image."""
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]

    data = sklearn_to_onnx(forest, model.N_FEATURES)
    features, _ = load_digits(return_X_y=True)
    check_parity(model.SERVING_FILE, data, forest, features, model.PROBABILITY_TOLERANCE)
    return ServingForm(model.SERVING_FILE, data)


def main(argv: Sequence[str] | None = None) -> int:
    directory = output_dir("python -m models.digits.train", "Train the digit classifier.", model.ARTIFACT_DIR, argv)

    result = fit()
    manifest = write_artifact(
        result.forest,
        directory,
        model.ARTIFACT_FILE,
        trusted_types=model.TRUSTED_TYPES,
        held_out_accuracy=result.accuracy,
        seed=SEED,
        training={
            "command": "python -m models.digits.train",
            "dataset": "sklearn.datasets.load_digits",
            "estimator": f"RandomForestClassifier(n_estimators={N_ESTIMATORS}, random_state={SEED})",
            "test_size": TEST_SIZE,
            "n_train": int(1797 - len(result.held_out.labels)),
            "n_held_out": len(result.held_out.labels),
        },
        serving=serving_form(result.forest),
    )
    print(f"held-out accuracy: {result.accuracy:.4f} on {len(result.held_out.labels)} images")
    print_written(manifest, directory)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
