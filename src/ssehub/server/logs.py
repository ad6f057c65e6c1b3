"""Log lines that a client cannot forge and that never show a token.

Values logged by the hub come from clients (channel names, paths, errors quoting a body), so
`SafeFormatter` escapes every control character of a message (a ``%0a`` in a channel name
becomes the four characters ``\\n``, not a new line) and redacts ``token=`` query values (a
subscribe token sent as ``?token=`` would otherwise be in uvicorn's access log). A traceback
appended to a record keeps its lines: it comes from the hub's code, not from a client.
"""

from __future__ import annotations

import logging
import re

__all__ = ["SafeFormatter", "escape_controls", "redact_tokens"]

# C0 controls and DEL, C1 controls, and the Unicode line and paragraph separators.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_TOKEN = re.compile(r"([?&](?:access_)?token=)[^&\s\"']*", re.IGNORECASE)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    escaped = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
    if escaped is not None:
        return escaped
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with every control character written as an escape (``\\n``, ``\\x1b``, ...)."""
    return _CONTROLS.sub(_escape, text)


def redact_tokens(text: str) -> str:
    """``text`` with the value of every ``token=`` query parameter replaced by ``***``."""
    if "token=" not in text.lower():
        return text
    return _TOKEN.sub(r"\1***", text)


class SafeFormatter(logging.Formatter):
    """A `logging.Formatter` whose messages are escaped (`escape_controls`) and redacted
    (`redact_tokens`)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The formatted line, with the record's message made safe first."""
        record.message = redact_tokens(escape_controls(record.message))
        return super().formatMessage(record)
