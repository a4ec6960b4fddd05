"""The Iris example model: a scikit-learn pipeline trained on `load_iris`.

`model.IrisClassifier` serves it, `train` rebuilds `iris.skops` and `artifact.json`.
"""
