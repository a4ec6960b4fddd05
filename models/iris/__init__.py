"""The Iris example model: a scikit-learn pipeline trained on `load_iris`.

`model.IrisClassifier` serves it from its numpy serving form (`pipeline`), `train`
rebuilds `iris.skops`, `iris-pipeline.npz` and `artifact.json`.
"""
