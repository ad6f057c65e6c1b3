"""Channel selectors: which channels a stream reads or a token grants, as Mercure's topic selectors.

A selector is one of:

- an exact channel name (``/events/news``): matches that name only, character for character;
- ``*``: matches every channel;
- an RFC 6570 URI template (``/events/rooms/{id}``): matches every channel name that some
  expansion of the template produces, levels 1 to 4 (every operator, several variables in one
  expression, the ``*`` explode and ``:N`` prefix modifiers).

A text is a template exactly when it holds a ``{`` or a ``}``, and then it must be a valid
template: an unbalanced brace, an empty or nested expression, a reserved operator or a bad
variable name raises `InvalidSelector`. (Mercure treats a topic selector that fails to parse as a
template as an exact topic; that makes a typo grant nothing, silently. Here it is an error, and
a channel whose name holds a brace can only be selected by ``*`` or a variable's value.)

How a template matches, where RFC 6570 (which defines expansion, not matching) leaves room:

- Channel names are request paths *after* percent-decoding, so a variable's value is matched
  leniently: where the RFC would percent-encode a character, the channel may hold it as is.
  A value matched by ``{var}``, ``{.var}``, ``{/var}``, ``{;var}``, ``{?var}`` or ``{&var}`` is
  any run of characters other than the RFC 3986 reserved ones, ``:/?#[]@!$&'()*+,;=`` (so
  ``{id}`` spans one path segment, and ``%2F`` is three ordinary characters); with ``{+var}`` and
  ``{#var}`` reserved characters are allowed too. No value ever holds a control character.
- Values may be empty (the RFC expands an empty or undefined variable to nothing), so
  ``/events/rooms/{id}`` matches ``/events/rooms/`` too.
- A variable without ``*`` stands for one string value; lists and associative arrays are matched
  through the explode modifier (``{list*}`` matches ``a,b,c`` and ``k=v,k2=v2``).
- A prefix ``{var:3}`` allows at most 3 characters, a character percent-encoded as UTF-8
  (``%41``, ``%C3%A9``) counting as one.
- A variable named twice is matched independently at each place.

Python's `re` backtracks, and a template such as ``{a}-{b}-{c}-{d}-{e}`` would make it take
time exponential in the number of expressions on a long channel name that fails to match (a
subscriber chooses its selectors). So a template compiles, like a regular expression, to a
Thompson automaton over its structure, run as a lazily built DFA: matching takes time linear in
the channel name's length whatever the template, and a hot template costs one dict lookup per
character.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias

from ssehub.errors import InvalidSelector

__all__ = [
    "MATCH_CACHE_SIZE",
    "MAX_SELECTORS",
    "MAX_SELECTOR_LENGTH",
    "Selector",
    "SelectorKind",
    "Selectors",
]

MAX_SELECTOR_LENGTH: Final = 1024
"""The longest selector text accepted, in characters."""

MAX_SELECTORS: Final = 64
"""The most distinct selectors one `Selectors` may hold."""

MATCH_CACHE_SIZE: Final = 4096
"""How many channels' pattern results a `Selectors` remembers (it forgets them all when full)."""

SelectorKind: TypeAlias = Literal["exact", "any", "template"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROLS = frozenset(map(chr, [*range(0x20), *range(0x7F, 0xA0)]))
_RESERVED = frozenset(":/?#[]@!$&'()*+,;=")
_HEX = frozenset("0123456789abcdefABCDEF")
_VARSPEC = re.compile(
    r"(?P<name>(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2})(?:\.?(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2}))*)"
    r"(?::(?P<prefix>[1-9][0-9]{0,3})|(?P<explode>\*))?"
)


@dataclass(frozen=True, slots=True)
class Selector:
    """One selector: an exact channel name, ``*``, or an RFC 6570 URI template.

    ``Selector(text)`` (or `Selector.parse`) validates the text and raises `InvalidSelector`
    when it is empty, longer than `MAX_SELECTOR_LENGTH`, holds a control character, or holds a
    brace that does not form a valid template. Immutable and safe to share between threads.
    """

    text: str
    kind: SelectorKind = field(init=False)
    _template: _Template | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        kind, template = _classify(self.text)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "_template", template)

    @classmethod
    def parse(cls, text: str | Selector) -> Selector:
        """The selector ``text`` spells (a `Selector` is returned as is); raises
        `InvalidSelector`."""
        return text if isinstance(text, Selector) else cls(text)

    def matches(self, channel: str) -> bool:
        """Whether ``channel`` is selected. Linear in ``len(channel)``."""
        if self._template is not None:
            return self._template.matches(channel)
        return self.kind == "any" or channel == self.text


class Selectors:
    """An immutable set of selectors: a channel is selected when any of them matches it.

    Built from an iterable of texts or `Selector` values (duplicates count once; a single ``str``
    is refused with `TypeError`, as it would otherwise be read as one selector per character).
    Raises `InvalidSelector` for a bad selector or more than `MAX_SELECTORS` distinct ones. An
    empty set matches nothing. Safe to share between threads.
    """

    __slots__ = ("_cache", "_everything", "_names", "_patterns", "_selectors", "_templates")

    def __init__(self, selectors: Iterable[str | Selector] = ()) -> None:
        if isinstance(selectors, str):
            raise TypeError(
                "Selectors takes an iterable of selectors, not a str: Selectors([text])"
            )
        found: dict[str, Selector] = {}
        for item in selectors:
            text = item.text if isinstance(item, Selector) else item
            if text in found:
                continue
            if len(found) == MAX_SELECTORS:
                raise InvalidSelector(f"more than {MAX_SELECTORS} selectors in one set")
            found[text] = Selector.parse(item)
        self._selectors = tuple(found.values())
        self._names = frozenset(s.text for s in self._selectors if s.kind == "exact")
        self._patterns = tuple(s for s in self._selectors if s.kind != "exact")
        self._templates = tuple(s for s in self._patterns if s.kind == "template")
        self._everything = any(s.kind == "any" for s in self._patterns)
        self._cache: dict[str, bool] = {}

    @property
    def names(self) -> frozenset[str]:
        """The exact channel names among the selectors."""
        return self._names

    @property
    def patterns(self) -> tuple[Selector, ...]:
        """The ``*`` and template selectors, in the order given."""
        return self._patterns

    @property
    def everything(self) -> bool:
        """Whether ``*`` is among the selectors (every channel matches)."""
        return self._everything

    @property
    def exact_only(self) -> bool:
        """Whether every selector is an exact name (true of the empty set): `names` says it all."""
        return not self._patterns

    def matches(self, channel: str) -> bool:
        """Whether any selector matches ``channel``.

        Exact names cost one set lookup; template results are remembered for up to
        `MATCH_CACHE_SIZE` channels, so a hot channel costs one dict lookup.
        """
        if self._everything or channel in self._names:
            return True
        if not self._templates:
            return False
        cache = self._cache
        known = cache.get(channel)
        if known is not None:
            return known
        result = any(s.matches(channel) for s in self._templates)
        if len(cache) >= MATCH_CACHE_SIZE:
            # Forgetting everything at once keeps the bound without an eviction order to
            # maintain, and a dict's clear() is safe against concurrent readers.
            cache.clear()
        cache[channel] = result
        return result

    def __iter__(self) -> Iterator[Selector]:
        return iter(self._selectors)

    def __len__(self) -> int:
        return len(self._selectors)

    def __bool__(self) -> bool:
        return bool(self._selectors)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Selectors):
            return NotImplemented
        return self._texts() == other._texts()

    def __hash__(self) -> int:
        return hash(self._texts())

    def __repr__(self) -> str:
        return f"Selectors({[s.text for s in self._selectors]!r})"

    def _texts(self) -> frozenset[str]:
        return frozenset(s.text for s in self._selectors)


# ---------------------------------------------------------------- parsing


def _classify(text: str) -> tuple[SelectorKind, _Template | None]:
    if not isinstance(text, str):
        raise TypeError(f"a selector is a str, not {type(text).__name__}")
    if not text:
        raise InvalidSelector("a selector must not be empty")
    if len(text) > MAX_SELECTOR_LENGTH:
        raise InvalidSelector(
            f"a selector of {len(text)} characters is longer than the limit of "
            f"{MAX_SELECTOR_LENGTH}"
        )
    control = _CONTROL.search(text)
    if control is not None:
        raise InvalidSelector(
            f"control character U+{ord(control.group()):04X} at position {control.start()} "
            f"of the selector {_shown(text)}"
        )
    if text == "*":
        return "any", None
    if "{" not in text and "}" not in text:
        return "exact", None
    return "template", _compile(text)


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 80 else repr(text[:77] + "...")


@dataclass(frozen=True, slots=True)
class _Operator:
    first: str  # written before the first defined variable
    sep: str  # between variables, and between an exploded variable's elements
    named: bool  # each value is written name=value
    ifemp: str  # written after the name instead of "=" when a named value is empty
    reserved: bool  # values may hold reserved characters unencoded


_OPERATORS: Final = {
    "": _Operator("", ",", False, "", False),
    "+": _Operator("", ",", False, "", True),
    "#": _Operator("#", ",", False, "", True),
    ".": _Operator(".", ".", False, "", False),
    "/": _Operator("/", "/", False, "", False),
    ";": _Operator(";", ";", True, "", False),
    "?": _Operator("?", "&", True, "=", False),
    "&": _Operator("&", "&", True, "=", False),
}
_FUTURE_OPERATORS: Final = frozenset("=,!@|")


@dataclass(frozen=True, slots=True)
class _Variable:
    name: str
    prefix: int | None
    explode: bool


# The template's language as a tiny regular-expression tree, compiled by _Automaton.


@dataclass(frozen=True, slots=True)
class _Chars:
    """One character: in ``chars``, or (negated) not in them."""

    chars: frozenset[str]
    negated: bool


@dataclass(frozen=True, slots=True)
class _Seq:
    parts: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Alt:
    options: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Opt:
    body: _Node


@dataclass(frozen=True, slots=True)
class _Star:
    body: _Node


@dataclass(frozen=True, slots=True)
class _Upto:
    """``body`` 0 to ``limit`` times; ``body`` consumes at least one character and holds no
    `_Upto` (the automaton keeps one counter per thread)."""

    body: _Node
    limit: int


@dataclass(frozen=True, slots=True)
class _Subsequence:
    """A non-empty ordered subsequence of ``items`` joined by ``sep``: the defined variables of
    an expression (undefined ones are skipped, with their separator)."""

    items: tuple[_Node, ...]
    sep: str


_Node: TypeAlias = "_Chars | _Seq | _Alt | _Opt | _Star | _Upto | _Subsequence"

_UNRESERVED: Final = _Chars(_RESERVED | _CONTROLS, negated=True)
_ANY: Final = _Chars(_CONTROLS, negated=True)
_HEX_DIGIT: Final = _Chars(_HEX, negated=False)


def _literal(text: str) -> _Seq:
    return _Seq(tuple(_Chars(frozenset(c), negated=False) for c in text))


def _percent_encoded(first: str, continuations: int) -> _Seq:
    """A byte starting with a hex digit in ``first``, then UTF-8 continuation bytes, as %XX."""
    continuation = (_literal("%"), _Chars(frozenset("89abAB"), negated=False), _HEX_DIGIT)
    return _Seq(
        (_literal("%"), _Chars(frozenset(first), negated=False), _HEX_DIGIT)
        + continuation * continuations
    )


# One character percent-encoded as UTF-8 (what a prefix modifier counts as one character).
_PERCENT_ENCODED_CHARACTER: Final = _Alt(
    (
        _percent_encoded("01234567", 0),
        _percent_encoded("cdCD", 1),
        _percent_encoded("eE", 2),
        _percent_encoded("fF", 3),
    )
)


@functools.lru_cache(maxsize=1024)
def _compile(text: str) -> _Template:
    """The template ``text`` spells; shared between every selector of that text."""
    parts: list[_Node] = []
    literals: list[str] = []  # the literal text before each expression, and after the last
    position = 0
    while True:
        opening = text.find("{", position)
        closing = text.find("}", position)
        if opening < 0:
            if closing >= 0:
                raise InvalidSelector(f"'}}' without '{{' at position {closing} of {_shown(text)}")
            literals.append(text[position:])
            break
        if 0 <= closing < opening:
            raise InvalidSelector(f"'}}' without '{{' at position {closing} of {_shown(text)}")
        if closing < 0:
            raise InvalidSelector(f"unclosed '{{' at position {opening} of {_shown(text)}")
        nested = text.find("{", opening + 1, closing)
        if nested >= 0:
            raise InvalidSelector(
                f"'{{' inside an expression at position {nested} of {_shown(text)}"
            )
        literals.append(text[position:opening])
        parts.append(_expression(text[opening + 1 : closing], opening, text))
        position = closing + 1
    # The literal text before the first expression and after the last is checked with
    # startswith/endswith; the automaton runs on what lies between.
    middle: list[_Node] = []
    for index, expression in enumerate(parts):
        if index:
            middle.append(_literal(literals[index]))
        middle.append(expression)
    return _Template(literals[0], literals[-1], _Automaton(_Seq(tuple(middle))))


def _expression(body: str, at: int, text: str) -> _Node:
    where = f"in the expression at position {at} of {_shown(text)}"
    if not body:
        raise InvalidSelector(f"empty expression '{{}}' at position {at} of {_shown(text)}")
    operator = body[0] if body[0] in _OPERATORS or body[0] in _FUTURE_OPERATORS else ""
    if operator in _FUTURE_OPERATORS:
        raise InvalidSelector(f"operator {operator!r} is reserved by RFC 6570 {where}")
    variables: list[_Variable] = []
    for spec in body[len(operator) :].split(","):
        found = _VARSPEC.fullmatch(spec)
        if found is None:
            raise InvalidSelector(
                f"invalid variable {spec!r} {where}: a name is letters, digits, '_', '%XX' and "
                "inner '.', optionally followed by ':N' (N from 1 to 9999) or '*'"
            )
        prefix = found.group("prefix")
        variables.append(
            _Variable(
                found.group("name"),
                None if prefix is None else int(prefix),
                found.group("explode") is not None,
            )
        )
    op = _OPERATORS[operator]
    items = tuple(_item(op, variable) for variable in variables)
    defined = items[0] if len(items) == 1 else _Subsequence(items, op.sep)
    # No variable defined (or all empty lists) expands to nothing, not even ``first``.
    return _Opt(_Seq((_literal(op.first), defined)))


def _value(op: _Operator, prefix: int | None, *, nonempty: bool) -> _Node:
    """One string value of a variable, percent-encoded or (leniently) not."""
    char = _ANY if op.reserved else _UNRESERVED
    if prefix is None:
        return _Seq((char, _Star(char))) if nonempty else _Star(char)
    unit = _Alt((_PERCENT_ENCODED_CHARACTER, char))
    if not nonempty:
        return _Upto(unit, prefix)
    return _Seq((unit, _Upto(unit, prefix - 1))) if prefix > 1 else unit


def _named(op: _Operator, name: _Node, value: _Node) -> _Node:
    """``name=value``, or ``name`` followed by ``ifemp`` for an empty value (``value`` is
    non-empty)."""
    return _Seq((name, _Alt((_literal(op.ifemp), _Seq((_literal("="), value))))))


def _joined(item: _Node, sep: str) -> _Node:
    return _Seq((item, _Star(_Seq((_literal(sep), item)))))


def _item(op: _Operator, variable: _Variable) -> _Node:
    """What one defined variable expands to."""
    name = _literal(variable.name)
    if not variable.explode:
        if op.named:
            return _named(op, name, _value(op, variable.prefix, nonempty=True))
        return _value(op, variable.prefix, nonempty=False)
    # Exploded: a non-empty list (each element one item) or associative array (each pair one
    # item), joined by the operator's separator.
    key = _value(op, None, nonempty=True)
    if op.named:
        value = _value(op, None, nonempty=True)
        listed, paired = _named(op, name, value), _named(op, key, value)
    else:
        element = _value(op, None, nonempty=False)
        listed, paired = element, _Seq((key, _literal("="), element))
    return _Alt((_joined(listed, op.sep), _joined(paired, op.sep)))


# ---------------------------------------------------------------- matching

_CHAR, _SPLIT, _ENTER, _LOOP, _NEXT, _ACCEPT = range(6)
_Thread: TypeAlias = tuple[int, int]  # (node, count of the _Upto the node is in, else 0)
_State: TypeAlias = frozenset[_Thread]

_TRANSITIONS: Final = 512  # cached DFA transitions per automaton (all forgotten when full)
_CACHED_STATE_SIZE: Final = 16  # larger DFA states are computed each time, never cached


class _Automaton:
    """A Thompson NFA whose threads carry one counter (for ``_Upto``), run as a lazily built,
    bounded DFA: time linear in the text's length, memory bounded per automaton."""

    __slots__ = ("_accept", "_alt", "_kind", "_limit", "_out", "_start", "_test", "_transitions")

    def __init__(self, tree: _Node) -> None:
        self._kind: list[int] = []
        self._test: list[tuple[frozenset[str], bool]] = []
        self._out: list[int] = []
        self._alt: list[int] = []
        self._limit: list[int] = []
        accept = self._add(_ACCEPT)
        self._accept: _Thread = (accept, 0)
        self._start = self._closure([(self._build(tree, accept), 0)])
        self._transitions: dict[tuple[_State, str], _State] = {}

    def matches(self, text: str) -> bool:
        state = self._start
        transitions = self._transitions
        for char in text:
            key = (state, char)
            following = transitions.get(key)
            if following is None:
                following = self._step(state, char)
                if len(following) <= _CACHED_STATE_SIZE:
                    if len(transitions) >= _TRANSITIONS:
                        transitions.clear()
                    transitions[key] = following
            if not following:
                return False
            state = following
        return self._accept in state

    def _add(self, kind: int, out: int = -1, alt: int = -1, limit: int = 0) -> int:
        self._kind.append(kind)
        self._test.append((frozenset(), False))
        self._out.append(out)
        self._alt.append(alt)
        self._limit.append(limit)
        return len(self._kind) - 1

    def _build(self, tree: _Node, then: int) -> int:
        """The node that matches ``tree`` and continues at node ``then``."""
        if isinstance(tree, _Chars):
            node = self._add(_CHAR, then)
            self._test[node] = (tree.chars, tree.negated)
            return node
        if isinstance(tree, _Seq):
            for part in reversed(tree.parts):
                then = self._build(part, then)
            return then
        if isinstance(tree, _Alt):
            entry = self._build(tree.options[-1], then)
            for option in reversed(tree.options[:-1]):
                entry = self._add(_SPLIT, self._build(option, then), entry)
            return entry
        if isinstance(tree, _Opt):
            return self._add(_SPLIT, self._build(tree.body, then), then)
        if isinstance(tree, _Star):
            loop = self._add(_SPLIT, -1, then)
            self._out[loop] = self._build(tree.body, loop)
            return loop
        if isinstance(tree, _Upto):
            loop = self._add(_LOOP, -1, then, tree.limit)
            self._out[loop] = self._build(tree.body, self._add(_NEXT, loop))
            return self._add(_ENTER, loop)
        # _Subsequence: two chains over the items, one before any item was taken (the last
        # item cannot be skipped there) and one after, where each further item takes a
        # separator. Sharing the second chain keeps the automaton linear in the items.
        # after[i]: item i was the last one taken; a separator precedes each further item.
        count = len(tree.items)
        after = [then] * count
        for index in range(count - 2, -1, -1):
            following = after[index + 1]
            further = self._build(_Seq((_literal(tree.sep), tree.items[index + 1])), following)
            after[index] = self._add(_SPLIT, further, following)
        entry = self._build(tree.items[-1], then)
        for index in range(count - 2, -1, -1):
            entry = self._add(_SPLIT, self._build(tree.items[index], after[index]), entry)
        return entry

    def _closure(self, threads: Iterable[_Thread]) -> _State:
        """The threads reachable without consuming a character that wait on one (or accept).

        Of two threads at one node, the one with the lower count can do all the other can (a
        count only ever has an upper bound), so only the lowest count is kept: a state holds at
        most one thread per node, and a step costs at most the automaton's size.
        """
        stack = list(threads)
        lowest: dict[int, int] = {}
        kind, out, alt, limit = self._kind, self._out, self._alt, self._limit
        while stack:
            node, count = stack.pop()
            if lowest.get(node, count + 1) <= count:
                continue
            lowest[node] = count
            step = kind[node]
            if step == _SPLIT:
                stack.append((out[node], count))
                stack.append((alt[node], count))
            elif step == _ENTER:
                stack.append((out[node], 0))
            elif step == _LOOP:
                if count < limit[node]:
                    stack.append((out[node], count))
                stack.append((alt[node], 0))
            elif step == _NEXT:
                stack.append((out[node], count + 1))
        return frozenset((n, c) for n, c in lowest.items() if kind[n] in (_CHAR, _ACCEPT))

    def _step(self, state: _State, char: str) -> _State:
        moved: list[_Thread] = []
        for node, count in state:
            if self._kind[node] == _CHAR:
                chars, negated = self._test[node]
                if (char in chars) != negated:
                    moved.append((self._out[node], count))
        return self._closure(moved)


@dataclass(frozen=True, slots=True)
class _Template:
    """A compiled template: literal text before its first expression and after its last, and
    the automaton for what lies between."""

    head: str
    tail: str
    automaton: _Automaton

    def matches(self, channel: str) -> bool:
        head, tail = len(self.head), len(self.tail)
        if len(channel) < head + tail:
            return False
        if not channel.startswith(self.head) or not channel.endswith(self.tail):
            return False
        return self.automaton.matches(channel[head : len(channel) - tail])
