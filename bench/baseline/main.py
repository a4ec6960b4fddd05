"""The tutorial's way of serving a model, rebuilt for the benchmark's comparison.

This is what the original tutorial deploys (Flask + Flask-Cors + jsonschema under
`gunicorn -w 2`, one model call per request): a module-level model instance, the
tutorial's `validate_json` decorator calling `jsonschema.validate` on every request, and
Flask's own JSON handling. It is kept deliberately close to the tutorial (minus
Flask-RESTful's Resource class, which would only make it slower) so that the benchmark's
ratios compare this project against what its users would otherwise run. Never deploy it.

Digits is served the way a tutorial user serves a scikit-learn model: the fitted
`RandomForestClassifier` loaded from `digits.skops` (scikit-learn and skops imported at
start-up), and per request the image's 64 features (the project's own preprocessing,
`models.digits.image.features`) passed to `estimator.predict_proba`. This project serves
the same forest converted to ONNX (`models/digits/digits.onnx`) with ONNX Runtime instead:
the same digit, probabilities within 2e-6 (float32).

    gunicorn -b 127.0.0.1:9999 -w 2 bench.baseline.main:app
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request
from flask_cors import CORS

from bench.baseline.tutorial import validate_json
from models.digits import image
from models.digits.model import load_estimator
from models.greeter import XXXModel
from serving.kit import InvalidInput

xxx_model_instance = XXXModel()
xxx_model_schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}

app = Flask(__name__)
CORS(app)


@app.post("/v1/XXXModel")
@validate_json(xxx_model_schema)
def xxx_model() -> Any:
    return {"result": xxx_model_instance.hello(request.json["name"])}  # type: ignore[index]


# The fitted forest this project's Digits handler serves (converted to ONNX), one image
# per request.
digits_estimator = load_estimator()
digits_schema = {"type": "object", "properties": {"image": {"type": "string"}}, "required": ["image"]}


@app.post("/v1/Digits")
@validate_json(digits_schema)
def digits() -> Any:
    try:
        features = image.features(request.json["image"])  # type: ignore[index]
    except InvalidInput as e:
        return {"message": str(e)}, 400
    probabilities = digits_estimator.predict_proba([features])[0]
    return {"result": {"digit": int(probabilities.argmax()), "probabilities": probabilities.tolist()}}


@app.get("/readyz")
def readyz() -> Any:
    # The tutorial has no health route; the benchmark needs one to time the cold start.
    return {"status": "ready"}
