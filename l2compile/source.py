"""Reading spec files: safe YAML 1.2, with the line and column of every value.

PyYAML reads YAML 1.1 (`yes` is true, `010` is 8), forgets where each value
came from and lets a duplicate key silently overwrite the first one. Here the
parser's events are composed into YAML nodes by hand, then converted to data:

- scalars are typed by YAML 1.2's core schema, as yaml-language-server and
  JSON Schema read them (`yes` and `1_000` are text, `0o17` is 15);
- values and nesting are counted as the events arrive, an alias counting as
  many values as its anchored value holds, and reading stops at the limits,
  so that a hostile file costs what the limits allow, not what its size does;
- every field path gets a position, and what a spec never needs is refused:
  duplicate keys, merge keys, non-string keys, Python and other tags.
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from yaml.composer import ComposerError
from yaml.events import (
    AliasEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

from l2compile.errors import FieldPath, SpecError, closest
from l2compile.files import NotAFile, TooLarge, read_bounded, unreadable

#: A spec is a short file; these bounds keep a hostile one from using much
#: time or memory.
MAX_BYTES = 1 << 20
MAX_VALUES = 10_000
MAX_DEPTH = 32

#: Texts up to this size are parsed by PyYAML's Python parser, whose error
#: messages the tests pin; longer ones by libyaml's, where PyYAML has it:
#: 1 MiB of folded text takes the Python parser 0.8 s, libyaml 5 ms. No spec
#: needs 64 KiB, so only hostile files see libyaml's wording.
PYTHON_PARSER_CHARS = 64 * 1024

_TAG = "tag:yaml.org,2002:"
_MAP_TAG = _TAG + "map"
_SEQ_TAG = _TAG + "seq"
_STR_TAG = _TAG + "str"
_MERGE_TAG = _TAG + "merge"

#: YAML 1.2's core schema (10.3.2): the forms of a plain scalar that are not
#: text, and the tag each one gets.
_CORE_FORMS = (
    (_TAG + "null", re.compile(r"null|Null|NULL|~|")),
    (_TAG + "bool", re.compile(r"true|True|TRUE|false|False|FALSE")),
    (_TAG + "int", re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")),
    (
        _TAG + "float",
        re.compile(
            r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
        ),
    ),
)
_FORMS = dict(_CORE_FORMS)
#: Reading a decimal integer takes time quadratic in its digits; Python's own
#: bound (3.11, and later 3.10 releases) is this.
_MAX_DIGITS = 4300


def core_tag(text: str) -> str:
    """The tag YAML 1.2's core schema gives a plain (unquoted) scalar."""
    for tag, form in _CORE_FORMS:
        if form.fullmatch(text):
            return tag
    return _STR_TAG


class _BadScalar(ValueError):
    """A scalar that cannot be read as its tag says."""


def construct(tag: str, text: str) -> Any:
    """The value of a scalar with a core-schema tag; `_BadScalar` when the
    text is not of that tag's form."""
    if tag == _STR_TAG:
        return text
    form = _FORMS.get(tag)
    if form is None or not form.fullmatch(text):
        raise _BadScalar(
            f"{_short(text)} is not a valid '!!{tag.removeprefix(_TAG)}' value"
        )
    kind = tag.removeprefix(_TAG)
    if kind == "null":
        return None
    if kind == "bool":
        return text.lower() == "true"
    if kind == "int":
        if text.startswith(("0o", "0x")):
            return int(text[2:], 8 if text[1] == "o" else 16)
        if len(text) > _MAX_DIGITS:
            raise _BadScalar(
                f"the integer has {len(text):,} digits; at most {_MAX_DIGITS:,} "
                "are read"
            )
        return int(text)
    lower = text.lower()
    if lower.endswith(".inf"):
        return -math.inf if text.startswith("-") else math.inf
    if lower == ".nan":
        return math.nan
    value = float(text)
    if math.isinf(value):  # 1e400: beyond a float, not the infinity .inf writes
        raise _BadScalar(
            f"{_short(text)} is too large: a number's size is at most "
            f"{sys.float_info.max:.3g}"
        )
    return value


def plain_value(text: str) -> Any:
    """What a plain (unquoted) scalar means in YAML 1.2's core schema."""
    return construct(core_tag(text), text)


def _short(text: str) -> str:
    if len(text) <= 40:
        return repr(text)
    return f"{text[:30]!r}... ({len(text):,} characters)"


@dataclass(frozen=True)
class Position:
    """A 1-based line and column in a spec file."""

    line: int
    column: int


@dataclass(frozen=True)
class Document:
    """A spec file's data, with where each value and key was written."""

    file: str
    sha256: str
    #: The file's text, read once: the report shows it, and nothing reads
    #: the file again.
    text: str
    data: Any
    values: dict[FieldPath, Position] = field(default_factory=dict)
    keys: dict[FieldPath, Position] = field(default_factory=dict)
    #: Problems that still leave data to validate (a duplicate key keeps its
    #: first value; an unsupported tag becomes null), so that all the errors
    #: of a file are reported together.
    problems: tuple[SpecError, ...] = ()
    #: The command line's `--set FIELD=VALUE` applied to `data` (overrides.py).
    overrides: tuple[str, ...] = ()

    def position(self, path: FieldPath, *, key: bool = False) -> Position | None:
        """Where `path` was written; the nearest written ancestor otherwise."""
        if key and path in self.keys:
            return self.keys[path]
        for end in range(len(path), -1, -1):
            found = self.values.get(path[:end])
            if found is not None:
                return found
        return None

    def error(
        self,
        path: FieldPath,
        message: str,
        *,
        key: bool = False,
        suggestion: str | None = None,
        expected: tuple[str, ...] = (),
    ) -> SpecError:
        """An error at `path`, placed at its value (or its key)."""
        pos = self.position(path, key=key)
        return SpecError(
            self.file,
            pos.line if pos else None,
            pos.column if pos else None,
            path,
            message,
            suggestion,
            expected,
        )


def _at(mark: Any) -> Position:
    return Position(mark.line + 1, mark.column + 1)


def _error_at(file: str, node: yaml.Node, path: FieldPath, message: str) -> SpecError:
    pos = _at(node.start_mark)
    return SpecError(file, pos.line, pos.column, path, message)


# --- composing nodes from events, within the limits ---------------------------


class _Events(Protocol):
    def check_event(self, *choices: type[Event]) -> bool: ...
    def get_event(self) -> Any: ...


class _PythonParser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
    """PyYAML's own parser (events only: no resolver, no constructor)."""

    def __init__(self, text: str) -> None:
        yaml.reader.Reader.__init__(self, text)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)


def _parser(text: str) -> _Events:
    if len(text) > PYTHON_PARSER_CHARS and yaml.__with_libyaml__:
        from yaml._yaml import CParser

        return CParser(text)
    return _PythonParser(text)


class _Stop(Exception):
    """Reading stopped at a limit; `error` says which and where."""

    def __init__(self, error: SpecError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(frozen=True)
class _Anchored:
    node: yaml.Node
    size: int  # the values it counts for wherever an alias repeats it
    height: int  # how many levels deep its values go


class _Composer:
    """Composes the one document of a stream into nodes, as PyYAML's composer
    does, but counting values and depth as the events arrive."""

    def __init__(self, events: _Events, file: str, fields: Collection[str]) -> None:
        self.events = events
        self.file = file
        self.fields = fields
        self.count = 0
        self.repeated = 0  # of `count`, the values that aliases repeat
        self.anchors: dict[str, _Anchored] = {}
        self.open: dict[str, Any] = {}  # anchors whose value is being read
        self.mapping = False  # the document is a mapping
        self.root: Any = None  # where the document starts
        self.top: str | int | None = None  # the top-level field being read
        self.per_field: dict[str | int | None, int] = {}
        self.field_marks: dict[str | int, Any] = {}

    def document(self) -> yaml.Node | None:
        """The document's root node (None for an empty stream)."""
        self.events.get_event()  # the stream's start
        root = None
        if not self.events.check_event(StreamEndEvent):
            self.events.get_event()  # the document's start
            root = self.node(0)[0]
            self.events.get_event()  # the document's end
        if not self.events.check_event(StreamEndEvent):
            event = self.events.get_event()
            raise ComposerError(
                "expected a single document in the stream",
                root.start_mark if root is not None else None,
                "but found another document",
                event.start_mark,
            )
        return root

    def node(self, depth: int, *, key: bool = False) -> tuple[yaml.Node, int, int]:
        """The next node, how many values it counts for, and its height."""
        event: Any = self.events.get_event()
        if isinstance(event, AliasEvent):
            return self.alias(event, depth, key=key)
        mark, event_end = event.start_mark, event.end_mark
        if depth == 0:
            self.root = mark
            self.mapping = isinstance(event, MappingStartEvent)
        # A scalar key's depth is its value's, which is checked next.
        if depth > MAX_DEPTH and not (key and isinstance(event, ScalarEvent)):
            raise _Stop(self.too_deep(mark))
        anchor = event.anchor
        if anchor is not None:
            first = self.open.get(anchor) or (
                self.anchors[anchor].node.start_mark if anchor in self.anchors else None
            )
            if first is not None:
                raise ComposerError(
                    None,
                    None,
                    f"the anchor {anchor!r} is defined twice (first at line "
                    f"{first.line + 1}, column {first.column + 1}); "
                    "give each anchor its own name",
                    mark,
                )
            self.open[anchor] = mark
        node: yaml.Node
        if isinstance(event, ScalarEvent):
            size = 0 if key else 1
            self.add(size, mark)
            node = yaml.ScalarNode(
                self.scalar_tag(event, key=key),
                event.value,
                mark,
                event_end,
                event.style,
            )
            height = 0
        else:
            self.add(1, mark)
            tag = event.tag if event.tag not in (None, "!") else None
            if isinstance(event, SequenceStartEvent):
                node, size, height = self.sequence(event, tag or _SEQ_TAG, depth)
            else:
                node, size, height = self.mapping_node(event, tag or _MAP_TAG, depth)
        if anchor is not None:
            del self.open[anchor]
            self.anchors[anchor] = _Anchored(node, max(size, 1), height)
        return node, size, height

    def sequence(
        self, event: Any, tag: str, depth: int
    ) -> tuple[yaml.SequenceNode, int, int]:
        items: list[yaml.Node] = []
        size, height = 1, 0
        while not self.events.check_event(SequenceEndEvent):
            if depth == 0:
                self.top = len(items)
            item, item_size, item_height = self.node(depth + 1)
            items.append(item)
            size += item_size
            height = max(height, item_height + 1)
        end = self.events.get_event()
        node = yaml.SequenceNode(
            tag, items, event.start_mark, end.end_mark, event.flow_style
        )
        return node, size, height

    def mapping_node(
        self, event: Any, tag: str, depth: int
    ) -> tuple[yaml.MappingNode, int, int]:
        pairs: list[tuple[yaml.Node, yaml.Node]] = []
        size, height = 1, 0
        while not self.events.check_event(MappingEndEvent):
            if depth == 0:
                self.top = None
            key, key_size, key_height = self.node(depth + 1, key=True)
            if depth == 0:
                self.top = self.field_name(key)
            value, value_size, value_height = self.node(depth + 1)
            pairs.append((key, value))
            size += key_size + value_size
            height = max(height, key_height + 1, value_height + 1)
        end = self.events.get_event()
        node = yaml.MappingNode(
            tag, pairs, event.start_mark, end.end_mark, event.flow_style
        )
        return node, size, height

    def alias(self, event: Any, depth: int, *, key: bool) -> tuple[yaml.Node, int, int]:
        name = event.anchor
        if name in self.open:
            raise ComposerError(
                None,
                None,
                f"the alias {name!r} is inside the value it names",
                event.start_mark,
            )
        anchored = self.anchors.get(name)
        if anchored is None:
            raise ComposerError(
                None, None, f"found undefined alias {name!r}", event.start_mark
            )
        scalar_key = key and isinstance(anchored.node, yaml.ScalarNode)
        if depth + anchored.height > MAX_DEPTH and not scalar_key:
            raise _Stop(self.too_deep(event.start_mark))
        size = 0 if scalar_key else anchored.size
        self.add(size, event.start_mark, repeated=True)
        return anchored.node, size, anchored.height

    def scalar_tag(self, event: Any, *, key: bool) -> str:
        plain = event.implicit[0] and not event.style
        if event.tag is None and plain:
            if key and event.value == "<<":
                return _MERGE_TAG  # refused later with its own message
            return core_tag(event.value)
        if event.tag in (None, "!"):
            return _STR_TAG
        return str(event.tag)

    def field_name(self, key: yaml.Node) -> str | None:
        if isinstance(key, yaml.ScalarNode) and key.tag == _STR_TAG:
            self.field_marks.setdefault(key.value, key.start_mark)
            return str(key.value)
        return None

    def add(self, values: int, mark: Any, *, repeated: bool = False) -> None:
        self.count += values
        if repeated:
            self.repeated += values
        self.per_field[self.top] = self.per_field.get(self.top, 0) + values
        if self.count > MAX_VALUES:
            raise _Stop(self.too_many(mark))

    def too_deep(self, mark: Any) -> SpecError:
        pos = _at(mark)
        path: FieldPath = () if self.top is None else (self.top,)
        message = f"values are nested more than {MAX_DEPTH} deep"
        return SpecError(self.file, pos.line, pos.column, path, message)

    def too_many(self, mark: Any) -> SpecError:
        if not self.mapping:
            pos = _at(self.root)
            return SpecError(self.file, pos.line, pos.column, (), _NOT_A_MAPPING)
        # Blame the field holding most of the values, at its key, if one does.
        most = max(self.per_field, key=lambda name: self.per_field[name])
        if self.per_field[most] * 2 <= self.count:
            most = None
        pos = _at(self.field_marks[most] if most is not None else mark)
        path: FieldPath = () if most is None else (most,)
        if self.repeated * 2 > self.count:
            message = (
                f"the spec expands to more than {MAX_VALUES:,} values; YAML "
                "anchors and aliases are nested too deeply (an alias bomb?)"
            )
            return SpecError(self.file, pos.line, pos.column, path, message)
        many = f"the spec has more than {MAX_VALUES:,} values"
        if isinstance(most, str) and self.fields and most not in self.fields:
            return SpecError(
                self.file,
                pos.line,
                pos.column,
                path,
                f"unknown field {most!r}; {many}, most of them here",
                closest(most, self.fields),
            )
        where = ", most of them here" if path else ""
        message = f"{many}{where}; a spec needs far fewer"
        return SpecError(self.file, pos.line, pos.column, path, message)


_NOT_A_MAPPING = "a spec must be a mapping of fields (name:, input:, layers:, ...)"


# --- from nodes to data, with positions ---------------------------------------


class _Converter:
    def __init__(self, file: str) -> None:
        self.file = file
        self.errors: list[SpecError] = []
        self.values: dict[FieldPath, Position] = {}
        self.keys: dict[FieldPath, Position] = {}

    def convert(self, node: yaml.Node, path: FieldPath) -> Any:
        # The composer bounded the values and their depth, aliases included.
        self.values.setdefault(path, _at(node.start_mark))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                self.errors.append(self._tag_error(node, path))
                return None
            return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _tag_error(self, node: yaml.Node, path: FieldPath) -> SpecError:
        return _error_at(
            self.file,
            node,
            path,
            f"unsupported YAML tag {node.tag!r}; specs are plain data",
        )

    def _scalar(self, node: yaml.Node, path: FieldPath) -> Any:
        if node.tag != _STR_TAG and node.tag not in _FORMS:
            self.errors.append(self._tag_error(node, path))
            return None
        try:
            return construct(node.tag, node.value)
        except _BadScalar as exc:
            self.errors.append(_error_at(self.file, node, path, str(exc)))
            return None

    def _mapping(
        self, node: yaml.MappingNode, path: FieldPath
    ) -> dict[str, Any] | None:
        if node.tag != _MAP_TAG:
            self.errors.append(self._tag_error(node, path))
            return None
        out: dict[str, Any] = {}
        first_seen: dict[str, Position] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                self.errors.append(
                    _error_at(
                        self.file,
                        key_node,
                        path,
                        "YAML merge keys ('<<') are not supported; "
                        "write the fields out",
                    )
                )
                continue
            key = (
                self._scalar(key_node, path)
                if isinstance(key_node, yaml.ScalarNode)
                else None
            )
            if not isinstance(key, str):
                self.errors.append(
                    _error_at(
                        self.file, key_node, path, "field names must be plain strings"
                    )
                )
                continue
            here = _at(key_node.start_mark)
            if key in first_seen:
                self.errors.append(
                    _error_at(
                        self.file,
                        key_node,
                        (*path, key),
                        f"duplicate key {key!r} (first written at line "
                        f"{first_seen[key].line}); each field may appear once",
                    )
                )
                continue
            first_seen[key] = here
            self.keys[(*path, key)] = here
            out[key] = self.convert(value_node, (*path, key))
        return out


def parse_yaml(
    text: str, file: str, fields: Collection[str] = ()
) -> Document | list[SpecError]:
    """Parse spec text into a `Document`, or every error found in it.

    `fields` are the spec's top-level field names: a field too large to read
    that is not one of them is reported as unknown.
    """
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    bad = yaml.reader.Reader.NON_PRINTABLE.search(text)
    if bad is not None:
        return [_reader_error(file, text, bad.start(), bad.group())]
    composer = _Composer(_parser(text), file, fields)
    try:
        root = composer.document()
    except _Stop as stop:
        return [stop.error]
    except yaml.MarkedYAMLError as exc:
        if exc.problem == "exceeded maximum nesting depth" and exc.problem_mark:
            return [composer.too_deep(exc.problem_mark)]  # libyaml's own bound
        return [_syntax_error(file, exc)]
    except yaml.reader.ReaderError as exc:
        return [_reader_error(file, text, exc.position, exc.character)]
    except yaml.YAMLError as exc:
        return [SpecError(file, None, None, (), f"invalid YAML: {exc}")]
    if root is None:
        return [SpecError(file, 1, 1, (), "the spec is empty")]
    converter = _Converter(file)
    data = converter.convert(root, ())
    if not isinstance(data, dict):
        return [_error_at(file, root, (), _NOT_A_MAPPING)]
    return Document(
        file, sha, text, data, converter.values, converter.keys, tuple(converter.errors)
    )


def _syntax_error(file: str, exc: yaml.MarkedYAMLError) -> SpecError:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "invalid YAML"
    context = exc.context_mark
    if exc.context and exc.problem and not exc.context.startswith("while"):
        problem = f"{exc.context}, {problem}"
    elif exc.context and exc.problem and context is not None and context != mark:
        where = f"line {context.line + 1}, column {context.column + 1}"
        problem += f" ({exc.context} at {where})"
    return SpecError(
        file,
        mark.line + 1 if mark else None,
        mark.column + 1 if mark else None,
        (),
        f"invalid YAML: {problem}",
    )


def _char(character: int | str) -> str:
    return repr(chr(character) if isinstance(character, int) else character)


def _reader_error(
    file: str, text: str, position: int, character: int | str
) -> SpecError:
    before = text[:position]
    line = before.count("\n") + 1
    column = position - (before.rfind("\n") + 1) + 1
    return SpecError(
        file,
        line,
        column,
        (),
        f"invalid YAML: the character {_char(character)} is not allowed "
        "(control characters must be escaped in a quoted string)",
    )


def read_spec_file(
    path: Path, display: str | None = None, fields: Collection[str] = ()
) -> Document | list[SpecError]:
    """Read and parse a spec file; `display` is the name used in messages,
    `fields` the spec's top-level field names (see `parse_yaml`)."""
    file = display if display is not None else str(path)
    try:
        raw = read_bounded(path, MAX_BYTES)
    except FileNotFoundError:
        return [SpecError(file, None, None, (), "no such file")]
    except NotAFile as exc:
        what = "is a folder, not a spec file" if path.is_dir() else str(exc)
        return [SpecError(file, None, None, (), what)]
    except TooLarge as exc:
        message = f"the file is {exc.size:,} bytes; a spec is at most {MAX_BYTES:,}"
        return [SpecError(file, None, None, (), message)]
    except OSError as exc:
        return [SpecError(file, None, None, (), unreadable(exc))]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return [SpecError(file, line, None, (), "the file is not valid UTF-8")]
    return parse_yaml(text, file, fields)
