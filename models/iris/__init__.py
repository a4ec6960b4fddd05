"""The Iris example model: a scikit-learn pipeline trained on `load_iris`.

`model.IrisClassifier` serves it from its ONNX serving form with ONNX Runtime, `train`
rebuilds `iris.skops`, `iris.onnx` and `artifact.json`.
"""
