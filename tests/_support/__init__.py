"""Test support shared by the ssehub test suite: free loopback ports and a real redis-server."""

from __future__ import annotations

import socket

__all__ = ["free_port"]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free when asked.

    The port is found by binding port 0 and closing the socket, so another process could in
    principle take it before the caller binds it; callers that start a server should be ready to
    retry with a new port when the bind fails.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
