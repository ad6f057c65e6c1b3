"""JSON for the server's bodies: orjson when it is installed (faster), the standard library else."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["dumps", "loads"]

loads: Callable[[str], Any]
"""Parse a JSON text (raises ValueError when it is malformed)."""
dumps: Callable[[Any], bytes]
"""Encode a value as compact UTF-8 JSON bytes."""

try:  # orjson is optional: faster parsing and encoding when installed
    import orjson  # type: ignore[import-not-found,unused-ignore]

    loads = orjson.loads
    dumps = orjson.dumps
except ImportError:  # pragma: no cover - depends on the environment
    loads = json.loads

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
