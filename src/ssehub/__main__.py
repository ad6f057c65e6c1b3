"""``python -m ssehub``: the same as the ``ssehub`` command."""

from __future__ import annotations

from ssehub.server.cli import run

if __name__ == "__main__":
    run()
