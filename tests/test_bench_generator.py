"""``python -m bench.generator`` checks every stream it measures and fails loudly when one is
short, out of order or broken, so a figure never comes from a stream that lost events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bench import generator
from bench.generator import DeliveryError, Round, read_stream

pytestmark = pytest.mark.timeout(30)


def chunked(body: bytes, size: int = 7) -> bytes:
    """``body`` as an HTTP/1.1 chunked response, in chunks of ``size`` bytes."""
    out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    for i in range(0, len(body), size):
        piece = body[i : i + size]
        out += b"%x\r\n%b\r\n" % (len(piece), piece)
    return out + b"0\r\n\r\n"


@asynccontextmanager
async def serving(response: bytes) -> AsyncIterator[int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(response)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


def events(numbers: list[int], sep: bytes = b"\n") -> bytes:
    return b"".join(b"data: %d%b%b" % (i, sep, sep) for i in numbers)


async def test_a_whole_stream_passes_whatever_its_chunking_and_line_ends() -> None:
    for body in (events([1, 2, 3]), events([1, 2, 3], b"\r\n") + b": ping\r\n\r\n"):
        async with serving(chunked(body)) as port:
            assert await read_stream(port, 3) > len(body)


@pytest.mark.parametrize(
    "body",
    [events([1, 2]), events([1, 3, 2]), events([1, 2, 2, 3]), events([2, 3, 4])],
    ids=["short", "out-of-order", "repeated", "missing-first"],
)
async def test_a_stream_that_lost_or_garbled_events_fails(body: bytes) -> None:
    async with serving(chunked(body)) as port:
        with pytest.raises(DeliveryError):
            await read_stream(port, 3)


async def test_a_stream_cut_before_its_last_chunk_fails() -> None:
    cut = chunked(events([1, 2, 3]))[: -len(b"0\r\n\r\n")]
    async with serving(cut) as port:
        with pytest.raises(asyncio.IncompleteReadError):
            await read_stream(port, 3)


def test_the_bench_exits_1_and_names_the_failure_when_a_round_failed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def fake(failing: str) -> Callable[[str, int, int], Round]:
        def run_round(server: str, streams: int, n: int) -> Round:
            if server == failing:
                return Round(server, streams, n, error="DeliveryError: expected events 1..5")
            return Round(server, streams, n, seconds=1.0, events_per_s=streams * n)

        return run_round

    monkeypatch.setattr(generator, "run_round", fake("sse-starlette"))
    out = tmp_path / "raw.json"
    assert generator.main(["--streams", "2", "--events", "5", "--json", str(out)]) == 1
    assert "FAILED: sse-starlette: DeliveryError" in capsys.readouterr().err
    assert json.loads(out.read_text())["rounds"][1]["error"].startswith("DeliveryError")
    monkeypatch.setattr(generator, "run_round", fake("nobody"))
    assert generator.main(["--streams", "2", "--events", "5"]) == 0


def test_every_kept_generator_result_passed_its_delivery_check() -> None:
    for path in sorted(generator.RESULTS.glob("*.json")):
        rounds = json.loads(path.read_text())["rounds"]
        assert rounds, path
        assert all(r["error"] is None for r in rounds), path
