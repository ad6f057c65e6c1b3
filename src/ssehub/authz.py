"""JWT authorization per channel, as Mercure does it: a token lists the selectors it may subscribe
to and publish to, in its ``ssehub`` claim (or Mercure's ``mercure`` claim, read the same way)::

    {"sub": "ann", "exp": 1767225600,
     "ssehub": {"subscribe": ["/events/news", "/events/rooms/{id}"], "publish": [],
                "payload": {"name": "Ann"}}}

`JWTAuth` finds a request's token (``Authorization: Bearer``, else a cookie, else a query
parameter, as an ``EventSource`` cannot send headers), verifies it, and answers a `Grant`.

Needs PyJWT (with its crypto extra for RSA and EC keys): ``pip install 'ssehub[jwt]'``.
``import ssehub`` does not import this module: import ``ssehub.authz``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from ssehub.errors import InvalidSelector, InvalidToken
from ssehub.request import Request
from ssehub.selectors import Selectors

try:
    import jwt
    from jwt.algorithms import has_crypto
except ImportError as error:
    raise ImportError(
        "ssehub.authz needs PyJWT: pip install 'ssehub[jwt]' (PyJWT[crypto] for RSA and EC keys)"
    ) from error

__all__ = [
    "CLAIMS",
    "DEFAULT_COOKIE_NAMES",
    "DEFAULT_QUERY_NAMES",
    "MAX_TOKEN_SIZE",
    "Grant",
    "InvalidToken",
    "JWTAuth",
]

MAX_TOKEN_SIZE: Final = 8192
"""The longest token accepted, in characters; a longer one raises `InvalidToken` unread."""

CLAIMS: Final = ("ssehub", "mercure")
"""The claims that hold a token's selectors, in order of precedence."""

DEFAULT_COOKIE_NAMES: Final = ("ssehubAuthorization", "mercureAuthorization", "mercureAccessToken")
"""The cookies a token is read from, in order of precedence."""

DEFAULT_QUERY_NAMES: Final = ("authorization", "access_token")
"""The query parameters a token is read from, in order of precedence (after the cookies)."""

# RFC 7518 section 3.2: an HMAC key must be at least as long as the hash's output.
_HMAC_KEY_SIZES: Final = {"HS256": 32, "HS384": 48, "HS512": 64}
_RSA_ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_RSA_DEFAULT: Final = ("RS256", "RS384", "RS512")
_RSA_MIN_BITS: Final = 2048
_EC_ALGORITHMS: Final = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


@dataclass(frozen=True, slots=True)
class Grant:
    """What a verified token allows: the channels its bearer may subscribe and publish to.

    ``payload`` is the claim's ``payload`` member (any JSON value, e.g. to show to others in
    presence), ``expires`` the token's ``exp`` (UNIX time) and ``subject`` its ``sub``.
    `Grant.ANONYMOUS` grants nothing.
    """

    subscribe: Selectors = field(default_factory=Selectors)
    publish: Selectors = field(default_factory=Selectors)
    payload: Any = None
    expires: float | None = None
    subject: str | None = None

    ANONYMOUS: ClassVar[Grant]
    """The grant of a request without a token: no channel, no payload, no expiry."""


Grant.ANONYMOUS = Grant()


class JWTAuth:
    """Verifies JWTs signed with an HMAC ``secret`` or the private key of an RSA or EC
    ``public_key`` (PEM), and turns them into `Grant` values.

    Exactly one of ``secret`` and ``public_key`` (`ValueError` otherwise). The algorithms
    default to those the key allows: HS256, and HS384 and HS512 when the secret is long enough
    for them (a secret shorter than 32 bytes is refused, RFC 7518); RS256, RS384 and RS512 for
    an RSA key (2048 bits at least); the one ES algorithm of an EC key's curve (P-256, P-384,
    P-521). ``none``, and any HMAC algorithm with a public key (the algorithm-confusion attack),
    are never accepted. ``leeway`` is the clock skew allowed on ``exp`` and ``nbf``, in seconds.
    A token naming an audience is refused unless ``audience`` is given and matches it; with
    ``issuer``, the token's ``iss`` must match. Immutable and safe to share between threads.
    """

    __slots__ = (
        "_algorithms",
        "_audience",
        "_cookie_names",
        "_issuer",
        "_key",
        "_leeway",
        "_query_names",
    )

    def __init__(
        self,
        *,
        secret: str | bytes | None = None,
        public_key: str | bytes | None = None,
        algorithms: Sequence[str] | None = None,
        leeway: float = 0.0,
        cookie_names: Sequence[str] = DEFAULT_COOKIE_NAMES,
        query_names: Sequence[str] = DEFAULT_QUERY_NAMES,
        audience: str | Sequence[str] | None = None,
        issuer: str | None = None,
    ) -> None:
        if (secret is None) == (public_key is None):
            raise ValueError("give exactly one of secret= (HMAC) and public_key= (RSA or EC, PEM)")
        if algorithms is not None:
            algorithms = _names("algorithms", algorithms)
            if not algorithms:
                raise ValueError("algorithms must name at least one algorithm")
            if any(name.lower() == "none" for name in algorithms):
                raise ValueError("the 'none' algorithm is never accepted: tokens must be signed")
        self._key: Any
        if secret is not None:
            self._key, self._algorithms = _secret(secret, algorithms)
        else:
            assert public_key is not None
            self._key, self._algorithms = _public_key(public_key, algorithms)
        if isinstance(leeway, bool) or not isinstance(leeway, int | float):
            raise TypeError("leeway is a number of seconds")
        if not math.isfinite(leeway) or leeway < 0:
            raise ValueError("leeway must be a finite number of seconds, 0 or more")
        self._leeway = float(leeway)
        self._cookie_names = _names("cookie_names", cookie_names)
        self._query_names = _names("query_names", query_names)
        self._audience = (
            audience if audience is None or isinstance(audience, str) else tuple(audience)
        )
        self._issuer = issuer

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The signature algorithms a token may use."""
        return self._algorithms

    def __repr__(self) -> str:
        # Never the key: a secret must not reach a log through a repr.
        return f"JWTAuth(algorithms={self._algorithms!r})"

    def verify(self, token: str) -> Grant:
        """The grant ``token`` carries; raises `InvalidToken` saying what is wrong with it.

        A valid token without an ``ssehub`` or ``mercure`` claim grants no channel (its
        ``sub``, ``exp`` are still carried). When both claims are present, ``ssehub`` is read.
        A claim or a list that is ``null`` counts as absent.
        """
        if not isinstance(token, str):
            raise TypeError(f"a token is a str, not {type(token).__name__}")
        _check_size(token)
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=list(self._algorithms),
                leeway=self._leeway,
                audience=self._audience,
                issuer=self._issuer,
                options={"enforce_minimum_key_length": True},
            )
        except jwt.ExpiredSignatureError as error:
            raise InvalidToken("token expired") from error
        except jwt.ImmatureSignatureError as error:
            raise InvalidToken("token not yet valid (nbf or iat in the future)") from error
        except jwt.InvalidAlgorithmError as error:
            raise InvalidToken(
                f"token signed with an algorithm that is not allowed here "
                f"(allowed: {', '.join(self._algorithms)})"
            ) from error
        except jwt.InvalidSignatureError as error:
            raise InvalidToken("bad token signature") from error
        except jwt.InvalidAudienceError as error:
            raise InvalidToken(f"token audience not accepted ({error})") from error
        except jwt.InvalidIssuerError as error:
            raise InvalidToken(f"token issuer not accepted ({error})") from error
        except jwt.MissingRequiredClaimError as error:
            raise InvalidToken(f"token lacks the required claim {error.claim!r}") from error
        except jwt.DecodeError as error:
            # PyJWT's messages name what is wrong (segments, padding, JSON, a claim's type),
            # never the token's text.
            raise InvalidToken(f"malformed token: {error}") from error
        except jwt.InvalidTokenError as error:
            raise InvalidToken(f"invalid token: {error}") from error
        return _grant(claims)

    def token_from(self, request: Request) -> str | None:
        """The token ``request`` presents, or None.

        Looked for, in order: the ``Authorization: Bearer`` header (the scheme in any case; a
        header of another scheme, such as Basic, is not a JWT and is passed over), the cookies
        in ``cookie_names``, then the query parameters in ``query_names``. Raises
        `InvalidToken` for an empty bearer token or a token longer than `MAX_TOKEN_SIZE`.
        """
        header = request.headers.get("authorization")
        if header is not None:
            parts = header.split(None, 1)
            if parts and parts[0].lower() == "bearer":
                token = parts[1].strip() if len(parts) == 2 else ""
                if not token:
                    raise InvalidToken("empty bearer token in the Authorization header")
                return _check_size(token)
        cookie = request.headers.get("cookie")
        if cookie:
            cookies = _cookies(cookie, self._cookie_names)
            for name in self._cookie_names:
                value = cookies.get(name)
                if value:
                    return _check_size(value)
        for name in self._query_names:
            value = request.query.get(name)
            if value:
                return _check_size(value)
        return None

    def grant_for(self, request: Request) -> Grant | None:
        """The grant of the token ``request`` presents: None when it presents none (the caller
        decides what an anonymous request may do, e.g. `Grant.ANONYMOUS`); raises
        `InvalidToken` when it presents one that is not valid."""
        token = self.token_from(request)
        return None if token is None else self.verify(token)


def _names(argument: str, names: Sequence[str]) -> tuple[str, ...]:
    if isinstance(names, str) or not all(isinstance(name, str) for name in names):
        raise TypeError(f"{argument} is a sequence of str, e.g. ({names!r},)")
    return tuple(names)


def _secret(
    secret: str | bytes, algorithms: tuple[str, ...] | None
) -> tuple[bytes, tuple[str, ...]]:
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    if key.lstrip().startswith((b"-----BEGIN", b"ssh-")):
        raise ValueError("secret looks like a PEM or SSH key: give a public key as public_key=")
    if len(key) < _HMAC_KEY_SIZES["HS256"]:
        raise ValueError(
            f"secret is {len(key)} bytes long; HMAC needs 32 at least (RFC 7518, section 3.2)"
        )
    if algorithms is None:
        return key, tuple(name for name, size in _HMAC_KEY_SIZES.items() if len(key) >= size)
    for name in algorithms:
        if name not in _HMAC_KEY_SIZES:
            raise ValueError(
                f"algorithm {name!r} does not go with a secret: use HS256, HS384 or HS512"
            )
        if len(key) < _HMAC_KEY_SIZES[name]:
            raise ValueError(
                f"secret is {len(key)} bytes long; {name} needs {_HMAC_KEY_SIZES[name]} at least"
            )
    return key, algorithms


def _public_key(
    pem: str | bytes, algorithms: tuple[str, ...] | None
) -> tuple[Any, tuple[str, ...]]:
    if not has_crypto:
        raise ImportError(
            "verifying RSA and EC signatures needs cryptography: pip install 'ssehub[jwt]'"
        )
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    data = pem.encode() if isinstance(pem, str) else bytes(pem)
    if b"PRIVATE KEY" in data:
        raise ValueError(
            "public_key holds a private key: give the public key "
            "(PEM, -----BEGIN PUBLIC KEY-----), and keep the private key with the token issuer"
        )
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise ValueError(
            "public_key is not a PEM public key (-----BEGIN PUBLIC KEY-----)"
        ) from error
    allowed: tuple[str, ...]
    default: tuple[str, ...]
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _RSA_MIN_BITS:
            raise ValueError(
                f"public_key is a {key.key_size}-bit RSA key; {_RSA_MIN_BITS} bits at least"
            )
        allowed, default = _RSA_ALGORITHMS, _RSA_DEFAULT
    elif isinstance(key, ec.EllipticCurvePublicKey):
        algorithm = _EC_ALGORITHMS.get(key.curve.name)
        if algorithm is None:
            raise ValueError(
                f"public_key is an EC key on {key.curve.name}; supported curves: P-256 (ES256), "
                "P-384 (ES384), P-521 (ES512)"
            )
        allowed = default = (algorithm,)
    else:
        raise ValueError(
            f"public_key is a {type(key).__name__}; supported keys: RSA and EC (P-256, P-384, "
            "P-521)"
        )
    if algorithms is None:
        return key, default
    for name in algorithms:
        if name not in allowed:
            raise ValueError(
                f"algorithm {name!r} does not go with this public key (allowed: "
                f"{', '.join(allowed)}); an HMAC algorithm with a public key would let anyone "
                "who has the public key sign tokens"
            )
    return key, algorithms


def _check_size(token: str) -> str:
    if len(token) > MAX_TOKEN_SIZE:
        raise InvalidToken(
            f"token too large: {len(token)} characters, the limit is {MAX_TOKEN_SIZE}"
        )
    return token


def _cookies(header: str, wanted: Sequence[str]) -> dict[str, str]:
    """The values of the ``wanted`` cookies in a ``Cookie`` header.

    By hand rather than with `http.cookies`, which gives up on the whole header at the first
    cookie it finds malformed. The first of several cookies of one name wins: browsers send the
    one of the most specific path first (RFC 6265, section 5.4).
    """
    found: dict[str, str] = {}
    for pair in header.split(";"):
        name, equals, value = pair.partition("=")
        name = name.strip()
        if not equals or name not in wanted or name in found:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        found[name] = value
    return found


def _grant(claims: Mapping[str, Any]) -> Grant:
    subject = claims.get("sub")
    if subject is not None and not isinstance(subject, str):
        raise InvalidToken("claim 'sub' must be a string")
    expires = claims.get("exp")
    name = next((name for name in CLAIMS if claims.get(name) is not None), None)
    if name is None:
        return Grant(subject=subject, expires=None if expires is None else float(expires))
    claim = claims[name]
    if not isinstance(claim, dict):
        raise InvalidToken(f"claim {name!r} must be a JSON object")
    return Grant(
        subscribe=_selectors(claim, name, "subscribe"),
        publish=_selectors(claim, name, "publish"),
        payload=claim.get("payload"),
        expires=None if expires is None else float(expires),
        subject=subject,
    )


def _selectors(claim: Mapping[str, Any], name: str, member: str) -> Selectors:
    texts = claim.get(member)
    if texts is None:
        return Selectors()
    where = f"claim '{name}.{member}'"
    if not isinstance(texts, list):
        raise InvalidToken(f"{where} must be a list of selector strings")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidToken(
                f"{where} must be a list of selector strings (item {index} is a "
                f"{type(text).__name__})"
            )
    try:
        return Selectors(texts)
    except InvalidSelector as error:
        raise InvalidToken(f"{where}: {error}") from error
