"""A fitted random forest as flat numpy arrays: scikit-learn's predictions, without scikit-learn.

`compile_forest` turns a fitted `RandomForestClassifier` into five arrays over all its
trees' nodes, concatenated (the *serving form*, `digits-forest.npz`); `CompiledForest`
checks them and predicts from them with numpy alone. Importing scikit-learn (through
skops) costs seconds of a server's start-up, and its `predict_proba` about 6.5 ms per
call whatever the batch size (joblib wraps each of the 200 trees in a task); this costs
about 0.1 ms for one row.

The arrays, for N nodes of T trees and C classes:

| name | dtype, shape | meaning |
| --- | --- | --- |
| `feature` | int32 (N,) | the feature an internal node compares; 0 for leaves |
| `threshold` | float64 (N,) | go left when feature <= threshold; `-inf` marks a leaf |
| `right` | int32 (N,) | global index of the right child; a leaf's own index |
| `proba` | float64 (N, C) | class probabilities at the node (`tree_.value[:, 0, :]`) |
| `roots` | int32 (T,) | global index of each tree's root, in the forest's order |

scikit-learn numbers a tree's nodes depth first, so the left child of internal node i is
i + 1 and is not stored. A leaf sends every row "right" to itself, so after as many steps
as the deepest tree every row of every tree sits on its leaf.

The result is bit for bit the forest's `predict_proba` (tests/models check every
`load_digits` row): features are compared as float32, as scikit-learn casts them; a
leaf's probabilities are `tree_.value` as stored (since scikit-learn 1.4 a classifier
tree stores class fractions, and `DecisionTreeClassifier.predict_proba` returns them
without renormalising); and the trees' probabilities are summed in the forest's order,
then divided by the number of trees, as `RandomForestClassifier.predict_proba` does with
`n_jobs=1`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

import numpy as np

from models.artifacts import ArtifactError

# name -> (dtype on disk, number of dimensions), for `load_serving_arrays`.
MEMBERS: dict[str, tuple[str, int]] = {
    "feature": ("<i4", 1),
    "threshold": ("<f8", 1),
    "right": ("<i4", 1),
    "proba": ("<f8", 2),
    "roots": ("<i4", 1),
}
# How far a node's class probabilities may sum from 1 (they are fractions, rounded).
PROBABILITY_SUM_TOLERANCE = 1e-9


def compile_forest(forest: Any) -> dict[str, np.ndarray]:
    """The serving arrays of a fitted single-output `RandomForestClassifier` (see the module doc).

    Reads only the estimator's attributes, so it needs no scikit-learn import of its own.
    Raises ValueError for a forest these arrays cannot represent exactly.
    """
    features, thresholds, rights, probas, roots = [], [], [], [], []
    offset = 0
    for estimator in forest.estimators_:
        tree = estimator.tree_
        count = int(tree.node_count)
        nodes = np.arange(count)
        leaf = tree.children_left == -1
        if tree.n_outputs != 1 or not np.array_equal(tree.children_left[~leaf], nodes[~leaf] + 1):
            raise ValueError("only single-output trees numbered depth first can be compiled")
        features.append(np.where(leaf, 0, tree.feature))
        thresholds.append(np.where(leaf, -np.inf, tree.threshold))
        rights.append(np.where(leaf, nodes, tree.children_right) + offset)
        probas.append(tree.value[:, 0, :])
        roots.append(offset)
        offset += count
    if offset >= np.iinfo(np.int32).max:
        raise ValueError(f"{offset} nodes do not fit int32 indices")
    return {
        "feature": np.concatenate(features).astype("<i4"),
        "threshold": np.concatenate(thresholds).astype("<f8"),
        "right": np.concatenate(rights).astype("<i4"),
        "proba": np.ascontiguousarray(np.concatenate(probas), dtype="<f8"),
        "roots": np.asarray(roots, dtype="<i4"),
    }


class CompiledForest:
    """Checked serving arrays of a random forest, and its `predict_proba`.

    Safe to share between threads and forked processes: it only reads its arrays.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], n_features: int, source: str) -> None:
        """Check `arrays` (dtypes and dimensions as in `MEMBERS`) for a forest over `n_features`.

        Every index the prediction loop follows is bounds-checked here, because numpy
        indexing would otherwise read garbage or raise mid-request: a crafted or damaged
        file raises `ArtifactError` naming `source` and what is inconsistent.
        """
        self.source = source  # the file's name in messages
        for member, (dtype, ndim) in MEMBERS.items():
            array = arrays.get(member)
            if not isinstance(array, np.ndarray) or array.dtype != np.dtype(dtype) or array.ndim != ndim:
                self._refuse(f"`{member}` is missing or not a {ndim}-d array of {dtype}")
        feature, threshold, right, proba, roots = (arrays[member] for member in MEMBERS)
        count = len(threshold)
        if count == 0 or len(feature) != count or len(right) != count or proba.shape[0] != count:
            self._refuse("`feature`, `threshold`, `right` and `proba` must describe the same nodes")
        if proba.shape[1] == 0 or len(roots) == 0:
            self._refuse("the forest has no classes or no trees")
        nodes = np.arange(count)
        leaf = threshold == -np.inf
        internal = ~leaf
        if not np.all(np.isfinite(threshold[internal])):
            self._refuse("an internal node's threshold is not a finite number")
        if not np.all((feature >= 0) & (feature < n_features)):
            self._refuse(f"a node's feature is outside 0..{n_features - 1}")
        if not np.array_equal(right[leaf], nodes[leaf]):
            self._refuse("a leaf's right child is not itself")
        # The left child (i + 1) comes first, so the right child lies beyond it.
        if not np.all((right[internal] > nodes[internal] + 1) & (right[internal] < count)):
            self._refuse("an internal node's children are out of range")
        if not (np.all(np.isfinite(proba)) and np.all(proba >= 0)) or not np.all(
            np.abs(proba.sum(axis=1) - 1) <= PROBABILITY_SUM_TOLERANCE
        ):
            self._refuse("a node's class probabilities are not a distribution")
        if not np.all((roots >= 0) & (roots < count)):
            self._refuse("a tree's root is out of range")
        # Every node is a root or the child of exactly one node: with children beyond
        # their parents, that makes the arrays a forest of trees covering every node,
        # so the walk below visits each node once.
        parents = np.bincount(np.concatenate([roots, nodes[internal] + 1, right[internal]]), minlength=count)
        if not np.all(parents == 1):
            self._refuse("the nodes do not form trees (a node has no parent or several)")
        self._depth = _depth(roots, internal, right)

        self._feature = feature.astype(np.intp)
        self._threshold = threshold
        self._right = right.astype(np.intp)
        self._proba = proba
        self._roots = roots.astype(np.intp)
        self.n_features = n_features
        self.n_classes = int(proba.shape[1])
        self.n_trees = len(roots)
        self.n_nodes = count

    def _refuse(self, problem: str) -> NoReturn:
        raise ArtifactError(f"{self.source}: {problem}; the file is corrupt or inconsistent")

    @property
    def depth(self) -> int:
        """Edges on the longest path from a root to a leaf, computed from the arrays."""
        return self._depth

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """Mean class probabilities of the trees, shape (n_rows, n_classes), for finite rows.

        `rows` is anything of shape (n_rows, n_features) (or (n_features,) for one row);
        it is cast to float32 as scikit-learn does. Raises ValueError for another shape or
        a value that is not finite as float32 (scikit-learn would route NaN by its own
        missing-value rule, which this form does not record).
        """
        with np.errstate(over="ignore"):  # a value too large for float32 becomes inf, refused below
            values = np.asarray(rows, dtype=np.float32)
        if values.ndim == 1:
            values = values.reshape(1, -1)
        if values.ndim != 2 or values.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got shape {values.shape}")
        if not np.all(np.isfinite(values)):
            raise ValueError("features must be finite")
        n_rows = values.shape[0]
        if n_rows == 0:
            return np.zeros((0, self.n_classes))
        flat = np.ascontiguousarray(values).ravel()
        row_start = (np.arange(n_rows, dtype=np.intp) * self.n_features)[:, None]
        index = np.broadcast_to(self._roots, (n_rows, self.n_trees)).copy()  # (rows, trees)
        for _ in range(self._depth):
            # float32 features against float64 thresholds: numpy widens the features
            # exactly, as scikit-learn's Cython comparison does.
            go_left = flat[row_start + self._feature[index]] <= self._threshold[index]
            index = np.where(go_left, index + 1, self._right[index])
        # (trees, rows, classes) summed over the trees in order, as the forest accumulates them.
        total: np.ndarray = np.add.reduce(self._proba[index.T], axis=0)
        return total / self.n_trees


def _depth(roots: np.ndarray, internal: np.ndarray, right: np.ndarray) -> int:
    """Length of the longest root-to-leaf path, walking the trees level by level."""
    frontier = roots.astype(np.intp)
    depth = 0
    while True:
        frontier = frontier[internal[frontier]]
        if len(frontier) == 0:
            return depth
        frontier = np.concatenate([frontier + 1, right[frontier]])
        depth += 1
