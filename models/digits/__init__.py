"""The Digits example model: a random forest trained on `load_digits`' 8x8 images.

`image` turns a user's PNG or JPEG into the forest's 64 features, `model.DigitClassifier`
serves it from its numpy serving form (`forest`), `train` rebuilds `digits.skops`,
`digits-forest.npz` and `artifact.json`, and `rendering` draws digit images for tests and
the committed samples.
"""
