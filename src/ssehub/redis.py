"""The Redis backend's public home: ``from ssehub.redis import RedisBackend``.

The implementation lives in `ssehub.backends.redis`, beside the other backends; this module
keeps the documented import path (and needs redis-py: ``pip install 'ssehub[redis]'``).
"""

from __future__ import annotations

from ssehub.backends.redis import RedisBackend

__all__ = ["RedisBackend"]
