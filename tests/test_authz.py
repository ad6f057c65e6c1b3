"""ssehub.authz: JWTs (the ssehub or mercure claim) verified into grants of channel selectors."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

import ssehub
from ssehub import InvalidToken, Request, Selectors
from ssehub.authz import (
    DEFAULT_COOKIE_NAMES,
    DEFAULT_QUERY_NAMES,
    MAX_TOKEN_SIZE,
    Grant,
    JWTAuth,
)

SECRET = "a-secret-of-exactly-thirty-two-b"  # 32 bytes: HS256 only
LONG_SECRET = "s" * 64  # HS256, HS384 and HS512


@dataclass(frozen=True)
class KeyPair:
    private: Any
    public_pem: str


def pem_of(public_key: Any) -> str:
    data: bytes = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data.decode()


@pytest.fixture(scope="module")
def rsa_key() -> KeyPair:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return KeyPair(private, pem_of(private.public_key()))


@pytest.fixture(scope="module")
def other_rsa_key() -> KeyPair:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return KeyPair(private, pem_of(private.public_key()))


@pytest.fixture(scope="module")
def ec_key() -> KeyPair:
    private = ec.generate_private_key(ec.SECP256R1())
    return KeyPair(private, pem_of(private.public_key()))


def now() -> int:
    return int(time.time())


def claims(**extra: Any) -> dict[str, Any]:
    return {"exp": now() + 3600, **extra}


def hs256(payload: Mapping[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(dict(payload), secret, algorithm=algorithm)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def by_hand(header: Any, payload: Any, key: bytes | None) -> str:
    """A token PyJWT refuses to make: HS256 keyed with a PEM public key, alg none, or claims
    that are not a JSON object (``bytes`` are taken as the encoded JSON, or not JSON at all)."""
    parts = [
        part if isinstance(part, bytes) else json.dumps(part).encode() for part in (header, payload)
    ]
    signing_input = f"{b64(parts[0])}.{b64(parts[1])}"
    if key is None:
        return signing_input + "."
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def resigned(token: str) -> str:
    """``token`` with one character of its signature changed."""
    head, _, signature = token.rpartition(".")
    changed = "A" if signature[10] != "A" else "B"
    return f"{head}.{signature[:10]}{changed}{signature[11:]}"


def request(
    headers: Mapping[str, str] | None = None, query: Mapping[str, str] | None = None
) -> Request:
    return Request("GET", "/events/news", headers=dict(headers or {}), query=dict(query or {}))


def refused(auth: JWTAuth, token: str, reason: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as raised:
        auth.verify(token)
    message = str(raised.value)
    assert reason in message
    # The message never holds the token, nor any of its segments.
    if token:
        assert token not in message
    for segment in token.split("."):
        if len(segment) >= 8:
            assert segment not in message
    return raised.value


# ---------------------------------------------------------------- the module and its errors


def test_invalid_token_is_an_ssehub_error_and_a_permission_error() -> None:
    assert ssehub.InvalidToken is InvalidToken
    assert issubclass(InvalidToken, ssehub.SSEHubError)
    assert issubclass(InvalidToken, PermissionError)


def test_import_ssehub_does_not_import_authz_or_pyjwt() -> None:
    code = (
        "import sys; import ssehub; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'jwt' or m == 'ssehub.authz'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


def test_without_pyjwt_ssehub_imports_and_authz_says_what_to_install() -> None:
    code = (
        "import sys\n"
        "sys.modules['jwt'] = None  # as if PyJWT were not installed\n"
        "import ssehub\n"
        "try:\n"
        "    import ssehub.authz\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'ssehub[jwt]'" in result.stdout


# ---------------------------------------------------------------- configuration


def test_a_secret_or_a_public_key_exactly(rsa_key: KeyPair) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        JWTAuth()
    with pytest.raises(ValueError, match="exactly one"):
        JWTAuth(secret=SECRET, public_key=rsa_key.public_pem)


def test_default_algorithms_follow_the_key(rsa_key: KeyPair, ec_key: KeyPair) -> None:
    assert JWTAuth(secret=SECRET).algorithms == ("HS256",)
    assert JWTAuth(secret="x" * 48).algorithms == ("HS256", "HS384")
    assert JWTAuth(secret=LONG_SECRET.encode()).algorithms == ("HS256", "HS384", "HS512")
    assert JWTAuth(public_key=rsa_key.public_pem).algorithms == ("RS256", "RS384", "RS512")
    assert JWTAuth(public_key=ec_key.public_pem.encode()).algorithms == ("ES256",)
    p384 = pem_of(ec.generate_private_key(ec.SECP384R1()).public_key())
    assert JWTAuth(public_key=p384).algorithms == ("ES384",)
    p521 = pem_of(ec.generate_private_key(ec.SECP521R1()).public_key())
    assert JWTAuth(public_key=p521).algorithms == ("ES512",)


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="31 bytes long; HMAC needs 32"):
        JWTAuth(secret="x" * 31)
    with pytest.raises(ValueError, match="HS512 needs 64"):
        JWTAuth(secret=SECRET, algorithms=["HS512"])


def test_a_pem_key_given_as_secret_is_refused(rsa_key: KeyPair) -> None:
    with pytest.raises(ValueError, match="give a public key as public_key="):
        JWTAuth(secret=rsa_key.public_pem)


def test_the_none_algorithm_is_never_accepted(rsa_key: KeyPair) -> None:
    with pytest.raises(ValueError, match="'none' algorithm is never accepted"):
        JWTAuth(secret=SECRET, algorithms=["HS256", "none"])
    with pytest.raises(ValueError, match="'none' algorithm is never accepted"):
        JWTAuth(public_key=rsa_key.public_pem, algorithms=["None"])


def test_an_hmac_algorithm_with_a_public_key_is_refused(rsa_key: KeyPair, ec_key: KeyPair) -> None:
    with pytest.raises(ValueError, match="'HS256' does not go with this public key"):
        JWTAuth(public_key=rsa_key.public_pem, algorithms=["RS256", "HS256"])
    with pytest.raises(ValueError, match="'ES384' does not go with this public key"):
        JWTAuth(public_key=ec_key.public_pem, algorithms=["ES384"])
    with pytest.raises(ValueError, match="'RS256' does not go with a secret"):
        JWTAuth(secret=SECRET, algorithms=["RS256"])
    with pytest.raises(ValueError, match="at least one"):
        JWTAuth(secret=SECRET, algorithms=[])


def test_a_key_that_is_not_a_public_key_is_refused(rsa_key: KeyPair) -> None:
    private_pem = rsa_key.private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="holds a private key"):
        JWTAuth(public_key=private_pem)
    with pytest.raises(ValueError, match="not a PEM public key"):
        JWTAuth(public_key="not a key")
    with pytest.raises(ValueError, match="not a PEM public key"):
        JWTAuth(public_key=SECRET)


def test_weak_or_unsupported_public_keys_are_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    with pytest.raises(ValueError, match="1024-bit RSA key; 2048 bits at least"):
        JWTAuth(public_key=pem_of(small))
    k1 = ec.generate_private_key(ec.SECP256K1()).public_key()
    with pytest.raises(ValueError, match="EC key on secp256k1"):
        JWTAuth(public_key=pem_of(k1))
    edwards = ed25519.Ed25519PrivateKey.generate().public_key()
    with pytest.raises(ValueError, match="supported keys: RSA and EC"):
        JWTAuth(public_key=pem_of(edwards))


def test_bad_options_are_refused() -> None:
    with pytest.raises(TypeError, match="cookie_names is a sequence of str"):
        JWTAuth(secret=SECRET, cookie_names="token")
    with pytest.raises(TypeError, match="query_names is a sequence of str"):
        JWTAuth(secret=SECRET, query_names=[1])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="leeway"):
        JWTAuth(secret=SECRET, leeway=-1)
    with pytest.raises(ValueError, match="leeway"):
        JWTAuth(secret=SECRET, leeway=float("nan"))
    with pytest.raises(TypeError, match="leeway"):
        JWTAuth(secret=SECRET, leeway="5")  # type: ignore[arg-type]


def test_the_repr_never_shows_the_secret() -> None:
    auth = JWTAuth(secret=SECRET)
    assert SECRET not in repr(auth)
    assert repr(auth) == "JWTAuth(algorithms=('HS256',))"


# ---------------------------------------------------------------- grants


def test_the_ssehub_claim_grants_its_selectors_payload_subject_and_expiry() -> None:
    auth = JWTAuth(secret=SECRET)
    expires = now() + 3600
    token = hs256(
        {
            "sub": "ann",
            "exp": expires,
            "ssehub": {
                "subscribe": ["/events/news", "/events/rooms/{id}"],
                "publish": ["/events/rooms/1"],
                "payload": {"name": "Ann", "roles": ["admin"]},
            },
        }
    )
    grant = auth.verify(token)
    assert grant.subscribe == Selectors(["/events/news", "/events/rooms/{id}"])
    assert grant.subscribe.matches("/events/rooms/42")
    assert not grant.subscribe.matches("/events/other")
    assert grant.publish == Selectors(["/events/rooms/1"])
    assert grant.payload == {"name": "Ann", "roles": ["admin"]}
    assert grant.subject == "ann"
    assert grant.expires == float(expires)
    assert isinstance(grant.expires, float)


def test_the_mercure_claim_is_read_the_same_way() -> None:
    auth = JWTAuth(secret=SECRET)
    grant = auth.verify(
        hs256(claims(mercure={"subscribe": ["*"], "publish": ["/a"], "payload": 7}))
    )
    assert grant.subscribe.everything
    assert grant.publish.names == frozenset({"/a"})
    assert grant.payload == 7


def test_when_both_claims_are_present_the_ssehub_claim_wins() -> None:
    auth = JWTAuth(secret=SECRET)
    token = hs256(
        claims(ssehub={"subscribe": ["/mine"]}, mercure={"subscribe": ["*"], "publish": ["*"]})
    )
    grant = auth.verify(token)
    assert grant.subscribe == Selectors(["/mine"])
    assert grant.publish == Selectors()


def test_a_null_claim_or_list_counts_as_absent() -> None:
    auth = JWTAuth(secret=SECRET)
    grant = auth.verify(hs256(claims(ssehub=None, mercure={"subscribe": ["/m"], "publish": None})))
    assert grant.subscribe == Selectors(["/m"])
    assert grant.publish == Selectors()


def test_missing_lists_grant_nothing() -> None:
    auth = JWTAuth(secret=SECRET)
    grant = auth.verify(hs256(claims(ssehub={"payload": "p"})))
    assert grant.subscribe == Selectors()
    assert grant.publish == Selectors()
    assert not grant.subscribe.matches("/a")
    assert grant.payload == "p"


def test_a_token_without_the_claim_is_valid_but_grants_nothing() -> None:
    auth = JWTAuth(secret=SECRET)
    grant = auth.verify(hs256({"sub": "bob"}))
    assert grant == Grant(subject="bob")
    assert grant.expires is None
    assert not grant.subscribe
    assert not grant.publish


def test_the_anonymous_grant_grants_nothing() -> None:
    anonymous = Grant.ANONYMOUS
    assert anonymous == Grant()
    assert not anonymous.subscribe.matches("/a")
    assert not anonymous.publish.matches("/a")
    assert anonymous.payload is None
    assert anonymous.subject is None
    assert anonymous.expires is None


@pytest.mark.parametrize("algorithm", ["RS256", "RS384", "RS512"])
def test_rsa_signed_tokens_are_verified_with_the_public_key(
    rsa_key: KeyPair, algorithm: str
) -> None:
    auth = JWTAuth(public_key=rsa_key.public_pem)
    token = jwt.encode(claims(ssehub={"subscribe": ["/a"]}), rsa_key.private, algorithm=algorithm)
    assert auth.verify(token).subscribe == Selectors(["/a"])


def test_rsa_pss_is_accepted_when_asked_for(rsa_key: KeyPair) -> None:
    auth = JWTAuth(public_key=rsa_key.public_pem, algorithms=["PS256"])
    token = jwt.encode(claims(mercure={"publish": ["/p"]}), rsa_key.private, algorithm="PS256")
    assert auth.verify(token).publish == Selectors(["/p"])
    rs256 = jwt.encode(claims(), rsa_key.private, algorithm="RS256")
    refused(auth, rs256, "algorithm that is not allowed here (allowed: PS256)")


def test_ec_signed_tokens_are_verified_with_the_public_key(ec_key: KeyPair) -> None:
    auth = JWTAuth(public_key=ec_key.public_pem)
    token = jwt.encode(claims(ssehub={"subscribe": ["/e/{x}"]}), ec_key.private, algorithm="ES256")
    assert auth.verify(token).subscribe.matches("/e/1")


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
def test_each_hmac_algorithm_is_verified_with_a_long_enough_secret(algorithm: str) -> None:
    auth = JWTAuth(secret=LONG_SECRET)
    token = hs256(claims(ssehub={"subscribe": ["/a"]}), LONG_SECRET, algorithm)
    assert auth.verify(token).subscribe == Selectors(["/a"])


# ---------------------------------------------------------------- refusals


def test_an_expired_token_is_refused_unless_within_the_leeway() -> None:
    token = hs256({"exp": now() - 30})
    refused(JWTAuth(secret=SECRET), token, "token expired")
    assert JWTAuth(secret=SECRET, leeway=120).verify(token).expires is not None


def test_a_token_not_yet_valid_is_refused_unless_within_the_leeway() -> None:
    token = hs256({"nbf": now() + 60})
    refused(JWTAuth(secret=SECRET), token, "not yet valid")
    assert JWTAuth(secret=SECRET, leeway=120).verify(token) == Grant()


def test_a_tampered_token_is_refused() -> None:
    token = hs256(claims(ssehub={"subscribe": ["/mine"]}))
    header, _, signature = token.split(".")
    forged = b64(json.dumps(claims(ssehub={"subscribe": ["*"]})).encode())
    refused(JWTAuth(secret=SECRET), f"{header}.{forged}.{signature}", "bad token signature")


def test_a_token_signed_with_another_key_is_refused(
    rsa_key: KeyPair, other_rsa_key: KeyPair
) -> None:
    refused(
        JWTAuth(secret=SECRET),
        hs256(claims(), "another-secret-also-32-bytes-long"),
        "bad token signature",
    )
    token = jwt.encode(claims(), other_rsa_key.private, algorithm="RS256")
    refused(JWTAuth(public_key=rsa_key.public_pem), token, "bad token signature")


def test_algorithm_confusion_hs256_signed_with_the_public_key_is_refused(
    rsa_key: KeyPair, ec_key: KeyPair
) -> None:
    # An attacker who knows the public key signs an HS256 token with the PEM as the secret.
    payload = claims(ssehub={"subscribe": ["*"], "publish": ["*"]})
    for key in (rsa_key, ec_key):
        forged = by_hand({"alg": "HS256", "typ": "JWT"}, payload, key.public_pem.encode())
        refused(JWTAuth(public_key=key.public_pem), forged, "algorithm that is not allowed here")


def test_alg_none_or_no_alg_is_refused(rsa_key: KeyPair) -> None:
    payload = claims(ssehub={"subscribe": ["*"]})
    headers = ({"alg": "none"}, {"alg": "None"}, {"alg": "NONE", "typ": "JWT"}, {"typ": "JWT"})
    for header in headers:
        token = by_hand(header, payload, None)
        refused(JWTAuth(secret=SECRET), token, "algorithm that is not allowed here")
        refused(JWTAuth(public_key=rsa_key.public_pem), token, "algorithm that is not allowed here")


def test_a_token_of_another_family_is_refused(rsa_key: KeyPair) -> None:
    refused(
        JWTAuth(public_key=rsa_key.public_pem), hs256(claims()), "algorithm that is not allowed"
    )
    rs256 = jwt.encode(claims(), rsa_key.private, algorithm="RS256")
    refused(JWTAuth(secret=SECRET), rs256, "algorithm that is not allowed here (allowed: HS256)")
    hs512 = hs256(claims(), LONG_SECRET, "HS512")
    refused(JWTAuth(secret=LONG_SECRET, algorithms=["HS256"]), hs512, "not allowed")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "bm90IGpzb24.e30.c2ln",  # header is not JSON
        "W10.e30.c2ln",  # header is a JSON array
        # Correctly signed, but the claims are not a JSON object.
        by_hand({"alg": "HS256"}, b"not json", SECRET.encode()),
        by_hand({"alg": "HS256"}, [1, 2], SECRET.encode()),
        by_hand({"alg": "HS256"}, b"\xff\xfe", SECRET.encode()),
    ],
)
def test_a_malformed_token_is_refused(token: str) -> None:
    refused(JWTAuth(secret=SECRET), token, "malformed token")


def test_an_oversized_token_is_refused_unread() -> None:
    token = "x" * (MAX_TOKEN_SIZE + 1)
    refused(JWTAuth(secret=SECRET), token, "token too large: 8193 characters, the limit is 8192")


def test_a_token_that_is_not_a_str_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        JWTAuth(secret=SECRET).verify(b"a.b.c")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"ssehub": ["/a"]}, "claim 'ssehub' must be a JSON object"),
        ({"mercure": "/a"}, "claim 'mercure' must be a JSON object"),
        ({"ssehub": {"subscribe": "/a"}}, "claim 'ssehub.subscribe' must be a list of selector"),
        ({"ssehub": {"publish": {"/a": 1}}}, "claim 'ssehub.publish' must be a list of selector"),
        ({"ssehub": {"subscribe": ["/a", 1]}}, "(item 1 is a int)"),
        ({"mercure": {"publish": [None]}}, "(item 0 is a NoneType)"),
        ({"ssehub": {"subscribe": ["/a/{id"]}}, "claim 'ssehub.subscribe': unclosed '{'"),
        ({"ssehub": {"publish": [""]}}, "claim 'ssehub.publish': a selector must not be empty"),
        ({"ssehub": {"subscribe": [f"/{i}" for i in range(65)]}}, "more than 64 selectors"),
        ({"sub": 42}, "must be a string"),
        ({"exp": "tomorrow"}, "malformed token"),
        ({"nbf": "today"}, "malformed token"),
    ],
)
def test_a_claim_of_the_wrong_shape_is_refused(payload: dict[str, Any], reason: str) -> None:
    refused(JWTAuth(secret=SECRET), hs256(payload), reason)


def test_an_audience_is_checked_when_configured() -> None:
    token = hs256(claims(sub="ann", aud="https://hub.example"))
    refused(JWTAuth(secret=SECRET), token, "token audience not accepted")
    assert JWTAuth(secret=SECRET, audience="https://hub.example").verify(token).subject == "ann"
    either = JWTAuth(secret=SECRET, audience=["https://other", "https://hub.example"])
    assert either.verify(token).subject == "ann"
    refused(JWTAuth(secret=SECRET, audience="https://other"), token, "audience not accepted")


def test_an_issuer_is_checked_when_configured() -> None:
    auth = JWTAuth(secret=SECRET, issuer="https://issuer.example")
    assert auth.verify(hs256(claims(iss="https://issuer.example"))).subject is None
    refused(auth, hs256(claims(iss="https://evil.example")), "token issuer not accepted")
    refused(auth, hs256(claims()), "lacks the required claim 'iss'")


# ---------------------------------------------------------------- where the token is found


def test_the_bearer_token_of_the_authorization_header() -> None:
    auth = JWTAuth(secret=SECRET)
    for header in ("Bearer tok", "bearer tok", "BEARER tok", "Bearer  tok ", "Bearer\ttok"):
        assert auth.token_from(request({"authorization": header})) == "tok", header


def test_an_authorization_header_of_another_scheme_is_passed_over() -> None:
    auth = JWTAuth(secret=SECRET)
    basic = {"authorization": "Basic dXNlcjpwYXNz"}
    assert auth.token_from(request(basic)) is None
    assert auth.token_from(request({**basic, "cookie": "ssehubAuthorization=c"})) == "c"
    assert auth.token_from(request(basic, {"authorization": "q"})) == "q"
    assert auth.token_from(request({"authorization": "Bearertok"})) is None
    assert auth.token_from(request({"authorization": ""})) is None


def test_an_empty_bearer_token_is_refused() -> None:
    auth = JWTAuth(secret=SECRET)
    for header in ("Bearer", "Bearer ", "bearer \t "):
        with pytest.raises(InvalidToken, match="empty bearer token"):
            auth.token_from(request({"authorization": header, "cookie": "ssehubAuthorization=c"}))


@pytest.mark.parametrize("name", DEFAULT_COOKIE_NAMES)
def test_each_default_cookie_carries_a_token(name: str) -> None:
    auth = JWTAuth(secret=SECRET)
    header = f"theme=dark; {name}=tok; lang=en"
    assert auth.token_from(request({"cookie": header})) == "tok"


@pytest.mark.parametrize("name", DEFAULT_QUERY_NAMES)
def test_each_default_query_parameter_carries_a_token(name: str) -> None:
    auth = JWTAuth(secret=SECRET)
    assert auth.token_from(request(query={name: "tok", "lastEventId": "3"})) == "tok"


def test_token_sources_in_order_of_precedence() -> None:
    auth = JWTAuth(secret=SECRET)
    headers = {
        "authorization": "Bearer header",
        "cookie": ("mercureAccessToken=c3; mercureAuthorization=c2; ssehubAuthorization=c1"),
    }
    query = {"access_token": "q2", "authorization": "q1"}
    assert auth.token_from(request(headers, query)) == "header"
    del headers["authorization"]
    assert auth.token_from(request(headers, query)) == "c1"
    headers["cookie"] = "mercureAccessToken=c3; mercureAuthorization=c2"
    assert auth.token_from(request(headers, query)) == "c2"
    headers["cookie"] = "mercureAccessToken=c3"
    assert auth.token_from(request(headers, query)) == "c3"
    del headers["cookie"]
    assert auth.token_from(request(headers, query)) == "q1"
    del query["authorization"]
    assert auth.token_from(request(headers, query)) == "q2"
    assert auth.token_from(request()) is None


def test_configured_cookie_and_query_names_replace_the_defaults() -> None:
    auth = JWTAuth(secret=SECRET, cookie_names=["session"], query_names=("t",))
    assert auth.token_from(request({"cookie": "ssehubAuthorization=x; session=s"})) == "s"
    assert auth.token_from(request({"cookie": "ssehubAuthorization=x"})) is None
    assert auth.token_from(request(query={"authorization": "x"})) is None
    assert auth.token_from(request(query={"t": "q"})) == "q"


def test_cookies_are_parsed_robustly() -> None:
    auth = JWTAuth(secret=SECRET)

    def cookie(header: str) -> str | None:
        return auth.token_from(request({"cookie": header}))

    assert cookie('ssehubAuthorization="quoted"') == "quoted"
    assert cookie("junk; =novalue; noequals; ssehubAuthorization=tok;") == "tok"
    assert cookie('a="unbalanced; ssehubAuthorization=tok') == "tok"
    assert cookie("ssehubAuthorization=first; ssehubAuthorization=second") == "first"
    assert cookie("  ssehubAuthorization =  spaced  ") == "spaced"
    assert cookie("ssehubAuthorization=a.b.c==") == "a.b.c=="
    assert cookie("xssehubAuthorization=no; ssehubAuthorizationx=no") is None
    # An empty cookie (a logged-out session) counts as absent.
    assert cookie("ssehubAuthorization=; mercureAuthorization=m") == "m"
    assert cookie("") is None


def test_empty_query_parameters_count_as_absent() -> None:
    auth = JWTAuth(secret=SECRET)
    assert auth.token_from(request(query={"authorization": "", "access_token": "q"})) == "q"


def test_an_oversized_token_is_refused_wherever_it_is_found() -> None:
    auth = JWTAuth(secret=SECRET)
    big = "x" * (MAX_TOKEN_SIZE + 1)
    for found in (
        request({"authorization": f"Bearer {big}"}),
        request({"cookie": f"ssehubAuthorization={big}"}),
        request(query={"authorization": big}),
    ):
        with pytest.raises(InvalidToken, match="token too large"):
            auth.token_from(found)
    at_limit = "x" * MAX_TOKEN_SIZE
    assert auth.token_from(request(query={"authorization": at_limit})) == at_limit


def test_grant_for_a_request() -> None:
    auth = JWTAuth(secret=SECRET)
    assert auth.grant_for(request()) is None
    token = hs256(claims(ssehub={"subscribe": ["/events/{c}"]}))
    grant = auth.grant_for(request({"cookie": f"mercureAuthorization={token}"}))
    assert grant is not None
    assert grant.subscribe.matches("/events/news")
    with pytest.raises(InvalidToken, match="bad token signature"):
        auth.grant_for(request(query={"authorization": resigned(token)}))
    with pytest.raises(InvalidToken, match="token expired"):
        auth.grant_for(request({"authorization": f"Bearer {hs256({'exp': now() - 10})}"}))
