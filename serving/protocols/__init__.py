"""The wire protocols the server speaks, one package each, and `PROTOCOLS`, the list of them.

Each package holds its routes, its wire format, its OpenAPI part and its error shape, and
exports one `PROTOCOL` (a `WireProtocol`, spec.py). The app factory registers their
blueprints and error bodies, the OpenAPI document describes their routes, and the handler
check refuses the model names their URLs take, all by looping over `PROTOCOLS`: adding a
protocol is adding its package and one line here. Protocols do not import each other
(import-linter checks it); what two of them share sits beside them (instances.py, the
row format of TF Serving and Vertex AI) or below them in serving/http/.
"""

from __future__ import annotations

from serving.protocols import bigquery, native, oip, openai, tfserving, vertex
from serving.protocols.spec import WireProtocol

# In the order their routes appear in the OpenAPI document: native first, as it adds each
# model's Input and Output schemas, which the others refer to.
PROTOCOLS: tuple[WireProtocol, ...] = (
    native.PROTOCOL,
    tfserving.PROTOCOL,
    vertex.PROTOCOL,
    openai.PROTOCOL,
    oip.PROTOCOL,
    bigquery.PROTOCOL,
)


def reserved_names(protocols: tuple[WireProtocol, ...] = PROTOCOLS) -> frozenset[str]:
    """The model names the protocols' URLs take (lower case: names are compared without case)."""
    return frozenset(name.lower() for protocol in protocols for name in protocol.reserved_names)
