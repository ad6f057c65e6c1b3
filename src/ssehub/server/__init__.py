"""The standalone hub, ``ssehub serve``: the HTTP publish API, dashboard, metrics and CLI.

Needs the ``server`` extra (``pip install 'ssehub[server]'``: httptools, uvloop and
prometheus-client; ``--http uvicorn`` also needs ``ssehub[uvicorn]``).
`HubServer` is the plain ASGI app; run it under any ASGI server, or use ``ssehub serve``.

The modules, one concept each, from the request to the command line:

- ``app``: `HubServer`, the routes as a table and their endpoints;
- ``routing``: `Route` and the compiled `Router` (OPTIONS and 405 come from the table);
- ``publish``: publish requests as data (sans-IO): head and body in, messages or a refusal out;
- ``auth``: who may publish and subscribe: the shared tokens and JWTs, as one object;
- ``cors``: the cross-origin policy as one object;
- ``dashboard``: the dashboard page and its statistics feed;
- ``metrics``: Prometheus metrics read from the hub's counters at scrape time;
- ``native``: ssehub's own HTTP/1.1 server (and why it is not uvicorn);
- ``config``: `ServeConfig`, every ``ssehub serve`` option as one value;
- ``runners``: one hub process on the native server or on uvicorn;
- ``supervisor``: ``--workers N``, which hands each worker the same `ServeConfig`;
- ``cli``: the ``ssehub`` command's parser and entry point.
"""

from __future__ import annotations

from ssehub.server.app import HubServer

__all__ = ["HubServer"]
