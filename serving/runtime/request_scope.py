"""What one request may still spend, seen by every piece of code that works for it.

A `RequestScope` is opened when a request starts (`RequestScopes`, serving/http/scope.py,
around every request) and closed when it ends. It holds:

- the request's **deadline**: its model's time budget (`TIMEOUT_S`, else
  `PREDICT_TIMEOUT_S`), set by its first model call (or its queueing in a batcher) and
  counted from when its body has arrived (the upload's own time is bounded by
  BODY_READ_TIMEOUT_S). Every model call of the request gets only what remains, so a
  request of many chunks has one budget, not one per chunk;
- whether nobody waits any more: the caller gave up on a call (504, then the call runs
  on abandoned) or the **client closed its connection** (a probe the HTTP layer gives,
  asked only at coarse steps, and at most once every `CLIENT_PROBE_INTERVAL_S`: it is a
  system call);
- an allowance of **decoded pixels** (`MAX_PIXELS_PER_REQUEST`), charged by image
  decoders from the images' headers before they decode anything.

Loops that work for a request call `check()` between items: once the deadline has
passed or the scope is abandoned it raises, so work nobody waits for stops at the next
item instead of running to its end. A batcher drops queued work whose scope is over
before it starts. Model code may call `check()` and `charge_pixels()` too (through
serving.kit.request_scope); outside any request (a job, a test) both do nothing.

The scope travels in the kit's context variable (serving/kit/request_scope.py, which is
how model code reaches it without importing the server): `TimeBudget.call` copies the
caller's context onto the call thread, so a model call sees the scope of the request it
runs for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from serving.errors import ClientGone, GatewayTimeout, TooManyPixels
from serving.kit.request_scope import CURRENT as _SCOPE
from serving.kit.request_scope import charge_pixels, check, refund_pixels

__all__ = [
    "RequestScope",
    "body_arrived",
    "charge_pixels",
    "check",
    "current_scope",
    "opened_scope",
    "refund_pixels",
]


# A client that has gone is noticed within this long of its leaving, by the next coarse
# step: a table of small images asks at every image (50 us apart), where a system call
# each cost 3-4% of the work, for a leaving nobody could act on sooner.
CLIENT_PROBE_INTERVAL_S = 0.005


def _never_gone() -> bool:
    return False


class RequestScope:
    """One request's deadline, abandonment and pixel allowance (thread-safe)."""

    __slots__ = (
        "_client_gone",
        "_lock",
        "_next_probe",
        "abandoned",
        "budget_s",
        "deadline",
        "gone",
        "pixels_left",
        "started",
    )

    def __init__(
        self,
        *,
        budget_s: float = 0.0,
        max_pixels: int | None = None,
        client_gone: Callable[[], bool] | None = None,
    ) -> None:
        """`budget_s`: the deadline `start_deadline()` sets (0: none until a model call sets one);
        `client_gone()` says whether the client closed its connection (None: never asked)."""
        self.budget_s = budget_s
        self.deadline: float | None = None  # time.monotonic() value
        self.started: float | None = None  # when the body arrived: deadlines count from it
        self.abandoned = False
        self.gone = False  # the client closed its connection
        self.pixels_left = max_pixels
        self._client_gone = client_gone or _never_gone
        self._next_probe = 0.0  # time.monotonic() value before which the client is not asked again
        self._lock = threading.Lock()

    def body_arrived(self) -> None:
        """The body has been read: a deadline set later counts from now (and `budget_s` starts)."""
        if self.started is None:
            self.started = time.monotonic()
        self.start_deadline()

    def start_deadline(self, seconds: float | None = None) -> None:
        """Set the deadline `seconds` (default `budget_s`) after the body arrived (else from now),
        unless one is set already (0: none)."""
        if seconds is None:
            seconds = self.budget_s
        if self.deadline is None and seconds > 0:
            self.deadline = (self.started if self.started is not None else time.monotonic()) + seconds

    def remaining(self) -> float | None:
        """Seconds left before the deadline (may be <= 0); None without one."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def abandon(self) -> None:
        """Nobody waits for this request's work any more: the next `check()` raises."""
        self.abandoned = True

    def client_gone(self) -> bool:
        """True once the client has closed its connection.

        Asks the probe (a system call) at most once every `CLIENT_PROBE_INTERVAL_S`;
        in between, the last answer stands.
        """
        if self.gone:
            return True
        now = time.monotonic()
        if now < self._next_probe:
            return False
        self._next_probe = now + CLIENT_PROBE_INTERVAL_S
        if self._client_gone():
            self.gone = self.abandoned = True
        return self.gone

    def over(self, *, ask_client: bool = False) -> bool:
        """True when work for this request should not start: abandoned, past its deadline, client gone."""
        if self.abandoned or (self.deadline is not None and time.monotonic() >= self.deadline):
            return True
        return ask_client and self.client_gone()

    def check(self, *, ask_client: bool = False) -> None:
        """Raise `GatewayTimeout` (504) or `ClientGone` (499) when work for this request should stop."""
        if not self.over(ask_client=ask_client):
            return
        if self.gone:
            raise ClientGone()
        raise GatewayTimeout("The request's time budget is spent")

    def charge_pixels(self, pixels: int, what: str = "images") -> None:
        """Take `pixels` from the allowance; `TooManyPixels` (413) when it would go below 0."""
        with self._lock:
            if self.pixels_left is None:
                return
            if pixels > self.pixels_left:
                raise TooManyPixels(
                    f"The {what} of this request decode to more pixels than a request may "
                    f"({self.pixels_left:,} left of MAX_PIXELS_PER_REQUEST): send fewer or smaller images",
                    limit=self.pixels_left,
                )
            self.pixels_left -= pixels

    def refund_pixels(self, pixels: int) -> None:
        """Give back what `charge_pixels` took for work that failed and will be redone."""
        with self._lock:
            if self.pixels_left is not None:
                self.pixels_left += pixels


def current_scope() -> RequestScope | None:
    """The scope of the request this code works for, if any."""
    scope = _SCOPE.get()
    return scope if isinstance(scope, RequestScope) else None


@contextmanager
def opened_scope(scope: RequestScope) -> Iterator[RequestScope]:
    """`scope` is the current one inside the block."""
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


def body_arrived() -> None:
    """The request's body has been read: its time budget starts now (see the module's docstring)."""
    scope = current_scope()
    if scope is not None:
        scope.body_arrived()
