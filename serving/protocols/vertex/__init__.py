"""Vertex AI's custom container contract: `AIP_HEALTH_ROUTE` and `AIP_PREDICT_ROUTE` for one model."""

from __future__ import annotations

from serving.protocols.instances import error_body
from serving.protocols.spec import WireProtocol
from serving.protocols.vertex.openapi import vertex_routes
from serving.protocols.vertex.routes import blueprint

PROTOCOL = WireProtocol("vertex", blueprint, vertex_routes, frozenset(), error_body)
