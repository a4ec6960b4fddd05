"""The Digits example model: a random forest trained on `load_digits`' 8x8 images.

`image` turns a user's PNG or JPEG into the forest's 64 features, `model.DigitClassifier`
serves it from its ONNX serving form with ONNX Runtime, `train` rebuilds `digits.skops`,
`digits.onnx` and `artifact.json`, and `rendering` draws digit images for tests and
the committed samples.
"""
