"""The publish token, the optional subscribe token, and CORS headers and preflights."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests._support.sse import open_sse
from tests.server.hub_process import HubFactory

pytestmark = pytest.mark.timeout(30)


async def test_publish_token_from_env_guards_publish_and_broadcast(start_hub: HubFactory) -> None:
    hub = start_hub(env={"SSEHUB_PUBLISH_TOKEN": "s3cret-token"})
    cmdline = Path(f"/proc/{hub.proc.pid}/cmdline").read_bytes()
    assert b"s3cret-token" not in cmdline
    channel = "/events/guarded"
    async with open_sse(hub.url + channel) as stream, httpx.AsyncClient(base_url=hub.url) as c:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Bearer s3cret-token-and-more"},
            {"Authorization": "Basic s3cret-token"},
            {"Authorization": "s3cret-token"},
        ):
            for path in (channel, "/broadcast"):
                refused = await c.post(path, content="nope", headers=headers)
                assert refused.status_code == 401, headers
                assert refused.headers["www-authenticate"].startswith("Bearer")
                assert "Authorization: Bearer" in refused.json()["error"]
        good = await c.post(
            channel, content="yes", headers={"Authorization": "Bearer s3cret-token"}
        )
        assert good.status_code == 200
        event = await stream.next_event()
        # The refused publishes delivered nothing: the first event is the accepted one.
        assert (event.data, event.id) == ("yes", good.json()["id"])
        broadcast = await c.post(
            "/broadcast", content="all", headers={"authorization": "bearer s3cret-token"}
        )
        assert broadcast.status_code == 200
        assert (await stream.next_event()).data == "all"


async def test_publish_token_flag_and_open_subscribing(start_hub: HubFactory) -> None:
    hub = start_hub("--publish-token", "flag-token")
    async with httpx.AsyncClient(base_url=hub.url) as c:
        assert (await c.post("/events/x", content="a")).status_code == 401
        ok = await c.post("/events/x", content="a", headers={"Authorization": "Bearer flag-token"})
        assert ok.status_code == 200
    async with open_sse(hub.url + "/events/x") as stream:
        assert stream.response.status_code == 200


async def test_subscribe_token_accepts_header_or_query(start_hub: HubFactory) -> None:
    hub = start_hub("--subscribe-token", "watch")
    async with httpx.AsyncClient(base_url=hub.url) as c:
        refused = await c.get("/events/private")
        assert refused.status_code == 401
        assert "subscribe token" in refused.json()["error"]
        assert (await c.get("/events/private", params={"token": "nope"})).status_code == 401
    async with open_sse(hub.url + "/events/private", params={"token": "watch"}) as by_query:
        assert by_query.response.status_code == 200
        async with open_sse(
            hub.url + "/events/private", headers={"Authorization": "Bearer watch"}
        ) as by_header:
            assert by_header.response.status_code == 200
            # /channels lists channel names: on a hub with a subscribe token, it needs it too.
            admin = {"Authorization": "Bearer watch"}
            async with httpx.AsyncClient(base_url=hub.url, headers=admin) as c:
                for _ in range(100):
                    channels = (await c.get("/channels")).json()["channels"]
                    if channels and channels[0]["clients"] == 2:
                        break
                    await asyncio.sleep(0.02)
                await c.post("/events/private", content="psst")
            assert (await by_query.next_event()).data == "psst"
            assert (await by_header.next_event()).data == "psst"


async def test_cors_preflight_and_headers_for_allowed_origins(start_hub: HubFactory) -> None:
    hub = start_hub("--cors-origin", "http://a.example", "--cors-origin", "http://b.example")
    async with httpx.AsyncClient(base_url=hub.url) as c:
        for path, methods in (
            ("/events/room", "GET, POST, OPTIONS"),
            ("/broadcast", "POST, OPTIONS"),
            ("/channels", "GET, OPTIONS"),
        ):
            pre = await c.options(
                path,
                headers={
                    "Origin": "http://b.example",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type, authorization",
                },
            )
            assert pre.status_code == 204
            assert pre.headers["access-control-allow-origin"] == "http://b.example"
            assert pre.headers["access-control-allow-methods"] == methods
            allowed = pre.headers["access-control-allow-headers"]
            assert "authorization" in allowed and "content-type" in allowed
            assert "last-event-id" in allowed
            assert pre.headers["vary"] == "Origin"
        stranger = await c.options("/events/room", headers={"Origin": "http://evil.example"})
        assert stranger.status_code == 204
        assert "access-control-allow-origin" not in stranger.headers
        published = await c.post(
            "/events/room", content="x", headers={"Origin": "http://a.example"}
        )
        assert published.headers["access-control-allow-origin"] == "http://a.example"
        error = await c.post(
            "/events/room", json={"data": "x", "event": 1}, headers={"Origin": "http://a.example"}
        )
        assert error.status_code == 400
        assert error.headers["access-control-allow-origin"] == "http://a.example"
    async with open_sse(hub.url + "/events/room", headers={"Origin": "http://a.example"}) as stream:
        assert stream.response.headers["access-control-allow-origin"] == "http://a.example"
    async with open_sse(
        hub.url + "/events/room", headers={"Origin": "http://evil.example"}
    ) as stream:
        assert "access-control-allow-origin" not in stream.response.headers


async def test_cors_wildcard_allows_any_origin(start_hub: HubFactory) -> None:
    hub = start_hub("--cors-origin", "*")
    async with httpx.AsyncClient(base_url=hub.url) as c:
        pre = await c.options("/events/any", headers={"Origin": "http://whoever.example"})
        assert pre.headers["access-control-allow-origin"] == "*"
        posted = await c.post("/events/any", content="x", headers={"Origin": "http://o.example"})
        assert posted.headers["access-control-allow-origin"] == "*"


async def test_no_cors_headers_without_cors_origin(start_hub: HubFactory) -> None:
    hub = start_hub()
    async with httpx.AsyncClient(base_url=hub.url) as c:
        pre = await c.options("/events/room", headers={"Origin": "http://a.example"})
        assert pre.status_code == 204
        assert pre.headers["allow"] == "GET, POST, OPTIONS"
        assert "access-control-allow-origin" not in pre.headers
