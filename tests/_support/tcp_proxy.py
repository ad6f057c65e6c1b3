"""A loopback TCP proxy for tests that cuts every connection on command, like a network drop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class TCPProxy:
    """Forward ``127.0.0.1:<port>`` to ``127.0.0.1:<target_port>``, on the running event loop.

    `cut` resets every open connection (both sides) and holds new ones unanswered until `restore`,
    so a client that reconnects at once still cannot reach the server until the test allows it.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.connections = 0
        """Connections forwarded to the target so far."""
        self.sent: list[bytearray] = []
        """The bytes each forwarded connection sent to the target (its requests), in order."""
        self._open = asyncio.Event()
        self._open.set()
        self._live: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the base URL to give clients."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> TCPProxy:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def requests(self, method: str, path: str) -> list[dict[str, str]]:
        """The headers (lower-case names) of each ``method path`` request sent through so far."""
        found = []
        for sent in self.sent:
            for head in bytes(sent).split(b"\r\n\r\n"):
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                if len(parts) == 3 and parts[0] == method and parts[1].split("?")[0] == path:
                    headers = {}
                    for line in lines[1:]:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                    found.append(headers)
        return found

    def cut(self) -> None:
        """Reset every open connection; hold new connections until `restore`."""
        self._open.clear()
        for writer in list(self._live):
            writer.transport.abort()
        self._live.clear()

    def restore(self) -> None:
        """Forward connections again (the held ones first)."""
        self._open.set()

    async def close(self) -> None:
        """Stop listening and drop everything."""
        self.cut()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._open.wait()
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            self.connections += 1
            sent = bytearray()
            self.sent.append(sent)
            self._live.update((writer, up_writer))
            await asyncio.gather(
                self._pump(reader, up_writer, sent),
                self._pump(up_reader, writer),
                return_exceptions=True,
            )
        except OSError:
            pass
        finally:
            self._tasks.discard(task)
            writer.transport.abort()
            self._live.discard(writer)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        record: bytearray | None = None,
    ) -> None:
        try:
            while data := await reader.read(65536):
                if record is not None and len(record) < 65536:
                    record += data
                writer.write(data)
                await writer.drain()
        finally:
            # Either side ending ends the pair: HTTP clients here never half-close.
            self._live.discard(writer)
            writer.close()


@contextlib.asynccontextmanager
async def tcp_proxy(target_port: int) -> AsyncIterator[TCPProxy]:
    """A started `TCPProxy` to ``target_port``, closed on exit."""
    proxy = await TCPProxy(target_port).start()
    try:
        yield proxy
    finally:
        await proxy.close()
