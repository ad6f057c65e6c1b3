"""Channel selectors (stand-in until the full RFC 6570 module lands): exact names, ``*``,
and URI templates whose ``{var}`` expressions match one path segment."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from ssehub.errors import SSEHubError

__all__ = ["MAX_SELECTORS", "InvalidSelector", "Selector", "Selectors"]

MAX_SELECTORS = 64


class InvalidSelector(SSEHubError, ValueError):
    """A channel selector that is empty, too long or not a valid URI template."""


class Selector:
    """One selector: an exact channel name, ``*`` or a URI template."""

    __slots__ = ("_regex", "kind", "text")

    def __init__(self, text: str) -> None:
        if not text:
            raise InvalidSelector("a channel selector may not be empty")
        self.text = text
        self._regex: re.Pattern[str] | None = None
        if text == "*":
            self.kind = "any"
        elif "{" in text:
            self.kind = "template"
            parts = re.split(r"\{[^{}]+\}", text)
            self._regex = re.compile("[^/?#]+".join(re.escape(p) for p in parts))
        else:
            self.kind = "exact"

    def matches(self, channel: str) -> bool:
        """Whether ``channel`` is selected."""
        if self.kind == "any":
            return True
        if self._regex is not None:
            return self._regex.fullmatch(channel) is not None
        return channel == self.text


class Selectors:
    """An immutable set of selectors."""

    __slots__ = ("everything", "names", "patterns")

    def __init__(self, selectors: Iterable[str | Selector]) -> None:
        items = [s if isinstance(s, Selector) else Selector(s) for s in selectors]
        if len(items) > MAX_SELECTORS:
            raise InvalidSelector(f"at most {MAX_SELECTORS} selectors")
        self.names = frozenset(s.text for s in items if s.kind == "exact")
        self.patterns = tuple(s for s in items if s.kind != "exact")
        self.everything = any(s.kind == "any" for s in items)

    @property
    def exact_only(self) -> bool:
        """Whether every selector is an exact name."""
        return not self.patterns

    def matches(self, channel: str) -> bool:
        """Whether any selector selects ``channel``."""
        if channel in self.names or self.everything:
            return True
        return any(p.matches(channel) for p in self.patterns)

    def __iter__(self) -> Iterator[Selector]:
        return iter([*(Selector(n) for n in sorted(self.names)), *self.patterns])

    def __len__(self) -> int:
        return len(self.names) + len(self.patterns)

    def __bool__(self) -> bool:
        return bool(self.names or self.patterns)
