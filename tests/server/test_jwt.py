"""JWT authorization on a real ``ssehub serve``: private events, 401 and 403, token expiry.

Tokens are made here with PyJWT. A token's ``ssehub`` (or ``mercure``) claim grants
``subscribe`` selectors (the channels whose private events it reads) and ``publish`` selectors
(the channels it publishes to).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests._support.redis_server import RedisServer
from tests._support.sse import open_sse
from tests.server.hub_process import HubFactory, HubProcess
from tests.server.test_channels_api import data_until, wait_streams
from tests.server.test_operations import _assert_one_line_error, _ssehub

pytestmark = pytest.mark.timeout(30)

SECRET = "a-test-secret-that-is-32-bytes-or-more"


def token(
    subscribe: list[str] | None = None,
    publish: list[str] | None = None,
    *,
    key: Any = SECRET,
    algorithm: str = "HS256",
    claim: str = "ssehub",
    **claims: Any,
) -> str:
    """A signed JWT granting ``subscribe`` and ``publish`` selectors (and any other claims)."""
    grant: dict[str, Any] = {}
    if subscribe is not None:
        grant["subscribe"] = subscribe
    if publish is not None:
        grant["publish"] = publish
    return jwt.encode({claim: grant, **claims}, key, algorithm=algorithm)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture(scope="module")
def jwt_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A hub verifying HS256 tokens, shared by this module's tests (each uses its channels)."""
    process = HubProcess(
        ["--cors-origin", "http://allowed.example"],
        tmp_path_factory.mktemp("jwt-hub"),
        env={"SSEHUB_JWT_SECRET": SECRET},
    )
    yield process
    assert process.stop() == 0, process.log()


ADMIN = token(["*"], ["*"])


# -- private events --------------------------------------------------------------------------


async def test_one_stream_with_a_name_a_template_and_a_private_channel_gets_exactly_its_events(
    jwt_hub: HubProcess,
) -> None:
    me = token(["/events/p1/users/42"])
    params = [
        ("channel", "/events/p1/news"),
        ("channel", "/events/p1/rooms/{id}"),
        ("channel", "/events/p1/users/42"),
        ("authorization", me),
    ]
    async with (
        httpx.AsyncClient(base_url=jwt_hub.url, headers=bearer(ADMIN)) as c,
        open_sse(jwt_hub.url + "/events", params=params) as stream,
    ):
        assert stream.response.status_code == 200
        for channel, data, private in [
            ("/events/p1/news", "news", False),
            ("/events/p1/rooms/7", "room", False),
            ("/events/p1/rooms/7", "private room: not granted", True),
            ("/events/p1/users/42", "mine", True),
            ("/events/p1/users/43", "not mine", True),
            ("/events/p1/users/43", "public, not selected", False),
            ("/events/p1/other", "not selected", False),
            ("/events/p1/users/42", "mine, public", False),
        ]:
            answer = await c.post(channel, json={"data": data, "private": private})
            assert answer.status_code == 200, answer.text
        expected = ["news", "room", "mine", "mine, public"]
        assert await data_until(stream, "mine, public") == expected


async def test_private_events_never_reach_a_stream_without_a_matching_token(
    jwt_hub: HubProcess,
) -> None:
    room, news = "/events/p2/rooms/1", "/events/p2/news"
    template = [("channel", "/events/p2/rooms/{id}"), ("channel", news)]
    readers = {
        # name: (query, headers, whether it may read the room's private events)
        "anonymous template": (template, {}, False),
        "anonymous star": ([("channel", "*")], {}, False),
        "anonymous channel": ([], {}, False),
        "other channel's token, star": ([("channel", "*")], bearer(token([news])), False),
        "granted template": (template, bearer(token(["/events/p2/rooms/{id}"])), True),
        "granted star": ([("channel", "*")], bearer(token(["*"])), True),
        "granted channel": ([], bearer(token([room])), True),
    }

    def url(query: list[tuple[str, str]]) -> str:
        return jwt_hub.url + ("/events" if query else room)

    async def publish(*events: tuple[str, bool]) -> None:
        for data, private in events:
            answer = await c.post(room, json={"data": data, "private": private})
            assert answer.status_code == 200, answer.text

    async with httpx.AsyncClient(base_url=jwt_hub.url, headers=bearer(ADMIN)) as c:
        first = (await c.post(room, json={"data": "public 1"})).json()["id"]
        await publish(("secret 1", True), ("public 2", False), ("secret 2", True))
        # Live: every reader is open while these are published.
        async with asyncio.TaskGroup() as group:
            live = {
                name: group.create_task(_read(url(query), query, headers, "end"))
                for name, (query, headers, _) in readers.items()
            }
            await wait_streams(c, len(readers))
            await publish(("secret 3", True), ("public 4", False), ("secret 4", True))
            await publish(("end", False))
        for name, (_, _, granted) in readers.items():
            expected = (
                ["secret 3", "public 4", "secret 4", "end"] if granted else ["public 4", "end"]
            )
            assert live[name].result() == expected, name
        # Replay: each resumes after "public 1" and reads what history retains.
        for name, (query, headers, granted) in readers.items():
            resumed = await _read(url(query), query, {**headers, "Last-Event-ID": first}, "end")
            public = ["public 2", "public 4", "end"]
            every = ["secret 1", "public 2", "secret 2", "secret 3", "public 4", "secret 4", "end"]
            assert resumed == (every if granted else public), name


async def _read(
    url: str, query: list[tuple[str, str]], headers: dict[str, str], last: str
) -> list[str]:
    """The data of a new stream's events, up to the one whose data is ``last``."""
    async with open_sse(url, params=query, headers=headers) as stream:
        assert stream.response.status_code == 200
        return await data_until(stream, last)


# -- 401 and 403 -----------------------------------------------------------------------------

OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)

BAD_TOKENS = {
    "wrong secret": token(["*"], ["*"], key="another-secret-of-at-least-32-bytes!"),
    "expired": token(["*"], ["*"], exp=int(time.time()) - 60),
    "not valid yet": token(["*"], ["*"], nbf=int(time.time()) + 3600),
    "alg none": jwt.encode({"ssehub": {"subscribe": ["*"], "publish": ["*"]}}, "", "none"),
    "RS256 on an HS256 hub": token(["*"], ["*"], key=OTHER_KEY, algorithm="RS256"),
    "not a JWT": "not.a.jwt",
    "claim of the wrong shape": jwt.encode({"ssehub": {"publish": "*"}}, SECRET, "HS256"),
}


def carried(value: str, how: str) -> dict[str, Any]:
    """The request arguments that carry ``value`` as ``how`` says."""
    if how == "header":
        return {"headers": bearer(value)}
    if how == "query":
        return {"params": {"authorization": value}}
    return {"headers": {"Cookie": f"{how}={value}"}}


CARRIERS = ["header", "ssehubAuthorization", "mercureAuthorization", "query"]


@pytest.mark.parametrize("how", CARRIERS)
@pytest.mark.parametrize("bad", sorted(BAD_TOKENS))
async def test_an_unusable_token_is_401_for_subscribing_and_publishing(
    jwt_hub: HubProcess, bad: str, how: str
) -> None:
    args = carried(BAD_TOKENS[bad], how)
    async with httpx.AsyncClient(base_url=jwt_hub.url) as c:
        params = {**args.get("params", {}), "channel": "/events/e1/a"}
        answers = [
            await c.get("/events/e1/a", **args),
            await c.get("/events", headers=args.get("headers"), params=params),
            await c.post("/events/e1/a", json={"data": "x"}, **args),
            await c.post("/events", json={"channels": ["/events/e1/a"], "data": "x"}, **args),
            await c.post("/broadcast", json={"data": "x"}, **args),
        ]
    for answer in answers:
        assert answer.status_code == 401, (answer.request.url, answer.text)
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert 'error="invalid_token"' in answer.headers["www-authenticate"]
        assert answer.json()["error"]
        assert BAD_TOKENS[bad] not in answer.text


async def test_publishing_without_a_token_is_401_and_outside_the_claim_403(
    jwt_hub: HubProcess,
) -> None:
    rooms = token(publish=["/events/e2/rooms/{id}"])
    reader = token(subscribe=["*"])  # no publish claim: publishes nowhere
    async with (
        httpx.AsyncClient(base_url=jwt_hub.url) as c,
        open_sse(jwt_hub.url + "/events/e2/rooms/1") as stream,
    ):
        for path, body in [
            ("/events/e2/rooms/1", {"data": "x"}),
            ("/events", {"channels": ["/events/e2/rooms/1"], "data": "x"}),
            ("/broadcast", {"data": "x"}),
        ]:
            missing = await c.post(path, json=body)
            assert missing.status_code == 401
            assert missing.headers["www-authenticate"] == 'Bearer realm="ssehub"'
            assert "JWT" in missing.json()["error"]
            assert (await c.post(path, json=body, headers=bearer(reader))).status_code == 403
        outside = [
            ("/events/e2/news", {"data": "x"}),
            ("/events/e2/rooms/1/deep", {"data": "x"}),
            ("/events", {"channels": ["/events/e2/rooms/1", "/events/e2/news"], "data": "x"}),
            ("/broadcast", {"data": "x"}),  # needs '*'
        ]
        for path, body in outside:
            refused = await c.post(path, json=body, headers=bearer(rooms))
            assert refused.status_code == 403, (path, refused.text)
            assert "publish" in refused.json()["error"]
        # Nothing refused was sent: the first event the subscriber sees is the accepted one.
        ok = await c.post("/events/e2/rooms/1", json={"data": "ok"}, headers=bearer(rooms))
        assert ok.status_code == 200
        assert (await stream.next_event()).data == "ok"
        everywhere = await c.post("/broadcast", json={"data": "all"}, headers=bearer(ADMIN))
        assert everywhere.status_code == 200
        assert (await stream.next_event()).data == "all"


@pytest.mark.parametrize("how", CARRIERS)
async def test_every_token_carrier_works_and_mercure_claims_too(
    jwt_hub: HubProcess, how: str
) -> None:
    channel = f"/events/e3/{how}"
    for claim in ("ssehub", "mercure"):
        value = token([channel], [channel], claim=claim)
        async with (
            httpx.AsyncClient(base_url=jwt_hub.url) as c,
            open_sse(jwt_hub.url + channel, **carried(value, how)) as stream,
        ):
            assert stream.response.status_code == 200
            answer = await c.post(
                channel, json={"data": claim, "private": True}, **carried(value, how)
            )
            assert answer.status_code == 200, answer.text
            assert (await stream.next_event()).data == claim


async def test_a_cookie_token_cannot_publish_from_another_site(jwt_hub: HubProcess) -> None:
    # A browser sends cookies by itself, so a cookie-borne token gets the Origin check of an
    # open hub; a token in the header or the query was sent on purpose.
    value = token(publish=["*"])
    cookie = {"Cookie": f"ssehubAuthorization={value}"}
    evil, allowed = {"Origin": "http://evil.example"}, {"Origin": "http://allowed.example"}
    async with httpx.AsyncClient(base_url=jwt_hub.url) as c:
        cross_site = await c.post("/events/e4/a", json={"data": "x"}, headers={**cookie, **evil})
        assert cross_site.status_code == 403
        for headers in ({**cookie, **allowed}, {**bearer(value), **evil}):
            answer = await c.post("/events/e4/a", json={"data": "x"}, headers=headers)
            assert answer.status_code == 200, headers


# -- expiry ----------------------------------------------------------------------------------


async def test_a_stream_ends_at_its_token_exp_and_resumes_with_a_fresh_token(
    jwt_hub: HubProcess,
) -> None:
    channel = "/events/x1/private"
    query = [("channel", channel), ("channel", "/events/x1/rooms/{id}")]
    async with httpx.AsyncClient(base_url=jwt_hub.url, headers=bearer(ADMIN)) as c:
        exp = int(time.time()) + 2
        short = token([channel], exp=exp)
        async with open_sse(jwt_hub.url + "/events", params=query, headers=bearer(short)) as s:
            await wait_streams(c, 1)
            first = (await c.post(channel, json={"data": "1", "private": True})).json()["id"]
            assert (await s.next_event()).data == "1"
            await s.read_until_end(timeout=5)
            ended = time.time()
        assert exp <= ended < exp + 1, (exp, ended)
        # Published while the client is away: it gets them on resuming, none lost.
        await c.post(channel, json={"data": "2", "private": True})
        await c.post("/events/x1/rooms/5", json={"data": "3"})
        fresh = token([channel], exp=int(time.time()) + 60)
        headers = {**bearer(fresh), "Last-Event-ID": first}
        async with open_sse(jwt_hub.url + "/events", params=query, headers=headers) as resumed:
            assert [(await resumed.next_event()).data for _ in range(2)] == ["2", "3"]
        # The expired token itself is refused.
        expired = await c.get("/events", params=tuple(query), headers=bearer(short))
        assert expired.status_code == 401
        assert "expired" in expired.json()["error"]


async def test_a_publish_whose_token_expires_while_its_body_arrives_is_refused(
    jwt_hub: HubProcess,
) -> None:
    """The head is accepted with a valid token; the token's exp passes before the body is in:
    401, and nothing is published (the body is not answered at once on a stale check)."""
    channel = "/events/x2/late"
    exp = int(time.time()) + 2
    short = token(publish=[channel], exp=exp)
    body = b'{"data": "late"}'
    host, port = jwt_hub.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST {channel} HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {short}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    )
    await writer.drain()
    await asyncio.sleep(exp + 0.2 - time.time())
    writer.write(body)
    async with asyncio.timeout(5):
        answer = await reader.read(65536)
    writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401"), answer
    assert "expired" in json.loads(payload)["error"]
    async with httpx.AsyncClient(base_url=jwt_hub.url, headers=bearer(ADMIN)) as c:
        listed = (await c.get("/channels")).json()
    assert channel not in json.dumps(listed)


# -- with the shared tokens, and --require-subscriber-token ----------------------------------


async def test_shared_tokens_keep_working_next_to_jwts(start_hub: HubFactory) -> None:
    hub = start_hub(
        env={
            "SSEHUB_JWT_SECRET": SECRET,
            "SSEHUB_PUBLISH_TOKEN": "shared-publish",
            "SSEHUB_SUBSCRIBE_TOKEN": "shared-subscribe",
        }
    )
    channel = "/events/s1/a"
    granted = token([channel], [channel])
    async with httpx.AsyncClient(base_url=hub.url) as c:
        # Subscribing needs the shared token or a JWT; the shared token reads public events.
        assert (await c.get(channel)).status_code == 401
        assert (await c.get(channel, headers=bearer("not-the-token"))).status_code == 401
        async with (
            open_sse(hub.url + channel, headers=bearer("shared-subscribe")) as shared,
            open_sse(hub.url + channel, params={"token": "shared-subscribe"}) as by_query,
            open_sse(hub.url + channel, headers=bearer(granted)) as by_jwt,
            open_sse(
                # The shared token in the header, the JWT in a cookie: both are read.
                hub.url + channel,
                headers={**bearer("shared-subscribe"), "Cookie": f"ssehubAuthorization={granted}"},
            ) as both,
        ):
            for stream in (shared, by_query, by_jwt, both):
                assert stream.response.status_code == 200
            # Publishing: the shared publish token anywhere, a JWT within its claim.
            publish = bearer("shared-publish")
            assert (
                await c.post(channel, json={"data": "s", "private": True}, headers=publish)
            ).status_code == 200
            assert (
                await c.post("/broadcast", json={"data": "b"}, headers=publish)
            ).status_code == 200
            assert (
                await c.post(channel, json={"data": "j"}, headers=bearer(granted))
            ).status_code == 200
            assert (
                await c.post("/events/s1/b", json={"data": "x"}, headers=bearer(granted))
            ).status_code == 403
            assert (
                await c.post(channel, json={"data": "x"}, headers=bearer("shared-subscribe"))
            ).status_code == 401
            assert [(await shared.next_event()).data for _ in range(2)] == ["b", "j"]
            assert [(await by_query.next_event()).data for _ in range(2)] == ["b", "j"]
            assert [(await by_jwt.next_event()).data for _ in range(3)] == ["s", "b", "j"]
            assert [(await both.next_event()).data for _ in range(3)] == ["s", "b", "j"]


async def test_require_subscriber_token_refuses_streams_without_a_jwt(
    start_hub: HubFactory,
) -> None:
    hub = start_hub(
        "--require-subscriber-token",
        env={"SSEHUB_JWT_SECRET": SECRET, "SSEHUB_SUBSCRIBE_TOKEN": "shared-subscribe"},
    )
    async with httpx.AsyncClient(base_url=hub.url) as c:
        without_jwt: list[dict[str, Any]] = [
            {},
            {"headers": bearer("shared-subscribe")},
            {"params": {"token": "shared-subscribe"}},
        ]
        for args in without_jwt:
            refused = await c.get("/events/r1/a", **args)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"] == 'Bearer realm="ssehub"'
            assert "needs a JWT" in refused.json()["error"]
        refused = await c.get("/events", params={"channel": "*"})
        assert refused.status_code == 401
        # A token with no grant at all still opens a stream: public events of any channel.
        async with open_sse(hub.url + "/events/r1/a", params={"authorization": token()}) as s:
            assert s.response.status_code == 200
            await c.post("/events/r1/a", json={"data": "p"}, headers=bearer(ADMIN))
            assert (await s.next_event()).data == "p"


# -- public keys -----------------------------------------------------------------------------


def _pem(private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


async def test_rs256_from_a_key_file_and_es256_from_the_environment(
    start_hub: HubFactory, tmp_path: Path
) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "public.pem"
    key_file.write_text(_pem(rsa_key))
    hubs = [
        (start_hub("--jwt-public-key", str(key_file)), rsa_key, "RS256", ec_key, "ES256"),
        (start_hub(env={"SSEHUB_JWT_PUBLIC_KEY": _pem(ec_key)}), ec_key, "ES256", rsa_key, "RS256"),
    ]
    for hub, key, algorithm, other, other_algorithm in hubs:
        assert " auth=jwt-public-key " in hub.log()
        good = token(publish=["*"], key=key, algorithm=algorithm)
        refused = [
            token(publish=["*"], key=other, algorithm=other_algorithm),  # another key
            token(publish=["*"]),  # HS256, with a secret
        ]
        async with httpx.AsyncClient(base_url=hub.url) as c:
            answer = await c.post("/events/k1/a", json={"data": "x"}, headers=bearer(good))
            assert answer.status_code == 200, (algorithm, answer.text)
            for bad in refused:
                answer = await c.post("/events/k1/a", json={"data": "x"}, headers=bearer(bad))
                assert answer.status_code == 401, algorithm


# -- flags, help, logs -----------------------------------------------------------------------


def test_bad_jwt_flags_are_one_line_and_status_2(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n")
    no_pem = tmp_path / "empty.pem"
    no_pem.write_text("hello\n")
    ed = tmp_path / "ed25519.pem"
    from cryptography.hazmat.primitives.asymmetric import ed25519

    ed.write_text(_pem(ed25519.Ed25519PrivateKey.generate()))  # type: ignore[arg-type]
    missing = str(tmp_path / "missing.pem")
    cases: list[tuple[list[str], dict[str, str], str]] = [
        (["--jwt-public-key", missing], {}, "cannot read the key file"),
        ([], {"SSEHUB_JWT_PUBLIC_KEY": missing}, "SSEHUB_JWT_PUBLIC_KEY"),
        (["--jwt-public-key", str(garbage)], {}, "not a PEM public key"),
        (["--jwt-public-key", str(no_pem)], {}, "holds no PEM key"),
        (["--jwt-public-key", str(ed)], {}, "supported keys: RSA and EC"),
        (["--jwt-public-key", str(garbage), "--jwt-secret", SECRET], {}, "not both"),
        (["--jwt-secret", "short"], {}, "HMAC needs 32 at least"),
        (["--require-subscriber-token"], {}, "needs --jwt-secret or --jwt-public-key"),
    ]
    for args, env, needle in cases:
        _assert_one_line_error(_ssehub("serve", "--port", "0", *args, env=env), needle)


async def test_the_secret_never_shows_and_help_logs_and_healthz_say_jwt_is_on(
    start_hub: HubFactory,
) -> None:
    shown = _ssehub("serve", "--help", env={"SSEHUB_JWT_SECRET": SECRET}).stdout
    assert SECRET not in shown
    assert "--jwt-secret SECRET" in shown
    assert "[env: SSEHUB_JWT_SECRET]" in " ".join(shown.split())
    # uvicorn's access log shows the query string: ?authorization= values are redacted.
    hub = start_hub(
        "--require-subscriber-token",
        "--access-log",
        "--http",
        "uvicorn",
        env={"SSEHUB_JWT_SECRET": SECRET},
    )
    value, expired = token(["*"]), token(["*"], exp=int(time.time()) - 60)
    async with httpx.AsyncClient(base_url=hub.url) as c:
        health = (await c.get("/healthz")).json()
        assert health["auth"] == ["jwt", "require-subscriber-token"]
        refused = await c.get("/events/l1/a", params={"authorization": expired})
        assert refused.status_code == 401
        async with open_sse(hub.url + "/events/l1/a", params={"authorization": value}) as s:
            assert s.response.status_code == 200
    log = hub.log()
    start = next(line for line in log.splitlines() if " event=start " in line)
    assert " auth=jwt-secret,require-subscriber-token " in start
    assert "authorization=***" in log
    for secret in (SECRET, value, expired):
        assert secret not in log


# -- on Redis: two hub processes -------------------------------------------------------------


@pytest.mark.redis
async def test_on_redis_a_publish_to_one_hub_reaches_the_other_once_and_private_stays_private(
    start_hub: HubFactory,
) -> None:
    with RedisServer() as redis:
        env = {"SSEHUB_JWT_SECRET": SECRET}
        one, two = (start_hub("--redis", redis.url, env=env) for _ in range(2))
        a, b = "/events/r2/a", "/events/r2/b"
        query = [("channel", a), ("channel", "/events/r2/{name}")]
        granted = bearer(token(["/events/r2/{name}"]))
        async with (
            httpx.AsyncClient(base_url=one.url, headers=bearer(ADMIN)) as c,
            open_sse(two.url + "/events", params=query, headers=granted) as member,
            open_sse(two.url + "/events", params=[("channel", "*")]) as anonymous,
        ):
            first = (await c.post("/events", json={"channels": [a, b], "data": "ab"})).json()
            secret = {"channels": [a, b], "data": "secret", "private": True}
            assert (await c.post("/events", json=secret)).status_code == 200
            await c.post(b, json={"data": "end"})
            assert await data_until(member, "end") == ["ab", "secret", "end"]
            assert await data_until(anonymous, "end") == ["ab", "end"]
        # Resuming on the other hub, from the first event, with and without the token.
        after = {"Last-Event-ID": first["id"]}
        resumed = await _read(one.url + "/events", query, {**granted, **after}, "end")
        assert resumed == ["secret", "end"]
        assert await _read(one.url + "/events", query, after, "end") == ["end"]
