"""Log lines that a client cannot forge and that never show a token.

Values logged by the hub come from clients (channel names, paths, errors quoting a body), so
`SafeFormatter` escapes every control character of a message (a ``%0a`` in a channel name
becomes the four characters ``\\n``, not a new line) and redacts ``token=`` query values (a
subscribe token sent as ``?token=``, or a JWT as ``?authorization=``, would otherwise be in
uvicorn's access log). A traceback
appended to a record keeps its lines: it comes from the hub's code, not from a client.

Every line's time is ISO 8601 in UTC with milliseconds (``2025-05-04T09:30:00.123Z``), the
same for ssehub's lines, uvicorn's and those of each ``--workers`` process.
"""

from __future__ import annotations

import logging
import re
import time
from urllib.parse import urlsplit, urlunsplit

__all__ = ["SafeFormatter", "escape_controls", "redact_tokens", "redact_url"]

# C0 controls and DEL, C1 controls, and the Unicode line and paragraph separators.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_TOKEN = re.compile(r"([?&](?:(?:access_)?token|authorization)=)[^&\s\"']*", re.IGNORECASE)


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
    """``text`` with the value of every ``token=`` and ``authorization=`` (a JWT) query
    parameter replaced by ``***``."""
    lowered = text.lower()
    if "token=" not in lowered and "authorization=" not in lowered:
        return text
    return _TOKEN.sub(r"\1***", text)


def redact_url(url: str) -> str:
    """``url`` with the password of its user info, if any, replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not even a URL: hide everything between "//" and "@"
        return re.sub(r"//[^/@]*@", "//***@", url)
    if password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    name = user.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{name}:***@{host}"))


class SafeFormatter(logging.Formatter):
    """A `logging.Formatter` whose messages are escaped (`escape_controls`) and redacted
    (`redact_tokens`), and whose times are ISO 8601 UTC with milliseconds unless ``datefmt``
    is given."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """``2025-05-04T09:30:00.123Z``: the record's time in UTC (``datefmt``, if given,
        formats it as `logging.Formatter` does)."""
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{seconds}.{int(record.msecs):03d}Z"

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The formatted line, with the record's message made safe first."""
        record.message = redact_tokens(escape_controls(record.message))
        return super().formatMessage(record)
