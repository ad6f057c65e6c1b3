"""The SSE wire format, sans-IO: `Message`, its encoding, and an incremental stream parser.

Nothing here does I/O or touches an event loop. Encoding follows the WHATWG HTML spec's
"event stream" format; the parser follows its "interpreting an event stream" rules exactly.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass

from ssehub.errors import InvalidMessage

__all__ = ["EventParser", "Message", "encode_comment", "encode_data", "id_problem"]

_MAX_RETRY = 2**63 - 1
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _check_encodable(name: str, text: str) -> None:
    # isascii() is O(1) in CPython (a flag of the str object): ASCII text costs nothing here.
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError as exc:
            raise InvalidMessage(
                f"{name} is not encodable as UTF-8: a lone surrogate at index {exc.start} "
                "(text must be valid Unicode)"
            ) from None


# Leading or trailing space or tab (Fetch strips them from header values), or a control
# character other than tab (HTTP servers answer 400 to a header holding one).
_UNSENDABLE_ID = re.compile(r"^[ \t]|[ \t]$|[\x00-\x08\x0a-\x1f\x7f]")


def id_problem(event_id: str) -> str | None:
    """Why a client could not send ``event_id`` back as ``Last-Event-ID``, or None if it can.

    Browsers send the header as UTF-8 bytes (any non-ASCII text is fine), strip leading and
    trailing spaces and tabs, and HTTP servers refuse a header value with a control character
    (tab aside). A client resuming after such an id would get a false gap and every retained
    event again, or no answer at all.
    """
    found = _UNSENDABLE_ID.search(event_id)
    if found is None:
        return None
    char = found.group()
    if char in " \t":
        return "it starts or ends with a space or tab, which HTTP strips from Last-Event-ID"
    return f"it holds the control character {char!r}, which HTTP servers refuse in Last-Event-ID"


def encode_data(data: object) -> str:
    """The text of an event's ``data``: a str as it is, any other value as compact JSON.

    Dicts, lists, numbers, booleans and None become ``json.dumps(data, separators=(",", ":"),
    ensure_ascii=False)`` (``{"price":42}``, ``null``). Raises `InvalidMessage` for a value JSON
    cannot encode (a set, bytes, a datetime, NaN, a circular reference).
    """
    if type(data) is str:
        return data
    if isinstance(data, str):
        return str(data)  # a str subclass (an Enum's value, say) is its text, not JSON
    try:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidMessage(
            f"data must be a str or a value JSON can encode (dict, list, number, bool, None), "
            f"got {type(data).__name__}: {exc}"
        ) from None


def _split_lines(text: str) -> list[str]:
    if "\r" in text:
        return _LINE_BREAK.split(text)
    return text.split("\n")


@dataclass(frozen=True, slots=True, init=False)
class Message:
    """One server-sent event.

    ``data`` may hold any text; it is sent as one ``data:`` line per line (CRLF, CR and LF all
    split lines). Any other value (dict, list, number, bool, None) is encoded once, when the
    message is made, as compact JSON (`encode_data`): ``Message({"price": 42}).data`` is the
    str ``'{"price":42}'``. ``id`` may not contain CR, LF or NUL, ``event`` may not contain CR
    or LF, and ``retry`` (the client's reconnection delay in milliseconds) must be a
    non-negative integer. ``comment`` is sent as ``:`` lines before the fields; clients ignore
    it. Every text field must be encodable as UTF-8 (no lone surrogate such as
    ``"\\ud800"``), so that a message that was built can always be encoded.

    Raises `InvalidMessage` (a `ValueError`) when a field breaks those rules. Any such message
    can be parsed (a client's `EventParser` makes them), but `encode` also refuses an ``id`` a
    client could not send back as ``Last-Event-ID`` (see `id_problem`).
    """

    data: str = ""
    id: str | None = None
    event: str | None = None
    retry: int | None = None
    comment: str | None = None

    def __init__(
        self,
        data: object = "",
        id: str | None = None,
        event: str | None = None,
        retry: int | None = None,
        comment: str | None = None,
    ) -> None:
        # Frozen: fields are set once, here, as the dataclass's own __init__ would.
        setattr_ = object.__setattr__
        setattr_(self, "data", encode_data(data))
        setattr_(self, "id", id)
        setattr_(self, "event", event)
        setattr_(self, "retry", retry)
        setattr_(self, "comment", comment)
        self._validate()

    def _validate(self) -> None:
        _check_encodable("data", self.data)
        if self.id is not None:
            if not isinstance(self.id, str):
                raise InvalidMessage(f"id must be a str, got {type(self.id).__name__}")
            if "\r" in self.id or "\n" in self.id or "\0" in self.id:
                raise InvalidMessage(f"id may not contain CR, LF or NUL: {self.id!r}")
            _check_encodable("id", self.id)
        if self.event is not None:
            if not isinstance(self.event, str):
                raise InvalidMessage(f"event must be a str, got {type(self.event).__name__}")
            if "\r" in self.event or "\n" in self.event:
                raise InvalidMessage(f"event may not contain CR or LF: {self.event!r}")
            _check_encodable("event", self.event)
        if self.retry is not None and (
            isinstance(self.retry, bool)
            or not isinstance(self.retry, int)
            or not 0 <= self.retry <= _MAX_RETRY
        ):
            raise InvalidMessage(
                "retry must be a non-negative integer number of milliseconds (at most 2**63-1), "
                f"got {self.retry!r}"
            )
        if self.comment is not None:
            if not isinstance(self.comment, str):
                raise InvalidMessage(f"comment must be a str, got {type(self.comment).__name__}")
            _check_encodable("comment", self.comment)

    def encode(self) -> bytes:
        """Encode to UTF-8 bytes, fields in the order comment, id, retry, event, data.

        Raises `InvalidMessage` for an ``id`` no client could resume from (`id_problem`).
        """
        out: list[str] = []
        if self.comment is not None:
            out.extend(f": {line}\n" for line in _split_lines(self.comment))
        if self.id is not None:
            if _UNSENDABLE_ID.search(self.id) is not None:
                raise InvalidMessage(
                    f"id {self.id!r} cannot be resumed from: {id_problem(self.id)}"
                )
            out.append(f"id: {self.id}\n")
        if self.retry is not None:
            out.append(f"retry: {self.retry}\n")
        if self.event is not None:
            out.append(f"event: {self.event}\n")
        data = self.data
        if "\n" in data or "\r" in data:
            out.extend(f"data: {line}\n" for line in _split_lines(data))
        else:
            out.append(f"data: {data}\n")
        out.append("\n")
        try:
            return "".join(out).encode()
        except UnicodeEncodeError as exc:
            raise InvalidMessage(
                f"message text is not encodable as UTF-8 (a lone surrogate?): {exc.reason}"
            ) from None


def encode_comment(text: str = "") -> bytes:
    """Encode a comment block (``: text`` lines and a blank line); clients ignore it."""
    return "".join(f": {line}\n" if line else ":\n" for line in _split_lines(text)).encode() + (
        b"\n"
    )


class EventParser:
    """Incremental parser of a ``text/event-stream`` body, exact to the WHATWG parsing rules.

    Feed it bytes as they arrive, in chunks of any size; it returns the events completed so far.
    A leading BOM is dropped, CRLF, CR and LF all end lines (also when CR and LF arrive in
    different chunks), one space after the colon is removed, unknown fields are ignored, ``retry``
    is taken only when it is all ASCII digits, and an ``id`` containing NUL is ignored.

    Each returned `Message` carries the stream's last event id (as a browser's ``lastEventId``),
    its event type (None for the default "message"), its data, and ``retry`` when that event's
    block set one. `last_event_id` and `retry` hold the stream state a reconnecting client needs.
    Not thread-safe; one parser per stream.
    """

    __slots__ = (
        "_buf",
        "_data",
        "_decoder",
        "_event",
        "_event_retry",
        "_has_data",
        "_id_buffer",
        "_skip_lf",
        "_start",
        "last_event_id",
        "retry",
    )

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf = ""
        self._start = True
        self._skip_lf = False
        self._data: list[str] = []
        self._has_data = False
        self._event = ""
        self._event_retry: int | None = None
        # The spec's "last event ID buffer": it becomes `last_event_id` only when a blank line
        # ends the block, so an id in a block the stream never finished is not taken as seen.
        self._id_buffer: str | None = None
        self.last_event_id: str | None = None
        """The id of the last event block the stream finished (None until one set an id); resend it
        on reconnect. An ``id`` line counts only once the blank line ending its block arrives."""
        self.retry: int | None = None
        """The reconnection time in milliseconds last set by the stream, if any."""

    def feed(self, chunk: bytes) -> list[Message]:
        """Take the next bytes of the stream; return the events they complete, in order."""
        text = self._decoder.decode(chunk)
        if self._start:
            if not text:
                return []
            if text[0] == "\ufeff":
                text = text[1:]
            self._start = False
        if self._skip_lf and text:
            if text[0] == "\n":
                text = text[1:]
            self._skip_lf = False
        if not text:
            return []
        buf = self._buf + text if self._buf else text
        lines = _LINE_BREAK.split(buf)
        # The last piece is an unfinished line; a trailing CR may yet be the first half of CRLF.
        self._buf = lines.pop()
        if buf.endswith("\r"):
            self._skip_lf = True
        events: list[Message] = []
        for line in lines:
            self._line(line, events)
        return events

    def _line(self, line: str, events: list[Message]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line[0] == ":":
            return
        field, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if field == "data":
            self._data.append(value)
            self._has_data = True
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self._id_buffer = value
        elif field == "retry":
            if value and value.isascii() and value.isdigit():
                # A delay too long to represent (past 2**63-1 ms, or past int()'s digit limit)
                # is unusable: the field is ignored rather than the stream broken.
                digits = value.lstrip("0") or "0"
                if len(digits) > 19:
                    return
                retry = int(digits)
                if retry > _MAX_RETRY:
                    return
                self.retry = self._event_retry = retry

    def _dispatch(self, events: list[Message]) -> None:
        self.last_event_id = self._id_buffer
        retry, self._event_retry = self._event_retry, None
        if not self._has_data:
            self._event = ""
            return
        events.append(
            Message(
                "\n".join(self._data),
                id=self.last_event_id,
                event=self._event or None,
                retry=retry,
            )
        )
        self._data = []
        self._has_data = False
        self._event = ""
