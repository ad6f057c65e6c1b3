"""The errors the SSE client raises."""

from __future__ import annotations

from ssehub.errors import SSEHubError


class ClientError(SSEHubError):
    """Base class of the errors the SSE client raises."""


class BadStatus(ClientError):
    """The server answered with a status that must not be retried (e.g. 401, 403, 404).

    ``status_code`` is the HTTP status, ``body`` the start of the response body (for the
    server's error message). 5xx, 408 and 429 are retried instead; 204 ends the stream quietly.
    """

    def __init__(self, url: str, status_code: int, body: str) -> None:
        self.url = url
        self.status_code = status_code
        self.body = body
        detail = f": {body}" if body else ""
        super().__init__(f"GET {url} answered HTTP {status_code}{detail}")


class BadContentType(ClientError):
    """The server answered 200 with a Content-Type other than ``text/event-stream``."""

    def __init__(self, url: str, content_type: str | None) -> None:
        self.url = url
        self.content_type = content_type
        super().__init__(
            f"GET {url} answered Content-Type {content_type!r}; expected text/event-stream"
        )


class UnsendableRequest(ClientError, ValueError):
    """The HTTP layer refused to send the request (a header value it cannot carry, say).

    Raised at once rather than retried: the same request would be refused again. Ids that a
    ``Last-Event-ID`` header cannot carry never cause it: they are sent as ``?lastEventId=``.
    """


class ConnectionLost(ClientError, ConnectionError):
    """The stream dropped and ``max_reconnects`` attempts in a row failed to reopen it.

    The last connection error, if any, is the ``__cause__``.
    """


class RetryableStatus(ClientError):
    """The server answered a status worth retrying (5xx, 408, 429).

    Never raised to the caller on its own: it is the ``__cause__`` of the `ConnectionLost`
    raised when such answers use up ``max_reconnects``.
    """

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        super().__init__(f"HTTP {status_code}")
