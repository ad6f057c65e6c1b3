"""JWT authorization per channel (stand-in until the full module lands from the ``authz`` branch).

A token's ``ssehub`` claim (or Mercure's ``mercure`` claim, read the same way) grants channel
selectors: ``{"ssehub": {"subscribe": [...], "publish": [...], "payload": ...}}``. `JWTAuth`
verifies a token (signature, algorithm, ``exp``/``nbf``) into a `Grant`, and finds the token of a
`Request`: ``Authorization: Bearer``, then a cookie, then the ``authorization`` query parameter
(``EventSource`` cannot set headers). Needs PyJWT (``pip install 'ssehub[jwt]'``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ssehub.errors import InvalidToken
from ssehub.request import Request
from ssehub.selectors import InvalidSelector, Selectors

__all__ = ["DEFAULT_COOKIE_NAMES", "Grant", "JWTAuth"]

DEFAULT_COOKIE_NAMES = ("ssehubAuthorization", "mercureAuthorization")
"""The cookies a token is read from, in order."""

_MAX_TOKEN = 16 * 1024


@dataclass(frozen=True, slots=True)
class Grant:
    """What a verified token allows: the channels whose private events it reads
    (``subscribe``), the channels it publishes to (``publish``), its ``payload`` claim, when it
    expires (its ``exp``, a UNIX time) and its subject (``sub``)."""

    subscribe: Selectors
    publish: Selectors
    payload: Any = None
    expires: float | None = None
    subject: str | None = None


def _selectors(claim: dict[str, Any], name: str) -> Selectors:
    value = claim.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidToken(f"the token's {name!r} claim must be a list of channel selectors")
    try:
        return Selectors(value)
    except InvalidSelector as exc:
        raise InvalidToken(f"the token's {name!r} claim holds a bad selector: {exc}") from None


class JWTAuth:
    """Verifies JWTs signed with ``secret`` (HMAC) or ``public_key`` (a PEM, RSA or EC).

    ``algorithms`` are those accepted (default: HS256 with a secret, RS256 and ES256 with a
    public key); ``leeway`` is the clock skew allowed on ``exp`` and ``nbf``, in seconds. Raises
    ValueError when neither or both keys are given, or the public key is not a PEM one.
    """

    def __init__(
        self,
        *,
        secret: str | bytes | None = None,
        public_key: str | bytes | None = None,
        algorithms: Sequence[str] | None = None,
        leeway: float = 0,
        cookie_names: Iterable[str] = DEFAULT_COOKIE_NAMES,
    ) -> None:
        import jwt

        if (secret is None) == (public_key is None):
            raise ValueError("give either secret or public_key")
        self._key: Any
        if secret is not None:
            if not secret:
                raise ValueError("the secret may not be empty")
            self._key = secret
            default = ["HS256"]
        else:
            from cryptography.hazmat.primitives.serialization import load_pem_public_key

            assert public_key is not None
            pem = public_key.encode() if isinstance(public_key, str) else public_key
            self._key = load_pem_public_key(pem)  # ValueError when it is not a PEM key
            default = ["RS256", "ES256"]
        self.algorithms = list(algorithms) if algorithms is not None else default
        self.leeway = leeway
        self.cookie_names = tuple(cookie_names)
        self._jwt = jwt

    def verify(self, token: str) -> Grant:
        """The `Grant` of ``token``; `InvalidToken` when it cannot be trusted or used."""
        jwt = self._jwt
        if len(token) > _MAX_TOKEN:
            raise InvalidToken("the token is too large")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self.algorithms,
                leeway=self.leeway,
                options={"verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("the token is not valid yet") from None
        except jwt.InvalidAlgorithmError:
            raise InvalidToken(
                f"the token's algorithm is not allowed (allowed: {', '.join(self.algorithms)})"
            ) from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("the token's signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"the token is not valid: {type(exc).__name__}") from None
        claim = claims.get("ssehub", claims.get("mercure", {}))
        if not isinstance(claim, dict):
            raise InvalidToken("the token's ssehub (or mercure) claim must be an object")
        exp = claims.get("exp")
        subject = claims.get("sub")
        return Grant(
            subscribe=_selectors(claim, "subscribe"),
            publish=_selectors(claim, "publish"),
            payload=claim.get("payload"),
            expires=float(exp) if isinstance(exp, int | float) else None,
            subject=subject if isinstance(subject, str) else None,
        )

    def token_from(self, request: Request) -> str | None:
        """The token ``request`` carries: ``Authorization: Bearer``, then a cookie, then the
        ``authorization`` query parameter; None without one."""
        header = request.headers.get("authorization")
        if header is not None and header[:7].lower() == "bearer ":
            return header[7:].strip()
        cookies = request.headers.get("cookie")
        if cookies:
            found: dict[str, str] = {}
            for part in cookies.split(";"):
                name, sep, value = part.partition("=")
                if sep:
                    found.setdefault(name.strip(), value.strip().strip('"'))
            for name in self.cookie_names:
                if found.get(name):
                    return found[name]
        values = request.query_values("authorization")
        return values[0] if values and values[0] else None

    def grant_for(self, request: Request) -> Grant | None:
        """The `Grant` of ``request``'s token, None without one; raises `InvalidToken`."""
        token = self.token_from(request)
        return None if token is None else self.verify(token)
