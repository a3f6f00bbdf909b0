"""Reading spec files: YAML 1.2's core schema, and hostile files refused early.

A hostile file of up to MAX_BYTES must cost what MAX_VALUES and MAX_DEPTH
allow, not what its size does: reading stops at the limit, and the message
names the cause (values written out, or aliases expanding).
"""

from __future__ import annotations

import math
import tracemalloc
from typing import Any

import pytest

from l2compile import source
from l2compile.errors import SpecError
from l2compile.source import (
    MAX_BYTES,
    MAX_VALUES,
    PYTHON_PARSER_CHARS,
    Document,
    core_tag,
    parse_yaml,
    plain_value,
)
from l2compile.spec import Spec

from .conftest import SPECS

pytestmark = pytest.mark.unit

FIELDS = tuple(Spec.model_fields)


# --- YAML 1.2's core schema ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        # YAML 1.1's booleans are text in 1.2.
        ("yes", "yes"),
        ("no", "no"),
        ("on", "on"),
        ("off", "off"),
        ("y", "y"),
        ("n", "n"),
        ("Yes", "Yes"),
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("false", False),
        ("False", False),
        ("FALSE", False),
        ("tRUE", "tRUE"),
        # Integers: decimal (leading zeros are still decimal), 0o and 0x.
        ("10", 10),
        ("-10", -10),
        ("+10", 10),
        ("010", 10),
        ("0o17", 15),
        ("0x1F", 31),
        ("0x1f", 31),
        ("0o8", "0o8"),
        ("-0x1F", "-0x1F"),
        ("0b11", "0b11"),
        ("1_000", "1_000"),
        ("1:20", "1:20"),
        # Floats.
        ("1e-3", 0.001),
        ("1E3", 1000.0),
        ("1.5", 1.5),
        ("1.", 1.0),
        (".5", 0.5),
        ("-.5e-1", -0.05),
        ("+1.0", 1.0),
        (".inf", math.inf),
        ("-.Inf", -math.inf),
        ("+.INF", math.inf),
        ("1_000.5", "1_000.5"),
        ("190:20:30.15", "190:20:30.15"),
        ("inf", "inf"),
        ("nan", "nan"),
        # Null.
        ("null", None),
        ("Null", None),
        ("NULL", None),
        ("~", None),
        ("", None),
        ("nULL", "nULL"),
        # Text, including what 1.1 reads as a date.
        ("2024-01-01", "2024-01-01"),
        ("relu", "relu"),
        ("<<", "<<"),
    ],
)
def test_plain_scalars_are_read_by_the_yaml_1_2_core_schema(
    text: str, value: Any
) -> None:
    found = plain_value(text)
    assert type(found) is type(value)
    assert found == value


@pytest.mark.parametrize("text", [".nan", ".NaN", ".NAN"])
def test_nan_in_its_three_spellings(text: str) -> None:
    assert core_tag(text) == "tag:yaml.org,2002:float"
    assert math.isnan(plain_value(text))


def test_quoted_scalars_are_always_text() -> None:
    doc = parse_yaml("a: '0o17'\nb: \"true\"\nc: 'null'\nd: |\n  12\n", "spec.yaml")
    assert isinstance(doc, Document)
    assert doc.data == {"a": "0o17", "b": "true", "c": "null", "d": "12\n"}


def test_explicit_core_tags_are_read_by_their_form() -> None:
    text = "a: !!str 12\nb: !!float 1\nc: !!int '0x10'\nd: ! 12\ne: !!null ''\n"
    doc = parse_yaml(text, "spec.yaml")
    assert isinstance(doc, Document)
    assert doc.data == {"a": "12", "b": 1.0, "c": 16, "d": "12", "e": None}
    assert type(doc.data["b"]) is float


def test_a_value_that_does_not_match_its_tag_is_located() -> None:
    doc = parse_yaml("a: !!int abc\nb: !!bool yes\n", "spec.yaml")
    assert isinstance(doc, Document)
    assert [str(e) for e in doc.problems] == [
        "spec.yaml:1:4: error: a: 'abc' is not a valid '!!int' value",
        "spec.yaml:2:4: error: b: 'yes' is not a valid '!!bool' value",
    ]


def test_an_integer_too_long_to_read_is_located() -> None:
    doc = parse_yaml("a: " + "9" * 5000 + "\n", "spec.yaml")
    assert isinstance(doc, Document)
    assert [str(e) for e in doc.problems] == [
        "spec.yaml:1:4: error: a: the integer has 5,000 digits; at most 4,300 are read"
    ]


def test_yaml_1_1_words_are_text_keys_too() -> None:
    doc = parse_yaml("yes: 1\non: 2\n", "spec.yaml")
    assert isinstance(doc, Document)
    assert doc.data == {"yes": 1, "on": 2}


# --- anchors and aliases ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "a: &x [1, *x]\n",
            "spec.yaml:1:11: error: invalid YAML: the alias 'x' is inside the value "
            "it names",
        ),
        (
            "a: &x 1\nb: &x 2\n",
            "spec.yaml:2:4: error: invalid YAML: the anchor 'x' is defined twice "
            "(first at line 1, column 4); give each anchor its own name",
        ),
        ("a: *x\n", "spec.yaml:1:4: error: invalid YAML: found undefined alias 'x'"),
        (
            "a: &d " + "[" * 30 + "1" + "]" * 30 + "\nb: [[*d]]\n",
            "spec.yaml:2:6: error: b: values are nested more than 32 deep",
        ),
    ],
)
def test_alias_mistakes_are_located(text: str, message: str) -> None:
    assert [str(e) for e in parse_yaml(text, "spec.yaml")] == [message]  # type: ignore[union-attr]


def test_an_alias_as_deep_as_allowed_is_read() -> None:
    text = "a: &d " + "[" * 30 + "1" + "]" * 30 + "\nb: [*d]\n"
    assert isinstance(parse_yaml(text, "spec.yaml"), Document)


def test_a_few_aliases_are_fine() -> None:
    doc = parse_yaml("a: &x {units: 3}\nb: [*x, *x]\n", "spec.yaml")
    assert isinstance(doc, Document)
    assert doc.data == {"a": {"units": 3}, "b": [{"units": 3}, {"units": 3}]}
    assert doc.position(("b", 1, "units")) == source.Position(1, 15)


# --- hostile files: refused early, with the cause -----------------------------


def filled(head: str, unit: str, tail: str) -> str:
    """`head`, then `unit` as many times as fit in MAX_BYTES, then `tail`."""
    return head + unit * ((MAX_BYTES - len(head) - len(tail)) // len(unit)) + tail


def numbered(head: str, line: str) -> str:
    """`head`, then `line` formatted with 0, 1, 2, ... while it fits."""
    parts, size, i = [head], len(head), 0
    while size + len(line) + 8 < MAX_BYTES:
        parts.append(line.format(i))
        size += len(parts[-1])
        i += 1
    return "".join(parts)


MANY = f"the spec has more than {MAX_VALUES:,} values"
BOMB = (
    f"the spec expands to more than {MAX_VALUES:,} values; YAML anchors and aliases "
    "are nested too deeply (an alias bomb?)"
)

HOSTILE = {
    "ones under an unknown field, one line": (
        filled("junk: [", "1, ", "1]\n"),
        f"spec.yaml:1:1: error: junk: unknown field 'junk'; {MANY}, most of them here",
    ),
    "ones under an unknown field, a block list": (
        filled("junk:\n", "- 1\n", ""),
        f"spec.yaml:1:1: error: junk: unknown field 'junk'; {MANY}, most of them here",
    ),
    "ones under a misspelled field": (
        filled("layer: [", "1, ", "1]\n"),
        f"spec.yaml:1:1: error: layer: unknown field 'layer'; {MANY}, most of them "
        "here; did you mean 'layers'?",
    ),
    "ones under a known field": (
        filled("name: a\nlayers: [", "1, ", "1]\n"),
        f"spec.yaml:2:1: error: layers: {MANY}, most of them here; a spec needs far "
        "fewer",
    ),
    "many small mappings": (
        filled("layers:\n", "- {type: flatten}\n", ""),
        f"spec.yaml:1:1: error: layers: {MANY}, most of them here; a spec needs far "
        "fewer",
    ),
    "a long flow mapping of distinct keys": (
        numbered("junk: {", "k{}: 1, ") + "}\n",
        f"spec.yaml:1:1: error: junk: unknown field 'junk'; {MANY}, most of them here",
    ),
    "many top-level fields, each with an anchor": (
        numbered("", "k{0}: &a{0} 1\n"),
        f"spec.yaml:10000:8: error: {MANY}; a spec needs far fewer",
    ),
    "many aliases of one value": (
        filled("a: &a 1\nb: [", "*a, ", "*a]\n"),
        f"spec.yaml:2:1: error: b: {BOMB}",
    ),
    "an alias bomb": (
        # "Billion laughs": 9 levels of 9 aliases each, 9**9 values.
        "a0: &a0 [lol]\n"
        + "".join(
            f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]\n"
            for n in range(1, 10)
        ),
        f"spec.yaml:5:1: error: a4: {BOMB}",
    ),
    "a deep block mapping": (
        "".join(" " * i + "a:\n" for i in range(1400)),
        "spec.yaml:34:34: error: a: values are nested more than 32 deep",
    ),
}


class CountingEvents:
    """The parser, counting the events read from it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.read = 0

    def check_event(self, *choices: Any) -> bool:
        return bool(self.inner.check_event(*choices))

    def get_event(self) -> Any:
        self.read += 1
        return self.inner.get_event()


def read_counting(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Document | list[SpecError], int, int]:
    """What parse_yaml answers, the events it read and its peak memory."""
    made: list[CountingEvents] = []
    parser = source._parser

    def counting(text: str) -> CountingEvents:
        made.append(CountingEvents(parser(text)))
        return made[-1]

    monkeypatch.setattr(source, "_parser", counting)
    tracemalloc.start()
    try:
        result = parse_yaml(text, "spec.yaml", FIELDS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, made[0].read, peak


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_hostile_files_stop_at_the_limit_with_their_cause(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    text, message = HOSTILE[case]
    assert len(text.encode()) <= MAX_BYTES
    result, events, peak = read_counting(text, monkeypatch)
    assert [str(e) for e in result] == [message]  # type: ignore[union-attr]
    # A few events per value at most, however long the file.
    assert events <= 3 * MAX_VALUES
    assert peak < 24 * 2**20


def test_deep_flow_nesting_stops_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    text = filled("name: ", "[", "")
    result, events, peak = read_counting(text, monkeypatch)
    assert isinstance(result, list)
    (error,) = result
    # libyaml (files over PYTHON_PARSER_CHARS) stops at its own bound of 1,000
    # levels while looking ahead, PyYAML at the 33rd level.
    assert (error.path, error.message, error.line) == (
        ("name",),
        "values are nested more than 32 deep",
        1,
    )
    assert events <= 50
    assert peak < 24 * 2**20


@pytest.mark.parametrize(
    "text",
    [
        filled("name: a\n", "# a comment of a line\n", ""),
        filled("name: a\ndescription: ", "x", "\n"),
        filled('name: a\ndescription: "a', "\n b", '"\n'),
        filled("name: a\n", "\n", ""),
    ],
    ids=["comments", "a long string", "a folded string", "blank lines"],
)
def test_long_files_without_values_are_read(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, events, peak = read_counting(text, monkeypatch)
    assert isinstance(result, Document)
    assert result.data["name"] == "a"
    assert events <= 12
    assert peak < 24 * 2**20


def test_too_many_values_in_a_list_document_say_what_a_spec_is() -> None:
    text = "- 1\n" * (MAX_VALUES + 1)
    assert [str(e) for e in parse_yaml(text, "spec.yaml")] == [  # type: ignore[union-attr]
        "spec.yaml:1:1: error: a spec must be a mapping of fields "
        "(name:, input:, layers:, ...)"
    ]


def test_values_just_under_the_limit_are_read() -> None:
    # The root mapping, the list and its values: MAX_VALUES in all.
    text = "junk: [" + ", ".join(["1"] * (MAX_VALUES - 2)) + "]\n"
    doc = parse_yaml(text, "spec.yaml", FIELDS)
    assert isinstance(doc, Document)
    assert len(doc.data["junk"]) == MAX_VALUES - 2
    over = parse_yaml(text.replace("[", "[1, "), "spec.yaml", FIELDS)
    assert isinstance(over, list)


# --- the two parsers agree ----------------------------------------------------


def test_long_files_are_placed_as_short_ones_are() -> None:
    """Past PYTHON_PARSER_CHARS libyaml parses; positions stay the same."""
    text = (SPECS / "mnist.yaml").read_text(encoding="utf-8")
    text = text.replace("l2: 0.01", "l2: 0.01\nl2: 0.02")
    padded = text + "# padding\n" * (PYTHON_PARSER_CHARS // 10 + 1)
    short, long = parse_yaml(text, "spec.yaml"), parse_yaml(padded, "spec.yaml")
    assert isinstance(short, Document)
    assert isinstance(long, Document)
    assert len(padded) > PYTHON_PARSER_CHARS
    assert (long.data, long.values, long.keys) == (short.data, short.values, short.keys)
    assert long.problems == short.problems
    assert len(short.problems) == 1


def test_long_files_locate_syntax_errors_as_short_ones_do() -> None:
    text = "name: a\nlayers: [1, 2\ntrain: 3\n"
    padded = "# padding\n" * (PYTHON_PARSER_CHARS // 10 + 1) + text
    lines = PYTHON_PARSER_CHARS // 10 + 1
    short_errors, long_errors = parse_yaml(text, "s"), parse_yaml(padded, "s")
    assert isinstance(short_errors, list)
    assert isinstance(long_errors, list)
    (short,), (long,) = short_errors, long_errors
    assert short.line is not None
    assert str(short) == (
        "s:3:6: error: invalid YAML: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence at line 2, column 9)"
    )
    assert (long.line, long.column) == (short.line + lines, short.column)
