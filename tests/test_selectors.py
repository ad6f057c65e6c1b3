"""ssehub.selectors: exact names, ``*`` and RFC 6570 URI templates matched against channel names."""

from __future__ import annotations

import re
import string
import time
from collections.abc import Iterator
from typing import TypeAlias

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ssehub
from ssehub import InvalidSelector, Selector, Selectors
from ssehub.selectors import MATCH_CACHE_SIZE, MAX_SELECTOR_LENGTH, MAX_SELECTORS
from tests._support.properties import property_settings

PROPERTY_SETTINGS = property_settings(250)

RESERVED = ":/?#[]@!$&'()*+,;="


def test_the_names_are_exported_from_ssehub() -> None:
    assert ssehub.Selector is Selector
    assert ssehub.Selectors is Selectors
    assert ssehub.InvalidSelector is InvalidSelector
    assert issubclass(InvalidSelector, ssehub.SSEHubError)
    assert issubclass(InvalidSelector, ValueError)


# ---------------------------------------------------------------- kinds


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("/events/news", "exact"),
        ("*", "any"),
        ("/events/*", "exact"),
        ("**", "exact"),
        ("/a.b+c(d)", "exact"),
        ("/events/rooms/{id}", "template"),
        ("{x}", "template"),
        ("https://example.com/books/{id}{?format}", "template"),
    ],
)
def test_a_selector_is_exact_any_or_a_template(text: str, kind: str) -> None:
    selector = Selector(text)
    assert selector.kind == kind
    assert selector.text == text
    assert Selector.parse(text) == selector


def test_parse_returns_a_selector_as_is() -> None:
    selector = Selector("/a/{b}")
    assert Selector.parse(selector) is selector


def test_a_selector_is_a_value() -> None:
    assert Selector("/a/{b}") == Selector("/a/{b}")
    assert hash(Selector("/a/{b}")) == hash(Selector("/a/{b}"))
    assert Selector("/a/{b}") != Selector("/a/{c}")
    assert repr(Selector("/a")) == "Selector(text='/a', kind='exact')"
    with pytest.raises(AttributeError):
        Selector("/a").text = "/b"  # type: ignore[misc]


# ---------------------------------------------------------------- exact and any


@pytest.mark.parametrize("name", ["/a.b+c(d)", "/a[0-9]*", "/^x$|y", "/a\\d", "/é/ü", "/%2F", "*/"])
def test_an_exact_name_with_regex_special_characters_matches_only_itself(name: str) -> None:
    selector = Selector(name)
    assert selector.kind == "exact"
    assert selector.matches(name)
    for other in ("/aXb+c(d)", "/a.b+c(d)x", "/abbc(d)", "/a.bc(d)", "/a5", "/x", "", name + "/"):
        if other != name:
            assert not selector.matches(other), other


def test_star_matches_every_channel() -> None:
    selector = Selector("*")
    for channel in ("/events/news", "", "*", "/a/b/c?d#e", "x" * 10_000):
        assert selector.matches(channel)


# ---------------------------------------------------------------- templates: the RFC's examples

# RFC 6570 section 3.2's variables and examples. Composite values written without the explode
# modifier (``{list}``, ``{keys}``) are left out: a variable without ``*`` stands for one string
# (see test_a_variable_without_explode_stands_for_one_string).
RFC_EXAMPLES = [
    # 3.2.2 simple string expansion
    ("{var}", "value"),
    ("{hello}", "Hello%20World%21"),
    ("{half}", "50%25"),
    ("O{empty}X", "OX"),
    ("O{undef}X", "OX"),
    ("{x,y}", "1024,768"),
    ("{x,hello,y}", "1024,Hello%20World%21,768"),
    ("?{x,empty}", "?1024,"),
    ("?{x,undef}", "?1024"),
    ("?{undef,y}", "?768"),
    ("{var:3}", "val"),
    ("{var:30}", "value"),
    ("{list*}", "red,green,blue"),
    ("{keys*}", "semi=%3B,dot=.,comma=%2C"),
    # 3.2.3 reserved expansion
    ("{+var}", "value"),
    ("{+hello}", "Hello%20World!"),
    ("{+half}", "50%25"),
    ("{base}index", "http%3A%2F%2Fexample.com%2Fhome%2Findex"),
    ("{+base}index", "http://example.com/home/index"),
    ("O{+empty}X", "OX"),
    ("O{+undef}X", "OX"),
    ("{+path}/here", "/foo/bar/here"),
    ("here?ref={+path}", "here?ref=/foo/bar"),
    ("up{+path}{var}/here", "up/foo/barvalue/here"),
    ("{+x,hello,y}", "1024,Hello%20World!,768"),
    ("{+path,x}/here", "/foo/bar,1024/here"),
    ("{+path:6}/here", "/foo/b/here"),
    ("{+list*}", "red,green,blue"),
    ("{+keys*}", "semi=;,dot=.,comma=,"),
    # 3.2.4 fragment expansion
    ("{#var}", "#value"),
    ("{#hello}", "#Hello%20World!"),
    ("{#half}", "#50%25"),
    ("foo{#empty}", "foo#"),
    ("foo{#undef}", "foo"),
    ("{#x,hello,y}", "#1024,Hello%20World!,768"),
    ("{#path,x}/here", "#/foo/bar,1024/here"),
    ("{#path:6}/here", "#/foo/b/here"),
    ("{#list*}", "#red,green,blue"),
    ("{#keys*}", "#semi=;,dot=.,comma=,"),
    # 3.2.5 label expansion with dot-prefix
    ("{.who}", ".fred"),
    ("{.who,who}", ".fred.fred"),
    ("{.half,who}", ".50%25.fred"),
    ("www{.dom*}", "www.example.com"),
    ("X{.var}", "X.value"),
    ("X{.empty}", "X."),
    ("X{.undef}", "X"),
    ("X{.var:3}", "X.val"),
    ("X{.list*}", "X.red.green.blue"),
    ("X{.keys*}", "X.semi=%3B.dot=..comma=%2C"),
    ("X{.empty_keys}", "X"),
    ("X{.empty_keys*}", "X"),
    # 3.2.6 path segment expansion
    ("{/who}", "/fred"),
    ("{/who,who}", "/fred/fred"),
    ("{/half,who}", "/50%25/fred"),
    ("{/who,dub}", "/fred/me%2Ftoo"),
    ("{/var}", "/value"),
    ("{/var,empty}", "/value/"),
    ("{/var,undef}", "/value"),
    ("{/var,x}/here", "/value/1024/here"),
    ("{/var:1,var}", "/v/value"),
    ("{/list*}", "/red/green/blue"),
    ("{/list*,path:4}", "/red/green/blue/%2Ffoo"),
    ("{/keys*}", "/semi=%3B/dot=./comma=%2C"),
    # 3.2.7 path-style parameter expansion
    ("{;who}", ";who=fred"),
    ("{;half}", ";half=50%25"),
    ("{;empty}", ";empty"),
    ("{;v,empty,who}", ";v=6;empty;who=fred"),
    ("{;v,bar,who}", ";v=6;who=fred"),
    ("{;x,y}", ";x=1024;y=768"),
    ("{;x,y,empty}", ";x=1024;y=768;empty"),
    ("{;x,y,undef}", ";x=1024;y=768"),
    ("{;hello:5}", ";hello=Hello"),
    ("{;list*}", ";list=red;list=green;list=blue"),
    ("{;keys*}", ";semi=%3B;dot=.;comma=%2C"),
    # 3.2.8 form-style query expansion
    ("{?who}", "?who=fred"),
    ("{?half}", "?half=50%25"),
    ("{?x,y}", "?x=1024&y=768"),
    ("{?x,y,empty}", "?x=1024&y=768&empty="),
    ("{?x,y,undef}", "?x=1024&y=768"),
    ("{?var:3}", "?var=val"),
    ("{?list*}", "?list=red&list=green&list=blue"),
    ("{?keys*}", "?semi=%3B&dot=.&comma=%2C"),
    # 3.2.9 form-style query continuation
    ("{&who}", "&who=fred"),
    ("{&half}", "&half=50%25"),
    ("?fixed=yes{&x}", "?fixed=yes&x=1024"),
    ("{&x,y,empty}", "&x=1024&y=768&empty="),
    ("{&var:3}", "&var=val"),
    ("{&list*}", "&list=red&list=green&list=blue"),
    ("{&keys*}", "&semi=%3B&dot=.&comma=%2C"),
]


@pytest.mark.parametrize(("template", "expansion"), RFC_EXAMPLES)
def test_a_template_matches_the_rfc_6570_expansions(template: str, expansion: str) -> None:
    assert Selector(template).matches(expansion)


# ---------------------------------------------------------------- templates: each operator

# (template, channels it matches, channels it does not match)
OPERATOR_TABLE: list[tuple[str, list[str], list[str]]] = [
    (
        "/events/rooms/{id}",
        ["/events/rooms/42", "/events/rooms/abc-DEF_1.2~", "/events/rooms/", "/events/rooms/café"],
        [
            "/events/rooms/4/2",
            "/events/rooms",
            "/events/room/42",
            "/events/rooms/42?x",
            "/events/rooms/42#f",
            "/events/rooms/4,2",
            "/events/rooms/a=b",
            "/events/rooms/a;b",
            "/events/rooms/a:b",
            "/events/rooms/a@b",
            "/events/rooms/a\nb",
            "x/events/rooms/42",
        ],
    ),
    (
        "/users/{user}/rooms/{room}",
        ["/users/ann/rooms/1", "/users//rooms/"],
        ["/users/ann/rooms/1/2", "/users/a/b/rooms/1", "/users/ann/room/1"],
    ),
    ("{x,y}", ["a,b", "a", "", ",b", "a,"], ["a,b,c", "a/b", "a;b"]),
    ("/f/{+path}", ["/f/a/b/c", "/f/a?b#c", "/f/", "/f/a,b"], ["/g/a", "/f", "/f/a\tb"]),
    ("/f/{+x,y}", ["/f/a/b,c", "/f/a"], ["/g/a/b"]),
    ("/doc{#section}", ["/doc#intro", "/doc#a/b", "/doc"], ["/doc/intro", "/docintro"]),
    ("/doc{#a,b}", ["/doc#1,2", "/doc#1"], ["/doc1,2"]),
    # "." is unreserved: a value may hold dots.
    ("www{.dom}", ["www.example", "www", "www.example.com"], ["wwwexample", "www.a/b", "www.a,b"]),
    ("www{.dom*}", ["www.example.com", "www.example", "www.a=1.b=2"], ["www/example", "www.a=1=2"]),
    ("www{.a,b}", ["www.x.y", "www.x", "www.x.y.z"], ["www.x,y", "www,x"]),
    ("/r{/id}", ["/r/42", "/r", "/r/"], ["/r/4/2", "/r42"]),
    ("/r{/a,b}", ["/r/1/2", "/r/1"], ["/r/1/2/3", "/r1"]),
    ("/r{/list*}", ["/r/a/b/c/d", "/r/a", "/r/a=1/b=2"], ["/ra", "/r/a/b=1"]),
    ("/m{;x}", ["/m;x=1", "/m;x", "/m"], ["/m;y=1", "/m;x=", "/m;x=1;x=2", "/m;x=a/b"]),
    ("/m{;x,y}", ["/m;x=1;y=2", "/m;x;y", "/m;y=2", "/m;x=1"], ["/m;y=2;x=1", "/m;x=1;y=2;z=3"]),
    ("/m{;list*}", ["/m;list=a;list=b", "/m;list", "/m;a=1;b=2"], ["/m;list=a,b", "/m;"]),
    (
        "/s{?q,lang}",
        ["/s?q=cat&lang=en", "/s?q=&lang=", "/s?lang=en", "/s?q=cat", "/s"],
        ["/s?lang=en&q=cat", "/s?q=cat&lang=en&x=1", "/s?q", "/s?q=a&b", "/s&q=cat"],
    ),
    ("/s{?list*}", ["/s?list=a&list=b", "/s?a=1&b=", "/s?list="], ["/s?list", "/s?=a"]),
    (
        "/s?fixed=yes{&x,y}",
        ["/s?fixed=yes&x=1&y=2", "/s?fixed=yes&y=2", "/s?fixed=yes"],
        ["/s?fixed=yes&y=2&x=1", "/s?fixed=yes?x=1"],
    ),
    ("/s{&keys*}", ["/s&a=1&b=2", "/s&a="], ["/s&a", "/s?a=1"]),
    (
        "{var:3}",
        ["", "v", "val", "%41bc", "é%41b", "%C3%A9ab", "%E2%82%AC%F0%9F%98%80x", "%4"],
        ["valu", "%41bcd", "%4%4", "%C3%A9abc"],
    ),
    ("/p/{+path:4}/e", ["/p/a/bc/e", "/p//e", "/p/%2Fab/e"], ["/p/a/bcd/e"]),
    ("{/var:1,var}", ["/v/value", "/v", "/value"], ["/va/value", "/v/value/x"]),
    ("{?var:2}", ["?var=ab", "?var=", "?var=%20a"], ["?var=abc", "?var"]),
    ("{list*}", ["a,b,c", "a=1,b=2", "", "a"], ["a,b=1", "a/b"]),
    ("/a{x}b{y}c", ["/abc", "/a1b2c", "/aXbYc"], ["/a1b2", "/a1c", "/a/b2c"]),
    ("{x}{y}", ["", "ab"], ["a/b"]),
]


@pytest.mark.parametrize(("template", "matching", "other"), OPERATOR_TABLE)
def test_each_operator_matches_its_expansions_and_nothing_else(
    template: str, matching: list[str], other: list[str]
) -> None:
    selector = Selector(template)
    assert selector.kind == "template"
    for channel in matching:
        assert selector.matches(channel), channel
    for channel in other:
        assert not selector.matches(channel), channel


def test_a_variable_without_explode_stands_for_one_string() -> None:
    # A list value without the explode modifier would expand to "red,green,blue"; selectors
    # take that spelling as the explode modifier's only, so that {id} stays one value.
    assert not Selector("{list}").matches("red,green,blue")
    assert Selector("{list*}").matches("red,green,blue")
    assert not Selector("{/list}").matches("/red,green,blue")


def test_a_variable_named_twice_is_matched_independently() -> None:
    assert Selector("/{x}/{x}").matches("/a/b")


def test_a_template_never_matches_a_control_character() -> None:
    for template in ("{x}", "{+x}", "{#x}", "{x*}", "{+x:5}"):
        selector = Selector(template)
        for control in ("\x00", "\n", "\x7f", "\x85"):
            assert not selector.matches(f"#a{control}b"), (template, control)


def test_literal_text_of_a_template_is_not_a_regular_expression() -> None:
    selector = Selector("/a.b+(c)/{id}")
    assert selector.matches("/a.b+(c)/1")
    assert not selector.matches("/aXb+(c)/1")
    assert not selector.matches("/abb(c)/1")


# ---------------------------------------------------------------- invalid selectors


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("/a/{id", "unclosed '{'"),
        ("/a/id}", "'}' without '{'"),
        ("/a/}{id}", "'}' without '{'"),
        ("/a/{id}}", "'}' without '{'"),
        ("/a/{{id}}", "'{' inside an expression"),
        ("/a/{}", "empty expression"),
        ("/a/{!x}", "reserved"),
        ("/a/{=x}", "reserved"),
        ("/a/{,x}", "reserved"),
        ("/a/{@x}", "reserved"),
        ("/a/{|x}", "reserved"),
        ("/a/{+}", "invalid variable ''"),
        ("/a/{x,}", "invalid variable ''"),
        ("/a/{x,,y}", "invalid variable ''"),
        ("/a/{ x}", "invalid variable ' x'"),
        ("/a/{x-y}", "invalid variable 'x-y'"),
        ("/a/{x..y}", "invalid variable 'x..y'"),
        ("/a/{.x.}", "invalid variable 'x.'"),
        ("/a/{%zz}", "invalid variable '%zz'"),
        ("/a/{x:0}", "invalid variable 'x:0'"),
        ("/a/{x:01}", "invalid variable 'x:01'"),
        ("/a/{x:10000}", "invalid variable 'x:10000'"),
        ("/a/{x:}", "invalid variable 'x:'"),
        ("/a/{x*:3}", "invalid variable 'x*:3'"),
        ("/a/{x:3*}", "invalid variable 'x:3*'"),
        ("/a/{x**}", "invalid variable 'x**'"),
        ("/a\n", "control character U+000A at position 2"),
        ("/a\x00b", "control character U+0000"),
        ("/a\x7f", "control character U+007F"),
        ("/a\x9b", "control character U+009B"),
        ("\t{x}", "control character U+0009 at position 0"),
    ],
)
def test_an_invalid_selector_raises_saying_why(text: str, problem: str) -> None:
    with pytest.raises(InvalidSelector) as raised:
        Selector(text)
    assert problem in str(raised.value)


@pytest.mark.parametrize(
    "text", ["{x.y}", "{x_1}", "{%41b}", "{X9.a.b_c}", "{x:1}", "{x:9999}", "{x*}", "{x,y*,z:2}"]
)
def test_valid_variable_names_and_modifiers_are_accepted(text: str) -> None:
    assert Selector(text).kind == "template"


def test_a_selector_that_is_not_a_str_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        Selector(42)  # type: ignore[arg-type]


def test_a_selector_of_the_length_limit_is_accepted_and_one_more_character_is_refused() -> None:
    assert MAX_SELECTOR_LENGTH == 1024
    longest = "/" + "a" * (MAX_SELECTOR_LENGTH - 1)
    assert Selector(longest).matches(longest)
    with pytest.raises(InvalidSelector, match="1025 characters is longer than the limit of 1024"):
        Selector(longest + "a")
    with pytest.raises(InvalidSelector, match="longer than the limit"):
        Selector("{" + "x" * MAX_SELECTOR_LENGTH + "}")


def test_a_long_invalid_selector_is_shown_shortened_in_the_message() -> None:
    with pytest.raises(InvalidSelector) as raised:
        Selector("/" + "a" * 900 + "{")
    assert len(str(raised.value)) < 200


# ---------------------------------------------------------------- hostile templates


@pytest.mark.parametrize(
    ("template", "channel"),
    [
        # Each would take Python's backtracking `re` exponential time in the expressions.
        ("{a}-{b}-{c}-{d}-{e}-{f}-{g}-{h}-{i}-{j}x{k}", "a-" * 5000),
        ("{+a}{+b}{+c}{+d}{+e}{+f}{+g}{+h}x{i}", "ab" * 5000),
        ("{a*}{b*}{c*}{d*}{e*}{f*}{g*}x{h}", "a,b=c," * 2000),
        ("{?a,b,c,d,e,f,g,h}{&i*}{&j*}{&k*}x", "?a=1&b=2&i=3&j=4&" * 500),
        # Prefix counters: one thread per node, whatever the counts.
        ("{a:9999}{b:9999}{c:9999}{d:9999}x{e}", "%41" * 3000),
    ],
)
def test_matching_a_hostile_template_takes_linear_time(template: str, channel: str) -> None:
    selector = Selector(template)
    started = time.perf_counter()
    assert not selector.matches(channel)
    # Linear: about 10,000 characters in well under a second even on a busy machine.
    assert time.perf_counter() - started < 2.0


def test_a_template_with_many_variables_compiles_to_a_small_automaton() -> None:
    names = ",".join(f"v{i}" for i in range(200))
    started = time.perf_counter()
    selector = Selector("{?" + names + "}")
    assert selector.matches("?v0=1&v199=2")
    assert not selector.matches("?v199=2&v0=1")
    assert time.perf_counter() - started < 2.0


# ---------------------------------------------------------------- Selectors


def test_selectors_sorts_exact_names_from_patterns() -> None:
    selectors = Selectors(["/a", "/b/{id}", "*", "/c", Selector("/d/{x}")])
    assert selectors.names == frozenset({"/a", "/c"})
    assert [s.text for s in selectors.patterns] == ["/b/{id}", "*", "/d/{x}"]
    assert selectors.everything
    assert not selectors.exact_only
    assert [s.text for s in selectors] == ["/a", "/b/{id}", "*", "/c", "/d/{x}"]
    assert len(selectors) == 5
    assert bool(selectors)


def test_selectors_of_exact_names_only() -> None:
    selectors = Selectors(["/a", "/b"])
    assert selectors.exact_only
    assert not selectors.everything
    assert selectors.patterns == ()
    assert selectors.matches("/a")
    assert selectors.matches("/b")
    assert not selectors.matches("/c")
    assert not selectors.matches("/a/")


def test_selectors_match_when_any_selector_matches() -> None:
    selectors = Selectors(["/news", "/rooms/{id}", "/users/{u}/inbox"])
    assert selectors.matches("/news")
    assert selectors.matches("/rooms/42")
    assert selectors.matches("/users/ann/inbox")
    assert not selectors.matches("/rooms/4/2")
    assert not selectors.matches("/users/ann/outbox")
    # Asked again: the remembered answer is the same.
    assert selectors.matches("/rooms/42")
    assert not selectors.matches("/rooms/4/2")


def test_star_in_selectors_matches_everything() -> None:
    selectors = Selectors(["*"])
    assert selectors.everything
    assert selectors.matches("/anything")
    assert selectors.matches("")


def test_empty_selectors_match_nothing() -> None:
    selectors = Selectors()
    assert not selectors
    assert len(selectors) == 0
    assert selectors.exact_only
    assert not selectors.everything
    assert selectors.names == frozenset()
    assert not selectors.matches("/a")
    assert not selectors.matches("")
    assert Selectors([]) == selectors


def test_selectors_count_duplicates_once() -> None:
    selectors = Selectors(["/a", "/a", Selector("/a"), "/b/{x}", "/b/{x}"])
    assert len(selectors) == 2
    assert [s.text for s in selectors] == ["/a", "/b/{x}"]


def test_selectors_are_values() -> None:
    assert Selectors(["/a", "/b/{x}"]) == Selectors(["/b/{x}", "/a", "/a"])
    assert hash(Selectors(["/a", "/b/{x}"])) == hash(Selectors(["/b/{x}", "/a"]))
    assert Selectors(["/a"]) != Selectors(["/b"])
    assert Selectors(["/a"]) != ["/a"]
    assert len({Selectors(["/a"]), Selectors(["/a"]), Selectors(["*"])}) == 2
    assert repr(Selectors(["/a", "*"])) == "Selectors(['/a', '*'])"


def test_selectors_refuse_a_single_str() -> None:
    with pytest.raises(TypeError, match="not a str"):
        Selectors("/a")


def test_selectors_raise_for_an_invalid_selector() -> None:
    with pytest.raises(InvalidSelector, match="unclosed"):
        Selectors(["/a", "/b/{x"])


def test_selectors_hold_at_most_max_selectors() -> None:
    assert MAX_SELECTORS == 64
    full = Selectors([f"/c/{i}" for i in range(MAX_SELECTORS)])
    assert len(full) == MAX_SELECTORS
    # Duplicates do not count towards the limit.
    assert len(Selectors([f"/c/{i}" for i in range(MAX_SELECTORS)] * 3)) == MAX_SELECTORS
    with pytest.raises(InvalidSelector, match="more than 64 selectors"):
        Selectors([f"/c/{i}" for i in range(MAX_SELECTORS + 1)])


def test_selectors_stop_reading_a_hostile_iterable_at_the_limit() -> None:
    def endless() -> Iterator[str]:
        count = 0
        while True:
            yield f"/c/{count}"
            count += 1

    with pytest.raises(InvalidSelector, match="more than 64"):
        Selectors(endless())


def test_the_match_cache_of_selectors_is_bounded() -> None:
    selectors = Selectors(["/rooms/{id}"])
    for number in range(MATCH_CACHE_SIZE * 2 + 10):
        assert selectors.matches(f"/rooms/{number}")
        assert not selectors.matches(f"/other/{number}")
    # The cache is private; its bound is the point of this test.
    assert 0 < len(selectors._cache) <= MATCH_CACHE_SIZE
    assert selectors.matches("/rooms/1")


# ---------------------------------------------------------------- properties

SEGMENT_ALPHABET = st.characters(
    exclude_categories=("Cs", "Cc"), exclude_characters=RESERVED + "{}"
)
segments = st.text(SEGMENT_ALPHABET, max_size=12)
literals = st.text(
    st.characters(exclude_categories=("Cs", "Cc"), exclude_characters="{}"), max_size=6
)


@PROPERTY_SETTINGS
@given(data=st.data(), count=st.integers(min_value=1, max_value=5))
def test_a_simple_template_matches_any_expansion_with_segment_values(
    data: st.DataObject, count: int
) -> None:
    texts = data.draw(st.lists(literals, min_size=count + 1, max_size=count + 1))
    values = data.draw(st.lists(segments, min_size=count, max_size=count))
    template = texts[0] + "".join(f"{{v{i}}}{texts[i + 1]}" for i in range(count))
    channel = texts[0] + "".join(values[i] + texts[i + 1] for i in range(count))
    assert Selector(template).matches(channel), (template, channel)


@PROPERTY_SETTINGS
@given(value=st.tuples(segments, st.sampled_from(RESERVED), segments).map("".join))
def test_a_simple_variable_never_matches_a_reserved_character(value: str) -> None:
    assert not Selector("/rooms/{id}/feed").matches(f"/rooms/{value}/feed")
    assert Selector("/rooms/{+id}/feed").matches(f"/rooms/{value}/feed")


# A reference expander: RFC 6570 section 3.2.1 and appendix A, percent-encoding as it says.

Value: TypeAlias = "str | list[str] | list[tuple[str, str]] | None"

UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
PCT = re.compile(r"%[0-9A-Fa-f]{2}")
OPERATORS = {
    "": ("", ",", False, "", False),
    "+": ("", ",", False, "", True),
    "#": ("#", ",", False, "", True),
    ".": (".", ".", False, "", False),
    "/": ("/", "/", False, "", False),
    ";": (";", ";", True, "", False),
    "?": ("?", "&", True, "=", False),
    "&": ("&", "&", True, "=", False),
}


def encode(value: str, allow_reserved: bool) -> str:
    out: list[str] = []
    index = 0
    while index < len(value):
        char = value[index]
        if allow_reserved and PCT.match(value, index):
            out.append(value[index : index + 3])
            index += 3
            continue
        if char in UNRESERVED or (allow_reserved and char in RESERVED):
            out.append(char)
        else:
            out.append("".join(f"%{byte:02X}" for byte in char.encode()))
        index += 1
    return "".join(out)


def expand(
    operator: str, specs: list[tuple[str, int | None, bool]], values: dict[str, Value]
) -> str:
    first, sep, named, ifemp, allow = OPERATORS[operator]
    items: list[str] = []
    for name, prefix, _explode in specs:
        value = values[name]
        if value is None or value == []:
            continue
        if isinstance(value, str):
            text = encode(value[:prefix] if prefix else value, allow)
            items.append(name + (ifemp if not text else "=" + text) if named else text)
            continue
        parts: list[str] = []
        for element in value:
            key, text = (name, element) if isinstance(element, str) else element
            text = encode(text, allow)
            if named:
                parts.append(encode(key, allow) + (ifemp if not text else "=" + text))
            elif isinstance(element, str):
                parts.append(text)
            else:
                parts.append(f"{encode(key, allow)}={text}")
        items.append(sep.join(parts))
    return first + sep.join(items) if items else ""


characters = st.characters(exclude_categories=["Cs"])
any_text = st.text(characters, max_size=8)
keys = st.text(characters, min_size=1, max_size=5)


@st.composite
def expressions(
    draw: st.DrawFn, first_name: int
) -> tuple[str, str, list[tuple[str, int | None, bool]], dict[str, Value]]:
    operator = draw(st.sampled_from(sorted(OPERATORS)))
    count = draw(st.integers(min_value=1, max_value=4))
    specs: list[tuple[str, int | None, bool]] = []
    values: dict[str, Value] = {}
    for number in range(first_name, first_name + count):
        name = f"v{number}"
        modifier = draw(st.sampled_from(["", "prefix", "explode"]))
        if modifier == "explode":
            specs.append((name, None, True))
            values[name] = draw(
                st.none()
                | st.lists(any_text, max_size=3)
                | st.dictionaries(keys, any_text, max_size=3).map(lambda d: list(d.items()))
            )
        else:
            prefix = draw(st.integers(min_value=1, max_value=6)) if modifier else None
            specs.append((name, prefix, False))
            values[name] = draw(st.none() | any_text)
    spelled = ",".join(
        name + ("*" if explode else f":{prefix}" if prefix else "")
        for name, prefix, explode in specs
    )
    return "{" + operator + spelled + "}", operator, specs, values


@PROPERTY_SETTINGS
@given(data=st.data(), count=st.integers(min_value=1, max_value=3))
def test_a_template_matches_every_rfc_6570_expansion_of_it(data: st.DataObject, count: int) -> None:
    template = data.draw(literals)
    channel = template
    next_name = 0
    for _ in range(count):
        spelled, operator, specs, values = data.draw(expressions(next_name))
        next_name += len(specs)
        literal = data.draw(literals)
        template += spelled + literal
        channel += expand(operator, specs, values) + literal
    assert Selector(template).matches(channel), (template, channel)


def test_the_reference_expander_reproduces_the_rfc_examples() -> None:
    values: dict[str, Value] = {
        "var": "value",
        "hello": "Hello World!",
        "path": "/foo/bar",
        "list": ["red", "green", "blue"],
        "keys": [("semi", ";"), ("dot", "."), ("comma", ",")],
        "empty": "",
        "undef": None,
    }
    assert expand("", [("hello", None, False)], values) == "Hello%20World%21"
    assert expand("+", [("hello", None, False)], values) == "Hello%20World!"
    assert expand("/", [("list", None, True), ("path", 4, False)], values) == (
        "/red/green/blue/%2Ffoo"
    )
    assert expand(";", [("keys", None, True)], values) == ";semi=%3B;dot=.;comma=%2C"
    assert expand("?", [("var", 3, False), ("empty", None, False)], values) == "?var=val&empty="
    assert expand(";", [("empty", None, False), ("undef", None, False)], values) == ";empty"
    assert expand("#", [("undef", None, False)], values) == ""
