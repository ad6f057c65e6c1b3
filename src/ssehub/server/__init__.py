"""The standalone hub, ``ssehub serve``: the HTTP publish API, dashboard, metrics and CLI.

Needs the ``server`` extra (``pip install 'ssehub[server]'``: uvicorn and prometheus-client).
`HubServer` is the plain ASGI app; run it under any ASGI server, or use ``ssehub serve``.
"""

from __future__ import annotations

from ssehub.server.app import HubServer

__all__ = ["HubServer"]
