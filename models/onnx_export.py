"""Converting a trained model to the ONNX bytes the server runs (training environment only).

    data = sklearn_to_onnx(estimator, n_features=64)  # scikit-learn: pipelines, forests, boosting
    data = torch_to_onnx(module, n_features=13)  # a PyTorch module taking rows of floats

scikit-learn goes through skl2onnx with `zipmap=False`, so a classifier's probabilities
are a float32 tensor [N, classes] next to its labels [N] rather than a sequence of dicts;
the input is float32 [N, n_features]. The opsets are pinned, so that the bytes depend
only on the estimator and the library versions the manifest records (skl2onnx writes no
timestamps or ids). HistGradientBoosting models convert too: see `_integer_missing_flags`.
Imports skl2onnx, onnx and torch only when called: the server never installs them
(requirements-train.txt, requirements-export.txt).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from models.onnx_classifier import INPUT_NAME, LABEL_OUTPUT, PROBABILITIES_OUTPUT, OnnxClassifier
from serving.kit import OnnxModel

# ONNX's main domain and the classic-ML one (TreeEnsembleClassifier, LinearClassifier).
TARGET_OPSET = {"": 21, "ai.onnx.ml": 3}
# torch.onnx's TorchScript exporter writes this opset (the newest it knows well).
TORCH_OPSET = 18


def sklearn_to_onnx(estimator: Any, n_features: int) -> bytes:
    """The serialized ONNX model of a fitted estimator taking rows of `n_features` float32 values.

    A classifier's graph is `X` -> `label` [N], `probabilities` [N, classes]; a regressor's
    is `X` -> `variable` [N, 1] (skl2onnx's names).
    """
    from skl2onnx import to_onnx  # type: ignore[import-untyped]
    from sklearn.base import is_classifier  # type: ignore[import-untyped]

    with _integer_missing_flags():
        model = to_onnx(
            estimator,
            np.zeros((1, n_features), dtype=np.float32),
            options={"zipmap": False} if is_classifier(estimator) else None,
            target_opset=TARGET_OPSET,
        )
    names = [output.name for output in model.graph.output]
    if is_classifier(estimator) and [model.graph.input[0].name, *names] != [
        INPUT_NAME,
        LABEL_OUTPUT,
        PROBABILITIES_OUTPUT,
    ]:
        raise RuntimeError(f"skl2onnx named the graph's input and outputs {model.graph.input[0].name}, {names}")
    return bytes(model.SerializeToString())


@contextlib.contextmanager
def _integer_missing_flags() -> Iterator[None]:
    """Work around skl2onnx 1.20.0's HistGradientBoosting converter with onnx 1.23.

    The converter copies each split's `missing_go_to_left` (a numpy bool) into the
    TreeEnsemble attribute `nodes_missing_value_tracks_true`, a list of ints, and onnx's
    protobuf refuses booleans there ("TypeError: Field onnx.AttributeProto.ints: Expected
    an int, got a boolean"), so every HistGradientBoostingClassifier/Regressor fails to
    convert. The converter looks `add_node` up in skl2onnx.common.tree_ensemble at each
    call, so for the conversion's duration that name is a wrapper passing the flag as the
    int it means (True -> 1: a missing value follows the true branch, as in scikit-learn).
    The name is the module's, so convert in one thread at a time (training scripts do).
    No upstream report of this exact error was found; the code path is the one
    https://github.com/onnx/sklearn-onnx/issues/1253 describes
    (`add_tree_to_attribute_pairs_hist_gradient_boosting` copies `missing_go_to_left`).
    Remove this when a skl2onnx release casts the flag itself: tests/models/test_onnx_export.py
    fails then (it checks that the plain conversion still breaks, and that this one
    matches scikit-learn on rows with missing values).
    """
    from skl2onnx.common import tree_ensemble

    original = tree_ensemble.add_node

    def add_node(*args: Any, **kwargs: Any) -> Any:
        flag = kwargs.get("nodes_missing_value_tracks_true")
        if isinstance(flag, bool | np.bool_):
            kwargs["nodes_missing_value_tracks_true"] = int(flag)
        return original(*args, **kwargs)

    tree_ensemble.add_node = add_node
    try:
        yield
    finally:
        tree_ensemble.add_node = original


def torch_to_onnx(module: Any, n_features: int, input_name: str = "features", output_name: str = "scores") -> bytes:
    """The serialized ONNX model of a PyTorch `module` mapping float32 rows [N, n_features] to one output.

    The batch dimension is dynamic (named `batch`), so the server can stack requests into
    one run. Uses the TorchScript exporter (`dynamo=False`), which needs nothing beyond
    torch; the module is put in eval mode first (dropout and batch norm as at inference).
    """
    import torch

    module.eval()
    buffer = io.BytesIO()
    example = torch.zeros((2, n_features), dtype=torch.float32)
    with warnings.catch_warnings():
        # The TorchScript exporter, and the torch internals it calls, warn that they are
        # deprecated in favour of dynamo=True, which needs onnxscript (not installed here);
        # it still exports such modules exactly (checked in tests/cli/test_scaffold_matrix.py).
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            (example,),
            buffer,
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
            opset_version=TORCH_OPSET,
            dynamo=False,
        )
    return buffer.getvalue()


def check_parity(name: str, data: bytes, estimator: Any, rows: np.ndarray, tolerance: float) -> None:
    """Raise RuntimeError unless the ONNX model `data` agrees with `estimator` on `rows`.

    Agreeing means the same label as `estimator.predict` on every row, in one batch and
    row by row, and probabilities within `tolerance` of `estimator.predict_proba`.
    """
    n_classes = len(estimator.classes_)
    served = OnnxClassifier(OnnxModel(data, name=name), rows.shape[1], n_classes, "a classifier")
    expected = estimator.predict_proba(rows)
    batch = served.predict_proba(rows)
    one_by_one = np.concatenate([served.predict_proba(rows[i : i + 1]) for i in range(len(rows))])
    for got in (batch, one_by_one):
        labels = estimator.classes_[np.argmax(got, axis=1)]
        wrong = np.flatnonzero(labels != estimator.predict(rows))
        if len(wrong):
            raise RuntimeError(f"{name}: ONNX Runtime's label differs from scikit-learn's on rows {wrong[:10]}")
        worst = float(np.max(np.abs(got - expected)))
        if worst > tolerance:
            raise RuntimeError(f"{name}: probabilities differ from scikit-learn's by {worst:.3g} > {tolerance:g}")
