"""The Open Inference Protocol (KServe v2) over REST: `/v2/...`, JSON or binary tensors."""

from __future__ import annotations

from serving.protocols.oip.openapi import oip_routes
from serving.protocols.oip.routes import blueprint, error_body
from serving.protocols.oip.wire import HEADER_LENGTH
from serving.protocols.spec import WireProtocol

PROTOCOL = WireProtocol("oip", blueprint, oip_routes, frozenset(), error_body, exposed_headers=(HEADER_LENGTH,))
