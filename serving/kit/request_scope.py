"""The request a model works for: checks for model code's own long loops.

Model code may call these from `predict` or `predict_batch`; outside a request (a job,
a test, offline scoring) each does nothing.

- `check(ask_client=False)`: between items of a long loop (an image decoded per item,
  say). Raises once nobody waits for the answer: the request's time budget is spent
  (the client gets 504) or, with `ask_client=True`, its client has closed the
  connection (499, in the log). Asking the client costs a system call: do it per item
  only when an item costs far more (milliseconds).
- `charge_pixels(pixels, what)`: before decoding images, their pixels (from their
  headers) are taken from the request's allowance (`MAX_PIXELS_PER_REQUEST`); 413 when
  it would be exceeded. `refund_pixels(pixels)` gives them back when the work fails and
  will be redone (the server retries a failed batch item by item).

Let what these raise propagate: they are the server's own errors, already answered.

The server keeps the request's scope (serving/runtime/request_scope.py) in `CURRENT`,
a context variable; the kit only reads it, so model code does not depend on the server.
"""

from __future__ import annotations

import contextvars
from typing import Protocol


class RequestLimits(Protocol):
    """What a request may still spend, as the server's request scope offers it."""

    def check(self, *, ask_client: bool = False) -> None: ...

    def charge_pixels(self, pixels: int, what: str = "images") -> None: ...

    def refund_pixels(self, pixels: int) -> None: ...


# The scope of the request this code works for; set by the server, copied onto the
# threads model calls run on.
CURRENT: contextvars.ContextVar[RequestLimits | None] = contextvars.ContextVar("serving_request_scope", default=None)


def check(*, ask_client: bool = False) -> None:
    """Raise when nobody waits for this request's work any more; nothing outside a request."""
    scope = CURRENT.get()
    if scope is not None:
        scope.check(ask_client=ask_client)


def charge_pixels(pixels: int, what: str = "images") -> None:
    """Take `pixels` from the request's allowance (413 beyond it); nothing outside a request."""
    scope = CURRENT.get()
    if scope is not None:
        scope.charge_pixels(pixels, what)


def refund_pixels(pixels: int) -> None:
    """Give back pixels `charge_pixels` took for work that failed; nothing outside a request."""
    scope = CURRENT.get()
    if scope is not None:
        scope.refund_pixels(pixels)
