"""Sentence embeddings from all-MiniLM-L6-v2 with ONNX Runtime, `tokenizers` and numpy.

The pipeline is sentence-transformers' for this model (its modules.json: Transformer,
Pooling with mean_tokens, Normalize), without torch:

1. `tokenizers` splits each text into word pieces, [CLS] ... [SEP], truncated at
   `MAX_TOKENS` (256, the model's `max_seq_length`), exactly as sentence-transformers'
   tokenizer call does;
2. ONNX Runtime runs the BERT encoder (`model.onnx`, written by
   `python -m models.sentence_embedding.export`) on a padded batch, through the
   `Encoder` the caller passes (the handler passes `serving.kit.OnnxModel`,
   which sizes its threads from the settings and is safe across gunicorn's fork);
3. numpy averages each text's token embeddings over its attention mask and scales the
   mean to Euclidean length 1 (sentence-transformers' Pooling and Normalize, same
   formulas, same epsilons).

A batch is sorted by length and cut into chunks of at most `chunk_size` texts and at
most `chunk_tokens` word pieces once padded, each padded only to its own longest text:
a short text batched with a long one would otherwise pay for the long one's padding
(attention is quadratic in it), and the token cap keeps a batch of long texts from
growing ONNX Runtime's memory arena, which keeps what it grew to (16 texts of 256
pieces in one call: 126 MB more; in chunks of 8: 48 MB).
tests/models/test_sentence_embedding_parity.py holds this against sentence-transformers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

DIMENSIONS = 384
MAX_TOKENS = 256  # sentence_bert_config.json's max_seq_length, [CLS] and [SEP] included
MODEL_DIR = Path(__file__).resolve().parent
ONNX_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "token_embeddings"
EXPORT_COMMAND = "python -m models.sentence_embedding.export"

# Texts per encoder call. Measured on 2 cores (docs/performance-heavy-models.md): CPU per
# text falls until 16 texts per call, and no further at 32.
DEFAULT_CHUNK_SIZE = 16
# Padded word pieces per encoder call: 16 texts of up to 128 pieces, 8 of 256.
DEFAULT_CHUNK_TOKENS = 2048


class ModelFilesMissing(FileNotFoundError):
    """The exported files are not there; the message says which and how to make them."""


class Encoder(Protocol):
    """Runs the ONNX graph: `serving.kit.OnnxModel` in the server."""

    def run(self, feeds: Mapping[str, Any], outputs: Sequence[str] | None = None) -> Mapping[str, np.ndarray]:
        """Output name -> array for one batch of named input arrays."""
        ...


def model_files(directory: Path | None = None) -> tuple[Path, Path]:
    """(model.onnx, tokenizer.json) in `directory` (default `MODEL_DIR`); `ModelFilesMissing` if either is absent."""
    directory = MODEL_DIR if directory is None else directory
    paths = (directory / ONNX_FILE, directory / TOKENIZER_FILE)
    missing = [path.name for path in paths if not path.is_file()]
    if missing:
        raise ModelFilesMissing(
            f"{', '.join(missing)} not found in {_display(directory)}; run `{EXPORT_COMMAND}` "
            "(needs requirements-export.txt)"
        )
    return paths


class SentenceEmbedder:
    """all-MiniLM-L6-v2: unit-length 384-dimensional embeddings of texts.

    Thread-safe: the tokenizer is configured once and only read, and the encoder may be
    run from several threads.
    """

    def __init__(
        self,
        encoder: Encoder,
        tokenizer_file: Path,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    ) -> None:
        """Embed with `encoder` (the exported graph) and the tokenizer in `tokenizer_file`.

        Raises `ValueError` when the tokenizer is not configured as the export writes it.
        """
        from tokenizers import Tokenizer

        self._tokenizer: Any = Tokenizer.from_file(str(tokenizer_file))
        truncation = self._tokenizer.truncation
        if truncation is None or truncation["max_length"] != MAX_TOKENS or self._tokenizer.padding is not None:
            raise ValueError(
                f"{_display(tokenizer_file)}: expected truncation at {MAX_TOKENS} and no padding, "
                f"found truncation {truncation} and padding {self._tokenizer.padding}; run `{EXPORT_COMMAND}`"
            )
        pad_id = self._tokenizer.token_to_id("[PAD]")
        if pad_id is None:
            raise ValueError(f"{_display(tokenizer_file)}: no [PAD] token; run `{EXPORT_COMMAND}`")
        self._pad_id = int(pad_id)
        self._encoder = encoder
        self._chunk_size = chunk_size
        self._chunk_tokens = max(chunk_tokens, MAX_TOKENS)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word pieces the model reads for each text: [CLS] and [SEP] included, at most 256."""
        return [len(self._tokenizer.encode(text).ids) for text in texts]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """A (len(texts), 384) float32 array of unit-length embeddings, in order."""
        result = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        if not texts:
            return result
        # `encode` one text at a time, not `encode_batch`: the batch form runs on a Rust
        # thread pool that would compete with ONNX Runtime's for the same cores, and that
        # pool does not survive gunicorn's fork.
        ids = [self._tokenizer.encode(text).ids for text in texts]
        order = sorted(range(len(ids)), key=lambda index: len(ids[index]))
        for chunk in self._chunks(order, [len(ids[index]) for index in order]):
            result[chunk] = self._encode_chunk([ids[index] for index in chunk])
        return result

    def _chunks(self, order: list[int], lengths: list[int]) -> list[list[int]]:
        """`order` (sorted by length, `lengths` alike) cut into chunks within both caps."""
        chunks: list[list[int]] = [[]]
        for index, length in zip(order, lengths, strict=True):
            chunk = chunks[-1]
            # Sorted: this text is the chunk's longest, so it sets every row's padding.
            if chunk and (len(chunk) >= self._chunk_size or (len(chunk) + 1) * length > self._chunk_tokens):
                chunk = []
                chunks.append(chunk)
            chunk.append(index)
        return chunks if chunks[0] else []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length embedding per text, as lists of Python floats, in order."""
        embeddings: list[list[float]] = self.encode(texts).tolist()
        return embeddings

    def _encode_chunk(self, ids: list[list[int]]) -> np.ndarray:
        width = max(len(row) for row in ids)
        input_ids = np.full((len(ids), width), self._pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, pieces in enumerate(ids):
            input_ids[row, : len(pieces)] = pieces
            attention_mask[row, : len(pieces)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        tokens = self._encoder.run(feeds, [OUTPUT_NAME])[OUTPUT_NAME]
        return mean_pool_normalize(tokens, attention_mask)


def mean_pool_normalize(tokens: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' mean pooling and L2 normalisation, in numpy.

    Pooling: the sum of the token embeddings where the mask is 1, divided by the mask's
    sum clamped to at least 1e-9. Normalize: divided by the norm clamped to at least
    1e-12 (torch.nn.functional.normalize's default).
    """
    mask = attention_mask.astype(tokens.dtype)[:, :, None]
    summed = (tokens * mask).sum(axis=1)
    counts = np.maximum(mask.sum(axis=1), 1e-9)
    means = summed / counts
    norms = np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    normalized: np.ndarray = (means / norms).astype(np.float32, copy=False)
    return normalized


def _display(path: Path) -> str:
    try:
        return path.resolve().relative_to(MODEL_DIR.parent.parent).as_posix()
    except ValueError:
        return str(path)
