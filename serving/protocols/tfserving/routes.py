"""TF Serving's and KServe v1's REST predict routes: `POST /v1/models/<Name>:predict`.

`{"instances": [...]}` answers `{"predictions": [...]}`, one prediction per instance, in
order (serving/protocols/instances.py has the format). The versioned form
`POST /v1/models/<Name>/versions/<VERSION>:predict` serves the same model when
`<VERSION>` is the one served (its `VERSION`, or that with its artifacts' digest).
"""

from __future__ import annotations

from flask import Blueprint, Response

from serving.http.model_route import find_model
from serving.observability.prediction_log import logs_predictions
from serving.protocols.instances import predict_instances

blueprint = Blueprint("tfserving", __name__, url_prefix="/v1/models")


@blueprint.post("/<model:name>:predict")
@logs_predictions
def predict(name: str) -> Response:
    return predict_instances(find_model(name))


@blueprint.post("/<model:name>/versions/<version>:predict")
@logs_predictions
def predict_version(name: str, version: str) -> Response:
    return predict_instances(find_model(name, version))
