"""The model author's kit: everything handler and model code needs from the server, and nothing else.

`handlers/`, `models/` and your own model code import only this package (an
import-linter contract in pyproject.toml holds `handlers/` and `models/` to it); the
rest of `serving` is the server's and may change. The server uses these same
classes, so what a model raises is what the server recognises.

The handler contract (docs/handlers.md):

- `InvalidInput`: raise from `predict` when a request's content is unusable; the
  client gets a 400 with your message.
- `ModelUnavailable`: raise from `setup` when something the model needs is absent
  from this installation; the model is listed as unavailable with your message.

Running a model (docs/onnx.md):

- `OnnxModel`: an ONNX graph served by ONNX Runtime, safe across gunicorn's fork;
  `TensorSpec` describes its inputs and outputs, `OnnxModelError` names a file ONNX
  Runtime cannot load, `json_floats` (`json_float_rows` for a batch) turns float32 results
  into JSON numbers.
- `reset_in_forked_child`, `release_before_fork`: for model code that keeps threads or
  native pools, which do not survive gunicorn's fork.
- `request_scope` (a module): `check()` between items of a long loop, so work nobody
  waits for stops; `charge_pixels()` / `refund_pixels()` against the request's
  allowance of decoded pixels (`MAX_PIXELS_PER_REQUEST`).

A model's files at serve time, checked against their manifest `artifact.json`
(docs/artifacts.md; the training-time writer is models/artifact_writer.py):

- `load_serving_bytes` (the ONNX serving form), `load_artifact` (the skops file),
  `read_manifest`, `Manifest`, `ServingFile`, `MANIFEST_NAME`, `sha256_hex`;
- `ArtifactError`: a model's files are missing, corrupt or replaced (also what the
  server raises when it cannot fetch them); `display_path` shows a path without the
  host's directories, for such messages.
"""

from __future__ import annotations

from serving.kit import request_scope as request_scope  # a module: `request_scope.check()`
from serving.kit.errors import InvalidInput, ModelUnavailable
from serving.kit.forking import release_before_fork, reset_in_forked_child
from serving.kit.manifest import (
    MANIFEST_NAME,
    ArtifactError,
    Manifest,
    ServingFile,
    display_path,
    load_artifact,
    load_serving_bytes,
    read_manifest,
    sha256_hex,
)
from serving.kit.onnx import OnnxModel, OnnxModelError, TensorSpec, json_float_rows, json_floats

__all__ = [
    "MANIFEST_NAME",
    "ArtifactError",
    "InvalidInput",
    "Manifest",
    "ModelUnavailable",
    "OnnxModel",
    "OnnxModelError",
    "ServingFile",
    "TensorSpec",
    "display_path",
    "json_float_rows",
    "json_floats",
    "load_artifact",
    "load_serving_bytes",
    "read_manifest",
    "release_before_fork",
    "reset_in_forked_child",
    "sha256_hex",
]
