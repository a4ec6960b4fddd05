"""The one error a model raises for unusable request content."""

from __future__ import annotations


class InvalidInput(ValueError):
    """The request's content is unusable; the core answers 400 with str(exc) as the message.

    Raise it for what a JSON Schema cannot catch (an image that does not decode, say), with
    a message the caller can act on and no file paths or library internals in it.
    """
