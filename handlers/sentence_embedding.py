"""Unit-length 384-dimensional embedding of a text (all-MiniLM-L6-v2 on ONNX Runtime).

Serves the ONNX file that `python -m models.sentence_embedding.export` writes (`make run`
and `make test` run it when the file is missing); without that file the model is listed
as unavailable, with the command in the reason. Cosine similarity of two embeddings is
their dot product. The loaded model also counts tokens: `model.count_tokens(texts)`.
"""

from __future__ import annotations

from typing import Any

from models.sentence_embedding.model import DIMENSIONS, MAX_TOKENS, ModelFilesMissing, SentenceEmbedder, model_files
from serving.kit import ModelUnavailable, OnnxModel

NAME = "SentenceEmbedding"  # served at POST /v1/SentenceEmbedding
VERSION = "1.0.0"
REQUIRES = ("onnxruntime", "tokenizers")
# Also served at POST /v1/embeddings (OpenAI's API): the text is `text`, the vector `embedding`.
EMBEDDINGS = {"input": "text", "output": "embedding"}

# How concurrent requests are batched in each worker (serving/runtime/batching.py). One
# encoder call is expensive (about 6 ms for a short text, much more for a long one), so
# requests that arrive while it runs are worth waiting for: up to 16 texts per call, the
# chunk the model encodes at once (models/sentence_embedding/model.py), and at most 10 ms
# of waiting for announced requests. Measured: docs/performance-heavy-models.md.
BATCH = {"max_batch_size": 16, "max_latency_ms": 10}

# The model reads at most 256 word pieces (about 1000 characters of English) and ignores
# the rest; 2000 characters leaves room for other languages without letting a request
# carry megabytes of text the model would never look at.
MAX_TEXT_CHARS = 2000

INPUT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "text": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_TEXT_CHARS,
            # At least one non-space character. Python's `\S` and JSON Schema's (ECMA-262)
            # disagree on a few characters, so exclude the spaces of both.
            "pattern": r"[^\s\x1c-\x1f\x85\ufeff]",
            "description": f"The text to embed; only its first {MAX_TOKENS} word pieces count.",
        }
    },
    "required": ["text"],
    "additionalProperties": False,
    "examples": [{"text": "A man is playing a guitar."}],
}

OUTPUT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "embedding": {
            "type": "array",
            "items": {"type": "number", "minimum": -1, "maximum": 1},
            "minItems": DIMENSIONS,
            "maxItems": DIMENSIONS,
            "description": f"{DIMENSIONS} floats with Euclidean norm 1.",
        }
    },
    "required": ["embedding"],
    "additionalProperties": False,
}


def setup() -> SentenceEmbedder:
    """Load the exported model from models/sentence_embedding/ (no download)."""
    try:
        graph, tokenizer = model_files()
    except ModelFilesMissing as exc:
        raise ModelUnavailable(str(exc)) from exc
    return SentenceEmbedder(OnnxModel(graph, name="models/sentence_embedding/model.onnx"), tokenizer)


def predict(model: SentenceEmbedder, payload: dict[str, Any]) -> dict[str, Any]:
    """The text's embedding."""
    return {"embedding": model.embed([payload["text"]])[0]}


def count_tokens(model: SentenceEmbedder, texts: list[str]) -> list[int]:
    """The number of tokens the model reads of each text (OpenAI's `usage`)."""
    return model.count_tokens(texts)


def predict_batch(model: SentenceEmbedder, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One embedding per payload, in order: sorted by length and encoded in chunks."""
    return [{"embedding": vector} for vector in model.embed([payload["text"] for payload in payloads])]
