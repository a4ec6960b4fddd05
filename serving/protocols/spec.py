"""What one wire protocol is to the rest of the server: a `WireProtocol`.

Each package under `serving/protocols/` speaks one wire protocol and exports one
`PROTOCOL` describing itself; `serving/protocols/__init__.py` lists them in `PROTOCOLS`,
which the app factory (its routes and error shapes), the OpenAPI document (its route
groups) and the handler check (the model names its URLs would shadow) loop over.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Blueprint

from serving.errors import ApiError
from serving.http.error_handlers import standard_error_body

if TYPE_CHECKING:
    from serving.http.state import ServingState
    from serving.openapi.builder import OpenApiDocument


@dataclass(frozen=True)
class WireProtocol:
    """One wire protocol: its routes, their OpenAPI part, the names it reserves and its error body."""

    # A short name for logs and docs ("oip").
    name: str
    # Its routes. An error on one of them (a 401, 404, 405, 413 or 500 included) is
    # rendered by `error_body`; so is a 404 under the blueprint's `url_prefix`.
    blueprint: Blueprint
    # Writes its operations into the OpenAPI document: `(doc, state) -> None`.
    openapi: Callable[[OpenApiDocument, ServingState], None] | None = None
    # Model NAMEs its URLs would shadow: `POST /v1/embeddings` is not a model called embeddings.
    reserved_names: frozenset[str] = frozenset()
    # The JSON body of an error, in the shape this protocol's clients parse.
    error_body: Callable[[ApiError], dict[str, Any]] = standard_error_body
    # Response headers its clients read, exposed to browsers by CORS.
    exposed_headers: tuple[str, ...] = ()
