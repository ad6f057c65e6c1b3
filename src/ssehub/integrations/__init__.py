"""Thin integrations of the hub into web frameworks, one module per framework.

Import the module of your framework (``ssehub.integrations.flask``, ``.django``, ``.aiohttp``,
``.starlette`` for Starlette and FastAPI, ``.litestar``, ``.quart``); each imports its
framework when it is imported itself, so ``import ssehub`` needs none of them. What they share
lives here and imports no framework.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ssehub.hub import Hub
    from ssehub.subscription import Subscription

__all__ = ["iter_subscription"]


async def iter_subscription(hub: Hub, sub: Subscription) -> AsyncIterator[bytes]:
    """Yield ``sub``'s pending bytes, coalesced, until it ends; then unsubscribe it.

    For frameworks whose streaming responses take an async iterator (Quart, Django under
    ASGI) and cancel it when the client disconnects: the cancellation ends the iteration and
    the subscription with it. Runs on the hub's event loop.
    """
    try:
        while True:
            chunk = await sub.next_chunk()
            if chunk is None:
                return
            yield chunk
    finally:
        hub.unsubscribe(sub)
