"""BigQuery's remote-function contract: the request it sends and the reply it expects.

Request: `{"requestId", "caller", "sessionUser", "userDefinedContext": {...}, "calls":
[[arg, ...], ...]}`, one argument list per row. Reply: `{"replies": [...]}`, exactly one
per call and in order, or a non-200 status with `{"errorMessage": "..."}` (see
https://cloud.google.com/bigquery/docs/remote-functions). Keys BigQuery may add later
are ignored; the keys of `userDefinedContext`, which the function's author writes, are
checked.

A row's arguments become one payload (`RowReader`): a single JSON object is the payload
itself (SQL `fn(TO_JSON(STRUCT(...)))`), a single NULL makes the reply NULL without
running the model (SQL functions answer NULL for NULL), and otherwise the scalar
arguments map to the input schema's top-level properties in declared order
(serving/runtime/positional.py). BigQuery's string-encoded numbers are read back
(encoding.py) only when the row fails the schema as sent, so a well-typed row costs
nothing extra.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from serving.errors import BadRequest, ValidationFailed
from serving.protocols.bigquery.encoding import coerce
from serving.runtime.positional import PositionalOrder, refusal
from serving.runtime.validation import SchemaValidator

ON_ERROR = ("fail", "null")
CONTEXT_KEYS = ("on_error", "output")
# BigQuery's own limits on one reply; an errorMessage stays well under 1 KB.
MAX_ERROR_MESSAGE = 900


class TooManyRows(BadRequest):
    code = "too_many_rows"


@dataclass(frozen=True)
class RemoteCall:
    """One request from BigQuery: its rows and the function's options."""

    request_id: str
    calls: list[Any]
    on_error: str = "fail"
    output: str | None = None


def parse_request(body: Any, *, max_rows: int) -> RemoteCall:
    """The request's rows and options; `ValidationFailed` (400) for a body BigQuery would not send."""
    if not isinstance(body, dict):
        raise ValidationFailed('A remote-function request is a JSON object with "calls": [[...], ...]', path="$")
    calls = body.get("calls")
    if not isinstance(calls, list):
        raise ValidationFailed('"calls" must be an array with one argument list per row', path="$.calls")
    if len(calls) > max_rows:
        raise TooManyRows(
            f"{len(calls)} rows in one call; this service takes at most {max_rows}: set max_batching_rows = "
            f"{max_rows} (or fewer) in the function's OPTIONS",
            path="$.calls",
            limit=max_rows,
        )
    context = body.get("userDefinedContext") or {}
    if not isinstance(context, dict):
        raise ValidationFailed('"userDefinedContext" must be an object', path="$.userDefinedContext")
    for key in context:
        if key not in CONTEXT_KEYS:
            raise ValidationFailed(
                f"user_defined_context has an unknown key {str(key)[:64]!r}: it takes 'on_error' and 'output'",
                path="$.userDefinedContext",
            )
    on_error = context.get("on_error", "fail")
    if on_error not in ON_ERROR:
        raise ValidationFailed(
            f"user_defined_context on_error must be 'fail' or 'null', not {str(on_error)[:64]!r}",
            path="$.userDefinedContext.on_error",
        )
    output = context.get("output")
    if output is not None and (not isinstance(output, str) or not output):
        raise ValidationFailed(
            "user_defined_context output must name a field of the result", path="$.userDefinedContext"
        )
    request_id = body.get("requestId")
    return RemoteCall(
        request_id=request_id[:128] if isinstance(request_id, str) else "",
        calls=calls,
        on_error=on_error,
        output=output,
    )


# A row whose reply is NULL without a model call (its only argument was NULL).
NULL_ROW = object()


class RowReader:
    """Turns one row's arguments into a payload valid for one model's INPUT_SCHEMA."""

    def __init__(self, model: str, schema: dict[str, Any], validator: SchemaValidator) -> None:
        self.model = model
        self.schema = schema
        self.validator = validator
        self.order = PositionalOrder.of(schema)
        self._fast = validator.fast

    def payload(self, index: int, arguments: Any) -> Any:
        """The payload for row `index`, `NULL_ROW`, or `ValidationFailed` naming the row and field."""
        where = f"$.calls[{index}]"
        if not isinstance(arguments, list) or not arguments:
            raise ValidationFailed(f"row {index}: calls[{index}] must be a non-empty array of arguments", path=where)
        if len(arguments) == 1:
            only = arguments[0]
            if isinstance(only, dict):
                return self._valid(index, only)
            if only is None:
                return NULL_ROW
        if self.order is None:
            error = refusal(self.model, where=where)
            error.message = f"row {index}: {error.message}"
            raise error
        try:
            payload = self.order.payload(arguments, where=where)
        except ValidationFailed as error:
            error.message = f"row {index}: {error.message}"
            raise
        return self._valid(index, payload)

    def _valid(self, index: int, payload: dict[str, Any]) -> Any:
        fast = self._fast
        if fast is not None:
            try:
                if fast.is_valid(payload):
                    return payload
            except Exception:  # noqa: BLE001, S110 - e.g. an integer beyond 64 bits: the full check decides
                pass
        coerced = coerce(payload, self.schema)
        found = self.validator.first_error(coerced)
        if found is None:
            return coerced
        message, path = found
        field = path[2:] if path.startswith("$.") else path.removeprefix("$")
        named = f", field {field}" if field else ""
        raise ValidationFailed(f"row {index}{named}: {message}", path=f"$.calls[{index}]", index=index)


def short(message: str) -> str:
    """`message` cut to fit BigQuery's error display (an errorMessage stays under 1 KB)."""
    return message if len(message) <= MAX_ERROR_MESSAGE else message[: MAX_ERROR_MESSAGE - 3] + "..."
