"""Thin integrations of the hub into web frameworks, one module per framework.

Import the module of your framework (``ssehub.integrations.flask``, ``.django``, ``.aiohttp``,
``.starlette`` for Starlette and FastAPI, ``.litestar``, ``.quart``); each imports its
framework when it is imported itself, so ``import ssehub`` needs none of them. What they share
lives here and imports no framework.
"""

from __future__ import annotations

from ssehub._serving import iter_subscription

__all__ = ["iter_subscription"]
