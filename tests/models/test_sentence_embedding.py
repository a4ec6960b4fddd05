"""The SentenceEmbedding handler; skipped, with the reason, without requirements-embedding.txt."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from handlers import sentence_embedding
from tests.servers import run_python

for _name in sentence_embedding.REQUIRES:
    pytest.importorskip(_name, reason=f"SentenceEmbedding needs {_name}: pip install -r requirements-embedding.txt")


def _embed(model: Any, text: str) -> list[float]:
    return list(sentence_embedding.predict(model, {"text": text})["embedding"])


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))  # both have unit length


def test_embedding_is_384_unit_length_floats(embedder: Any) -> None:
    vector = _embed(embedder, "The quick brown fox jumps over the lazy dog.")
    assert len(vector) == 384
    assert all(type(v) is float for v in vector)
    assert math.sqrt(sum(v * v for v in vector)) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("anchor", "similar", "unrelated"),
    [
        ("A man is playing a guitar.", "Someone plays an acoustic guitar.", "The stock market fell sharply today."),
        ("How do I reset my password?", "I forgot my password and need a new one.", "Bake the bread at 220 degrees."),
        ("The cat sleeps on the sofa.", "A kitten is napping on the couch.", "Rust has a borrow checker."),
    ],
    ids=["guitar", "password", "cat"],
)
def test_similar_sentences_are_closer_than_unrelated_ones(
    embedder: Any, anchor: str, similar: str, unrelated: str
) -> None:
    a, s, u = (_embed(embedder, text) for text in (anchor, similar, unrelated))
    assert _cosine(a, s) > _cosine(a, u) + 0.2


def test_long_text_within_the_schema_limit_is_accepted(embedder: Any) -> None:
    text = "word " * (sentence_embedding.MAX_TEXT_CHARS // 5)
    assert len(_embed(embedder, text[: sentence_embedding.MAX_TEXT_CHARS])) == 384


def test_concurrent_calls_from_threads_succeed(embedder: Any) -> None:
    # Without the model's lock, the shared fast tokenizer fails with "Already borrowed".
    texts = [f"sentence number {i} about topic {i % 7}" for i in range(24)]
    expected = [_embed(embedder, t) for t in texts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda t: _embed(embedder, t), texts))
    for g, e in zip(got, expected, strict=True):
        assert g == pytest.approx(e, abs=1e-5)


def test_token_counts_are_what_the_model_reads(embedder: Any) -> None:
    # [CLS] hello world [SEP]; a long text is cut at the model's 256 word pieces, as it is embedded.
    assert sentence_embedding.count_tokens(embedder, ["hello world", "word " * 400]) == [4, 256]


def test_counting_tokens_while_embedding_from_other_threads_succeeds(embedder: Any) -> None:
    texts = [f"sentence number {i}" for i in range(16)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        embedded = pool.map(lambda t: _embed(embedder, t), texts)
        counted = list(pool.map(lambda t: sentence_embedding.count_tokens(embedder, [t]), texts))
        assert len(list(embedded)) == len(texts)
    assert counted == [[5]] * len(texts)  # [CLS] sentence number <n> [SEP]


@pytest.mark.e2e
def test_loads_offline_without_environment_variables_or_network() -> None:
    # A fresh process with HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE unset and every socket
    # connect refused: setup() and predict() must neither need nor try the network.
    code = (
        "import os, socket\n"
        "for k in ('HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE'): os.environ.pop(k, None)\n"
        "attempts = []\n"
        "def refuse(self, address):\n"
        "    attempts.append(address)\n"
        "    raise OSError('network disabled by the test')\n"
        "socket.socket.connect = refuse\n"
        "from handlers import sentence_embedding as h\n"
        "print(len(h.predict(h.setup(), {'text': 'offline'})['embedding']), attempts)\n"
    )
    result = run_python(code, timeout=240)
    assert result.stdout.strip() == "384 []"
    assert "Loading weights" not in result.stderr, "no progress bar in server logs"
