"""``python -m ssehub`` and the ``ssehub`` command (``ssehub serve`` runs the standalone hub).

The command needs the ``server`` extra. Its modules are looked for before the server is
imported, so that a plain ``pip install ssehub`` gets one line naming what to install instead
of a traceback.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

__all__ = ["SERVER_INSTALL", "main", "missing_server_modules"]

SERVER_INSTALL = "pip install 'ssehub[server]'"
"""The install line that brings what ``ssehub serve`` needs."""

_SERVER_MODULES = ("httptools", "prometheus_client")


def missing_server_modules() -> list[str]:
    """The modules of the ``server`` extra that cannot be imported here (none: it is installed)."""
    return [name for name in _SERVER_MODULES if importlib.util.find_spec(name) is None]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ssehub`` command; returns the exit status (2: extra missing)."""
    missing = missing_server_modules()
    if missing:
        print(
            f"ssehub: the standalone hub needs the server extra ({', '.join(missing)} not "
            f"installed): {SERVER_INSTALL}",
            file=sys.stderr,
        )
        return 2
    from ssehub.server.cli import main as serve_main

    return serve_main(argv)


if __name__ == "__main__":
    sys.exit(main())
