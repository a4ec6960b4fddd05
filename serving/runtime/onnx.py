"""ONNX Runtime's threads for this server, from `Settings`; the model class lives in `serving.kit`.

`OnnxModel` and its companions are `serving.kit`'s (serving/kit/onnx.py). They are
re-exported here, as the same objects, because handlers written before the kit import
them from `serving.runtime.onnx`; new code imports `serving.kit`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from serving.kit.onnx import (
    OnnxModel,
    OnnxModelError,
    OnnxRuntimeOptions,
    TensorSpec,
    configure_onnx_runtime,
    json_floats,
    onnx_runtime_options,
)

if TYPE_CHECKING:
    from serving.config.settings import Settings

__all__ = [
    "OnnxModel",
    "OnnxModelError",
    "OnnxRuntimeOptions",
    "TensorSpec",
    "configure_onnx_runtime",
    "json_floats",
    "onnx_runtime_options",
    "options_from_settings",
    "usable_cores",
]


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def options_from_settings(settings: Settings, cores: int | None = None) -> OnnxRuntimeOptions:
    """The options `settings` ask for; `ONNX_INTRA_OP_THREADS=0` shares the cores among the workers."""
    intra = settings.onnx_intra_op_threads
    if intra == 0:
        intra = max(1, (cores or usable_cores()) // settings.workers)
    return OnnxRuntimeOptions(
        intra_op_threads=intra,
        inter_op_threads=settings.onnx_inter_op_threads,
        spin_wait=settings.onnx_spin_wait,
    )
