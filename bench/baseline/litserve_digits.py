"""Digits served with LitServe (Lightning AI), the comparison issue 24 sets this project.

The same model as this project's Digits handler (`models/digits/digits.onnx` through
`DigitClassifier`, ONNX Runtime) and the same preprocessing (`models.digits.image`), so
the benchmark compares the two servers, not two models. Configured as LitServe's
documentation suggests for a CPU model that batches: one inference worker per core
(`workers_per_device=2` on the benchmark's two cores), batches of up to 8 requests
gathered for at most 5 ms, and `decode_request` turning each image into its 64 features
before the batch, as LitServe's pipeline intends (it runs in the inference worker, per
request). Invalid images get a 400 with a `message`, like ours.

LitServe is pinned in requirements-bench.txt (0.2.19 installs beside requirements.txt's
pins: checked with `pip check` in a fresh venv). The benchmark runs this file with
`$BENCH_LITSERVE_PYTHON` (default: the benchmark's own interpreter):

    python -m bench.baseline.litserve_digits 9999
"""

# No `from __future__ import annotations` here: LitServe reads `decode_request`'s
# annotation at run time to build its FastAPI route, and a string annotation turns the
# JSON body into a required query parameter (every request a 422).
import sys
from typing import Any

import litserve as ls  # type: ignore[import-not-found]  # requirements-bench.txt
import numpy as np
from fastapi import HTTPException

from models.digits import image
from models.digits.model import DigitClassifier
from serving.kit import InvalidInput

MAX_BATCH_SIZE = 8
BATCH_TIMEOUT_S = 0.005


class DigitsAPI(ls.LitAPI):  # type: ignore[misc]
    """`POST /v1/Digits` `{"image": base64}` -> `{"digit", "probabilities"}`."""

    def setup(self, device: str) -> None:
        self.model = DigitClassifier.load()

    def decode_request(self, request: dict[str, Any]) -> np.ndarray:
        text = request.get("image") if isinstance(request, dict) else None
        if not isinstance(text, str) or not text:
            raise HTTPException(status_code=400, detail={"message": "image: a base64 string is required"})
        try:
            return image.features(text)
        except InvalidInput as exc:
            raise HTTPException(status_code=400, detail={"message": str(exc)}) from None

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.stack(inputs)

    def predict(self, rows: np.ndarray) -> list[dict[str, Any]]:
        return self.model.predict_features(rows)

    def unbatch(self, output: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return output

    def encode_response(self, output: dict[str, Any]) -> dict[str, Any]:
        return output


def main(argv: list[str]) -> None:
    """Serve on 127.0.0.1:`argv[0]`."""
    api = DigitsAPI(max_batch_size=MAX_BATCH_SIZE, batch_timeout=BATCH_TIMEOUT_S, api_path="/v1/Digits")
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=2, healthcheck_path="/readyz")
    server.run(host="127.0.0.1", port=int(argv[0]), generate_client_file=False)


if __name__ == "__main__":
    main(sys.argv[1:])
