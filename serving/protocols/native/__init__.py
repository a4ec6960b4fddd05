"""The native protocol: `POST /v1/<Name>` (JSON, form or raw file; now or as a job) and the model listing."""

from __future__ import annotations

from serving.protocols.native.openapi import native_routes
from serving.protocols.native.routes import RESERVED_NAMES, blueprint
from serving.protocols.spec import WireProtocol

PROTOCOL = WireProtocol("native", blueprint, native_routes, RESERVED_NAMES)
