"""The Iris handler on known flowers and on the held-out split."""

from __future__ import annotations

from typing import Any

import pytest

from handlers import iris
from models.iris.model import SPECIES
from models.iris.train import split

ACCURACY_FLOOR = 0.9


def test_held_out_accuracy_through_the_handler(iris_model: Any) -> None:
    _, _, held_out = split()
    results = iris.predict_batch(iris_model, held_out.payloads())
    predicted = [SPECIES.index(result["label"]) for result in results]
    accuracy = sum(p == int(t) for p, t in zip(predicted, held_out.labels, strict=True)) / len(predicted)
    assert accuracy >= ACCURACY_FLOOR


@pytest.mark.parametrize(
    ("flower", "species"),
    [
        pytest.param((5.1, 3.5, 1.4, 0.2), "setosa", id="setosa-first-row"),
        pytest.param((7.0, 3.2, 4.7, 1.4), "versicolor", id="versicolor-first-row"),
        pytest.param((6.3, 3.3, 6.0, 2.5), "virginica", id="virginica-first-row"),
    ],
)
def test_known_flowers(iris_model: Any, flower: tuple[float, ...], species: str) -> None:
    payload = dict(zip(iris.INPUT_SCHEMA["required"], flower, strict=True))
    result = iris.predict(iris_model, payload)
    assert result["label"] == species
    assert sum(result["probabilities"].values()) == pytest.approx(1.0)
    assert max(result["probabilities"], key=result["probabilities"].get) == species


def test_probabilities_are_plain_floats(iris_model: Any) -> None:
    result = iris.predict(iris_model, iris.INPUT_SCHEMA["examples"][0])
    assert all(type(p) is float for p in result["probabilities"].values())
    assert type(result["label"]) is str
