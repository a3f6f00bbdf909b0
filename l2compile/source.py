"""Reading spec files: safe YAML, with the line and column of every value.

PyYAML's safe loader builds plain data but forgets where each value came from
and lets a duplicate key silently overwrite the first one. Here the document
is composed into YAML nodes (which keep their marks), then converted to data
by hand, recording a position for every field path and refusing what a spec
never needs: duplicate keys, merge keys, non-string keys, Python tags, and
alias expansions beyond a small bound ("billion laughs").
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from l2compile.errors import FieldPath, SpecError

#: A spec is a short file; these bounds keep a hostile one from using much
#: time or memory (anchors and aliases can expand exponentially).
MAX_BYTES = 1 << 20
MAX_VALUES = 10_000
MAX_DEPTH = 32

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_PLAIN_TAGS = {
    f"tag:yaml.org,2002:{kind}" for kind in ("str", "int", "float", "bool", "null")
}
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class _Loader(yaml.SafeLoader):
    """The safe loader, reading `1e-3` as a number as YAML 1.2 does (1.1 needs
    a dot, so PyYAML would read it as text)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


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
    data: Any
    values: dict[FieldPath, Position] = field(default_factory=dict)
    keys: dict[FieldPath, Position] = field(default_factory=dict)
    #: Problems that still leave data to validate (a duplicate key keeps its
    #: first value; an unsupported tag becomes null), so that all the errors
    #: of a file are reported together.
    problems: tuple[SpecError, ...] = ()

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


class _TooLarge(Exception):
    def __init__(
        self, node: yaml.Node, path: FieldPath, what: str, *, shared: bool
    ) -> None:
        self.node = node
        self.path = path
        self.what = what
        self.shared = shared  # the node may be an alias target, anywhere


def _pos(node: yaml.Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


def _error_at(file: str, node: yaml.Node, path: FieldPath, message: str) -> SpecError:
    pos = _pos(node)
    return SpecError(file, pos.line, pos.column, path, message)


class _Converter:
    def __init__(self, file: str, loader: _Loader) -> None:
        self.file = file
        self.loader = loader
        self.count = 0
        self.errors: list[SpecError] = []
        self.values: dict[FieldPath, Position] = {}
        self.keys: dict[FieldPath, Position] = {}

    def convert(self, node: yaml.Node, path: FieldPath) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise _TooLarge(
                node,
                path,
                f"the spec expands to more than {MAX_VALUES:,} values; "
                "YAML anchors and aliases are nested too deeply (an alias bomb?)",
                shared=True,
            )
        if len(path) > MAX_DEPTH:
            raise _TooLarge(
                node,
                path,
                f"values are nested more than {MAX_DEPTH} deep",
                shared=False,
            )
        self.values.setdefault(path, _pos(node))
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
        if node.tag == _TIMESTAMP_TAG and isinstance(node, yaml.ScalarNode):
            return node.value  # a date where text is expected stays text
        if node.tag not in _PLAIN_TAGS:
            self.errors.append(self._tag_error(node, path))
            return None
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError:
            self.errors.append(self._tag_error(node, path))
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
            if key_node.tag == "tag:yaml.org,2002:merge":
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
            here = _pos(key_node)
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


def parse_yaml(text: str, file: str) -> Document | list[SpecError]:
    """Parse spec text into a `Document`, or every error found in it."""
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # the reader checks characters at once
        return [_reader_error(file, text, exc)]
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        context = exc.context_mark
        if exc.context and exc.problem and context is not None and context != mark:
            if exc.context.startswith("while"):
                where = f"line {context.line + 1}, column {context.column + 1}"
                problem += f" ({exc.context} at {where})"
            else:
                problem = f"{exc.context}, {problem}"
        return [
            SpecError(
                file,
                mark.line + 1 if mark else None,
                mark.column + 1 if mark else None,
                (),
                f"invalid YAML: {problem}",
            )
        ]
    except yaml.reader.ReaderError as exc:
        return [_reader_error(file, text, exc)]
    except RecursionError:
        return [SpecError(file, None, None, (), "invalid YAML: nested too deeply")]
    except yaml.YAMLError as exc:
        return [SpecError(file, None, None, (), f"invalid YAML: {exc}")]
    try:
        if root is None:
            return [SpecError(file, 1, 1, (), "the spec is empty")]
        converter = _Converter(file, loader)
        try:
            data = converter.convert(root, ())
        except _TooLarge as exc:
            # Aliases share nodes, so the node itself may sit anywhere; point
            # at the top-level field whose value grew too large instead.
            top = exc.path[:1]
            pos = converter.keys.get(top) if top and exc.shared else _pos(exc.node)
            if pos is None:
                pos = _pos(exc.node)
            return [SpecError(file, pos.line, pos.column, top, exc.what)]
        if not isinstance(data, dict):
            return [
                _error_at(
                    file,
                    root,
                    (),
                    "a spec must be a mapping of fields (name:, input:, layers:, ...)",
                )
            ]
        return Document(
            file,
            sha,
            data,
            converter.values,
            converter.keys,
            tuple(converter.errors),
        )
    finally:
        loader.dispose()


def _char(character: int | str) -> str:
    return repr(chr(character) if isinstance(character, int) else character)


def _reader_error(file: str, text: str, exc: yaml.reader.ReaderError) -> SpecError:
    before = text[: exc.position]
    line = before.count("\n") + 1
    column = exc.position - (before.rfind("\n") + 1) + 1
    return SpecError(
        file,
        line,
        column,
        (),
        f"invalid YAML: the character {_char(exc.character)} is not allowed "
        "(control characters must be escaped in a quoted string)",
    )


def read_spec_file(
    path: Path, display: str | None = None
) -> Document | list[SpecError]:
    """Read and parse a spec file; `display` is the name used in messages."""
    file = display if display is not None else str(path)
    try:
        if path.is_dir():
            return [SpecError(file, None, None, (), "is a folder, not a spec file")]
        size = path.stat().st_size
        if size > MAX_BYTES:
            return [
                SpecError(
                    file,
                    None,
                    None,
                    (),
                    f"the file is {size:,} bytes; a spec is at most {MAX_BYTES:,}",
                )
            ]
        raw = path.read_bytes()
    except FileNotFoundError:
        return [SpecError(file, None, None, (), "no such file")]
    except OSError as exc:
        return [SpecError(file, None, None, (), f"cannot read: {exc.strerror}")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return [SpecError(file, line, None, (), "the file is not valid UTF-8")]
    return parse_yaml(text, file)
