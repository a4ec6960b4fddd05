"""The two exceptions of the handler contract: what a model raises to tell the server something.

Both are plain Python exceptions (no HTTP types): model code raises them, and the server
turns them into its answer.
"""

from __future__ import annotations


class InvalidInput(ValueError):
    """Raise from `predict` when the request's content is unusable (e.g. a corrupt image).

    Raise it for what a JSON Schema cannot catch. The server answers 400 with `str(exc)`
    as the message, so say what is wrong in words the caller can act on, without file
    paths or library internals.
    """


class ModelUnavailable(RuntimeError):
    """Raise from `setup` when something the model needs is absent from this installation.

    The model is then listed as *unavailable* with `str(exc)` as the reason, as when a
    `REQUIRES` package is missing, and readiness does not wait for it: e.g. a model file
    that a deployment leaves out on purpose. A model that is present but broken should
    raise anything else, which marks it *failed* and keeps the server unready.
    """
