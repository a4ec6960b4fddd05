"""TF Serving's and KServe v1's REST predict API: `POST /v1/models/<Name>[/versions/<v>]:predict`."""

from __future__ import annotations

from serving.protocols.instances import error_body
from serving.protocols.spec import WireProtocol
from serving.protocols.tfserving.openapi import tfserving_routes
from serving.protocols.tfserving.routes import blueprint

# `/v1/models/<Name>:predict` is not a model called "models".
PROTOCOL = WireProtocol("tfserving", blueprint, tfserving_routes, frozenset({"models"}), error_body)
