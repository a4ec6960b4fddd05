"""OpenAI's embeddings API: `POST /v1/embeddings`, with OpenAI's error shape."""

from __future__ import annotations

from serving.protocols.openai.openapi import openai_routes
from serving.protocols.openai.routes import RESERVED_NAMES, blueprint, error_body
from serving.protocols.spec import WireProtocol

PROTOCOL = WireProtocol("openai", blueprint, openai_routes, RESERVED_NAMES, error_body)
