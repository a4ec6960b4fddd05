"""Names a handler module may import from the core without importing Flask.

Handlers stay free of HTTP types; the one thing they need from the core is a way to say
"this request's content is unusable", which the core answers with a 400.
"""

from __future__ import annotations


class InvalidInput(ValueError):
    """Raise from `predict` when the request's content is unusable (e.g. a corrupt image).

    The core answers 400 with `str(exc)` as the message, so say what is wrong in words the
    caller can act on, without file paths or library internals.
    """


class ModelUnavailable(RuntimeError):
    """Raise from `setup` when something the model needs is absent from this installation.

    The model is then listed as *unavailable* with `str(exc)` as the reason, as when a
    `REQUIRES` package is missing, and readiness does not wait for it: e.g. a model file
    that a deployment leaves out on purpose. A model that is present but broken should
    raise anything else, which marks it *failed* and keeps the server unready.
    """
