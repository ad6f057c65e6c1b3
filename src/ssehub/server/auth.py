"""Who may publish and subscribe on ``ssehub serve``: the shared tokens and JWTs, as one object.

`Auth` holds the rules; `HubServer` asks it, and the hub calls its `Auth.authorize` hook.

Publishing (``POST /events/{channel}``, ``POST /events``, ``POST /broadcast``): `Auth.publisher`
decides from the request's head who publishes, as a `Publisher`:

- the shared publish token as ``Authorization: Bearer`` may publish anywhere (as before JWTs);
- otherwise, with a JWT key, the request's JWT (``Authorization: Bearer``, then a cookie, then
  the ``authorization`` query parameter) may publish to the channels its ``publish`` selectors
  match: no token or an unusable one is a 401, a channel outside them a 403
  (`Publisher.check`), and a broadcast needs ``*`` among them (`Publisher.check_broadcast`);
- otherwise a hub with a publish token answers 401, and a hub with neither is open.

Subscribing: `Auth.check_subscribe` is the gate before the stream opens. With the shared
subscribe token, a request needs it (header or ``?token=``) or, with a JWT key, a JWT. With
``require_subscriber_token``, it needs a JWT. Then the hub's hook, `Auth.authorize` (installed
only with a JWT key), verifies the JWT: none means public events only, an unusable one a 401
(`InvalidToken`), a valid one an `Access` whose ``private`` selectors are the token's
``subscribe`` ones and whose ``expires`` is its ``exp`` (the hub ends the stream then). The
channels asked for are never narrowed: public events of any channel stay readable, as in
Mercure.

A shared token sent as ``Authorization: Bearer`` is never read as a JWT, so it never gets a 401
from the JWT check, and a JWT never gets a 401 from the shared-token check.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from ssehub.asgi import request_from_scope
from ssehub.errors import InvalidToken
from ssehub.hub import Access
from ssehub.request import Request
from ssehub.selectors import Selectors
from ssehub.server.routing import HTTPError
from ssehub.types import Scope

if TYPE_CHECKING:  # ssehub.authz needs PyJWT, which a hub without JWTs does without
    from ssehub.authz import JWTAuth

__all__ = ["ANYONE", "BEARER_REALM", "INVALID_TOKEN", "Auth", "Publisher", "token_in"]

BEARER_REALM = ((b"www-authenticate", b'Bearer realm="ssehub"'),)
"""The challenge of a 401 for a request without the credential it needs."""

INVALID_TOKEN = ((b"www-authenticate", b'Bearer realm="ssehub", error="invalid_token"'),)
"""The challenge of a 401 for a token that is expired, badly signed or malformed (RFC 6750)."""


def token_in(scope: Scope, token: bytes) -> bool:
    """Whether the request carries ``token`` as ``Authorization: Bearer`` or ``?token=``."""
    return _bearer_is(scope, token) or _query_token_is(scope, token)


def _bearer_is(scope: Scope, token: bytes) -> bool:
    for name, value in scope["headers"]:
        if (
            name == b"authorization"
            and value[:7].lower() == b"bearer "
            and hmac.compare_digest(value[7:].strip(), token)
        ):
            return True
    return False


def _query_token_is(scope: Scope, token: bytes) -> bool:
    query = scope.get("query_string", b"")
    if query:
        for key, value in parse_qsl(query.decode("latin-1")):
            if key == "token" and hmac.compare_digest(value.encode("latin-1"), token):
                return True
    return False


def _same(text: str, token: bytes) -> bool:
    return hmac.compare_digest(text.encode("utf-8", "surrogateescape"), token)


def _in_cookie(request: Request, token: str) -> bool:
    """Whether ``token`` is the value of one of the request's cookies (sent by the browser on
    its own, rather than on purpose as a header or a query parameter)."""
    cookies = request.headers.get("cookie")
    if not cookies or token not in cookies:
        return False
    for pair in cookies.split(";"):
        _, equals, value = pair.partition("=")
        if equals and value.strip().strip('"') == token:
            return True
    return False


@dataclass(frozen=True, slots=True)
class Publisher:
    """Who publishes a request: the channels they may publish to, and how they said who they are.

    ``channels`` None means every channel (an open hub, or the shared publish token).
    ``explicit`` is True when the credential was sent on purpose (the ``Authorization`` header
    or a query parameter), which a browser on another site cannot be made to do; a cookie is
    sent by the browser on its own, so a cookie-borne token gets the same cross-site ``Origin``
    check as an open hub (`ssehub.server.publish.check_head`).
    """

    channels: Selectors | None
    explicit: bool
    expires: float | None = None
    """When the credential expires (a JWT's ``exp``, UNIX time): a streaming publish ends then."""

    def check(self, channels: Iterable[str]) -> None:
        """Raise `HTTPError` 403 for the first of ``channels`` outside `channels`."""
        allowed = self.channels
        if allowed is None:
            return
        for channel in channels:
            if not allowed.matches(channel):
                raise HTTPError(
                    403,
                    f"the token may not publish to {channel!r}: no selector of its publish "
                    "claim matches it",
                )

    def check_broadcast(self) -> None:
        """Raise `HTTPError` 403 unless this publisher may publish to every channel."""
        allowed = self.channels
        if allowed is not None and not allowed.everything:
            raise HTTPError(
                403, "broadcasting needs a token whose publish claim holds the selector '*'"
            )


ANYONE = Publisher(None, explicit=False)
"""The publisher of a hub without publish token or JWT key: anyone, anywhere."""

_TOKEN_HOLDER = Publisher(None, explicit=True)


class Auth:
    """The rules of ``ssehub serve``'s shared tokens and JWTs (see the module's docstring).

    Args:
        publish_token: the shared token that may publish anywhere (``Authorization: Bearer``).
        subscribe_token: the shared token a stream needs (header or ``?token=``), unless it
            carries a JWT.
        jwt: verifies JWTs (`ssehub.authz.JWTAuth`); None: no JWTs.
        require_subscriber_token: streams need a valid JWT (401 without one); needs ``jwt``.

    Raises ValueError for ``require_subscriber_token`` without ``jwt``.
    """

    def __init__(
        self,
        *,
        publish_token: str | None = None,
        subscribe_token: str | None = None,
        jwt: JWTAuth | None = None,
        require_subscriber_token: bool = False,
    ) -> None:
        if require_subscriber_token and jwt is None:
            raise ValueError("require_subscriber_token needs a JWT key (jwt)")
        self.jwt = jwt
        """The JWT verifier, or None."""
        self.require_subscriber_token = require_subscriber_token
        self._publish_token = publish_token.encode() if publish_token else None
        self._subscribe_token = subscribe_token.encode() if subscribe_token else None

    @property
    def subscribe_token(self) -> bytes | None:
        """The shared subscribe token (the default admin token), if set."""
        return self._subscribe_token

    def names(self) -> list[str]:
        """What is on, by name (never a value): ``jwt``, ``require-subscriber-token``,
        ``publish-token``, ``subscribe-token``."""
        on = [
            ("jwt", self.jwt is not None),
            ("require-subscriber-token", self.require_subscriber_token),
            ("publish-token", self._publish_token is not None),
            ("subscribe-token", self._subscribe_token is not None),
        ]
        return [name for name, is_on in on if is_on]

    # -- publishing ---------------------------------------------------------------------------

    def publisher(self, scope: Scope) -> Publisher:
        """Who publishes this request, from its head; `HTTPError` 401 when it may not."""
        shared = self._publish_token
        if shared is not None and _bearer_is(scope, shared):
            return _TOKEN_HOLDER
        jwt = self.jwt
        if jwt is None:
            if shared is None:
                return ANYONE
            raise HTTPError(
                401,
                "publishing needs the header 'Authorization: Bearer <publish token>'",
                BEARER_REALM,
            )
        request = request_from_scope(scope)
        try:
            token = jwt.token_from(request)
        except InvalidToken as exc:  # empty, or too large to read
            raise HTTPError(401, str(exc), INVALID_TOKEN) from None
        if token is None:
            raise HTTPError(
                401,
                "publishing needs a JWT whose publish claim matches the channel, as "
                "'Authorization: Bearer <token>', a cookie or ?authorization=<token>"
                + (" (or the publish token)" if shared is not None else ""),
                BEARER_REALM,
            )
        try:
            grant = jwt.verify(token)
        except InvalidToken as exc:
            raise HTTPError(401, str(exc), INVALID_TOKEN) from None
        return Publisher(
            grant.publish, explicit=not _in_cookie(request, token), expires=grant.expires
        )

    # -- subscribing --------------------------------------------------------------------------

    def check_subscribe(self, scope: Scope, request: Request) -> None:
        """The gate before a stream opens: `HTTPError` 401 for a request without the shared
        subscribe token (or a JWT instead), or without a JWT when one is required. The JWT
        itself is verified by the hub's hook (`authorize`)."""
        shared = self._subscribe_token
        if shared is None and not self.require_subscriber_token:
            return
        if not self.require_subscriber_token and shared is not None and token_in(scope, shared):
            return
        if self.jwt is not None:
            try:
                if self._jwt_of(request) is not None:
                    return
            except InvalidToken:
                return  # a JWT, and an unusable one: the hook answers 401 invalid_token
        if self.require_subscriber_token:
            message = (
                "subscribing needs a JWT: 'Authorization: Bearer <token>', a cookie or "
                "?authorization=<token>"
            )
        elif self.jwt is not None:
            message = (
                "subscribing needs 'Authorization: Bearer <subscribe token>' or ?token=<token>, "
                "or a JWT ('Authorization: Bearer <jwt>', a cookie or ?authorization=<jwt>)"
            )
        else:
            message = (
                "subscribing needs 'Authorization: Bearer <subscribe token>' or ?token=<token>"
            )
        raise HTTPError(401, message, BEARER_REALM)

    def authorize(self, request: Request, channels: Sequence[str]) -> bool | Access:
        """The hub's ``authorize`` hook (with a JWT key): public events without a JWT, and with
        a valid one its ``subscribe`` selectors' private events until its ``exp``, and its
        ``payload`` claim as the subscription's payload (shown by presence).

        Raises `InvalidToken` (a 401) for an unusable JWT, or for none when one is required.
        """
        jwt = self.jwt
        token = None if jwt is None else self._jwt_of(request)
        if token is None or jwt is None:
            if self.require_subscriber_token:
                raise InvalidToken("subscribing needs a JWT")
            return True
        grant = jwt.verify(token)
        return Access(private=grant.subscribe, expires=grant.expires, payload=grant.payload)

    def _jwt_of(self, request: Request) -> str | None:
        # The request's JWT: the shared subscribe token in the header is not one, so look past
        # it at the cookies and the query.
        jwt = self.jwt
        assert jwt is not None
        token = jwt.token_from(request)
        shared = self._subscribe_token
        if token is not None and shared is not None and _same(token, shared):
            headers = {k: v for k, v in request.headers.items() if k != "authorization"}
            token = jwt.token_from(replace(request, headers=headers))
        return token
