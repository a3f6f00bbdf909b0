"""`--set FIELD=VALUE[,VALUE...]`: spec fields overridden from the command line.

`build --set` takes one value per field; `sweep --set` takes several, and
several `--set` make a grid (l2compile.sweep). FIELD is a path written the way
the errors write it (`l2`, `train.optimizer.learning_rate`, `layers[1].units`);
each VALUE is read as YAML 1.2, as the spec file's own values are, so `1e-3` is
a number and `[keras, tflite]` a list.

An override changes the parsed document before it is validated, so an
overridden spec goes through exactly the checks a written one does; an error
at an overridden field is placed at its `--set` rather than at the spec file's
line (which no longer holds the value that was checked).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from l2compile.errors import FieldPath, SpecError, format_path
from l2compile.source import Document, parse_yaml

#: `train.optimizer`, `layers[1]`, `layers.1`: names and indexes.
_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*|[0-9]+)((?:\[[0-9]+\])*)")
_INDEX = re.compile(r"\[([0-9]+)\]")
#: What one `--set` may hold, so that a hostile command line costs little.
MAX_CHARS = 4096
MAX_VALUES = 100


@dataclass(frozen=True)
class Override:
    """One `--set`: the field it sets and the values it takes, in order."""

    text: str  #: as given, `l2=0,1e-3`
    field: str  #: as given, `l2`
    path: FieldPath
    values: tuple[Any, ...]
    value_texts: tuple[str, ...]  #: each value as written

    def one(self, index: int) -> Override:
        """This override with only its `index`-th value."""
        value = self.value_texts[index]
        return Override(
            f"{self.field}={value}",
            self.field,
            self.path,
            (self.values[index],),
            (value,),
        )


class OverrideError(ValueError):
    """A `--set` that cannot be read; the message names it."""


def parse(text: str) -> Override:
    """Read one `--set FIELD=V1,V2,...`."""
    shown = text if len(text) <= 80 else text[:60] + "..."
    if not shown.isprintable():  # a line break must not start a line of its own
        shown = shown.encode("unicode_escape").decode("ascii")
    where = f"--set {shown}"
    if len(text) > MAX_CHARS:
        raise OverrideError(f"{where}: at most {MAX_CHARS:,} characters")
    if not text.isprintable():
        raise OverrideError(f"{where}: control characters and line breaks are refused")
    field, sep, values = text.partition("=")
    field = field.strip()
    if not sep or not field:
        raise OverrideError(
            f"{where}: expected FIELD=VALUE (for example l2=0.001, "
            "train.optimizer.learning_rate=1e-3,3e-4 or layers[0].units=64)"
        )
    path = parse_path(field, where)
    texts = split_values(values, where)
    if len(texts) > MAX_VALUES:
        raise OverrideError(f"{where}: at most {MAX_VALUES} values")
    parsed = tuple(_value(value, where) for value in texts)
    return Override(f"{field}={values.strip()}", field, path, parsed, tuple(texts))


def parse_path(field: str, where: str) -> FieldPath:
    """`layers[1].units` (or `layers.1.units`) as a field path."""
    path: list[str | int] = []
    for part in field.split("."):
        match = _PART.fullmatch(part)
        if match is None:
            raise OverrideError(
                f"{where}: {field!r} is not a field path (write it as the errors "
                "do: train.optimizer.learning_rate, layers[1].units)"
            )
        name, indexes = match.groups()
        if name.isdigit():
            if not path:
                raise OverrideError(f"{where}: a field path starts with a name")
            path.append(int(name))
        else:
            path.append(name)
        path.extend(int(i) for i in _INDEX.findall(indexes))
    return tuple(path)


def split_values(text: str, where: str) -> list[str]:
    """Split at the commas that are not inside brackets, braces or quotes."""
    values: list[str] = []
    depth, quote, start = 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(text[start:i].strip())
            start = i + 1
    values.append(text[start:].strip())
    if any(not value for value in values):
        raise OverrideError(
            f"{where}: an empty value (write null for none, '' for empty text)"
        )
    return values


def _value(text: str, where: str) -> Any:
    """A value read as YAML 1.2, as the spec file's values are."""
    doc = parse_yaml(f"value: {text}\n", where)
    if not isinstance(doc, list) and doc.problems:  # YAML, with a bad value
        raise OverrideError(f"{where}: {doc.problems[0].message}")
    problems = doc if isinstance(doc, list) else []
    if isinstance(doc, list) or set(doc.data) != {"value"}:
        reason = f" ({problems[0].message})" if problems else ""
        raise OverrideError(
            f"{where}: {text!r} is not a YAML value{reason}; quote text that "
            "holds ': ' or ' #'"
        )
    return doc.data["value"]


def apply(doc: Document, overrides: Sequence[Override]) -> Document | list[SpecError]:
    """`doc` with each override's (single) value set; an error per override
    whose path does not reach into the document."""
    data = copy.deepcopy(doc.data)
    errors = []
    for override in overrides:
        problem = _set(data, override.path, override.values[0])
        if problem is not None:
            errors.append(at_override(override, problem))
    if errors:
        return errors
    return replace(
        doc,
        data=data,
        overrides=tuple(o.text for o in overrides),
        values={p: v for p, v in doc.values.items() if not _under(p, overrides)},
        keys={p: v for p, v in doc.keys.items() if not _under(p, overrides)},
    )


def _under(path: FieldPath, overrides: Sequence[Override]) -> bool:
    return any(path[: len(o.path)] == o.path for o in overrides)


def _set(data: Any, path: FieldPath, value: Any) -> str | None:
    """Set `value` at `path` in `data`, making missing mappings on the way;
    why it cannot be set otherwise."""
    here: Any = data
    for i, part in enumerate(path):
        last = i == len(path) - 1
        shown = format_path(path[:i]) or "the spec"
        if isinstance(part, int):
            if not isinstance(here, list):
                return f"{shown} is not a list, so it has no [{part}]"
            if part >= len(here):
                return (
                    f"{shown} has {len(here)} entries (0 to {len(here) - 1}); "
                    f"[{part}] is out of range"
                )
        elif not isinstance(here, dict):
            return f"{shown} is not a mapping, so it has no field {part!r}"
        elif not last and here.get(part) is None:
            here[part] = {} if isinstance(path[i + 1], str) else []
        if last:
            here[part] = value
        else:
            here = here[part]
    return None


def at_override(override: Override, message: str) -> SpecError:
    """An error placed at a `--set`."""
    return SpecError(f"--set {override.text}", None, None, (), message)


def place(errors: list[SpecError], overrides: Sequence[Override]) -> list[SpecError]:
    """Errors at (or under) an overridden field, placed at its `--set`; so
    is an unknown field that a --set's path made (a misspelt part of it)."""
    placed = []
    for error in errors:
        found = next((o for o in overrides if _placed_at(error, o)), None)
        if found is not None:
            error = replace(error, file=f"--set {found.text}", line=None, column=None)
        placed.append(error)
    return placed


def _placed_at(error: SpecError, override: Override) -> bool:
    if not override.path:
        return False
    if error.path[: len(override.path)] == override.path:
        return True
    made = error.path == override.path[: len(error.path)]
    return made and error.message.startswith("unknown field")


def grid(overrides: Sequence[Override]) -> list[tuple[Override, ...]]:
    """Every combination of the overrides' values, the last varying fastest."""
    combos: list[tuple[Override, ...]] = [()]
    for override in overrides:
        combos = [
            (*combo, override.one(i))
            for combo in combos
            for i in range(len(override.values))
        ]
    return combos


def check_distinct(overrides: Sequence[Override]) -> None:
    """Refuse two `--set` of the same field, or one that sets inside another."""
    for i, first in enumerate(overrides):
        for second in overrides[i + 1 :]:
            shorter = min(len(first.path), len(second.path))
            if first.path[:shorter] == second.path[:shorter]:
                raise OverrideError(
                    f"--set {first.field} and --set {second.field} set the same "
                    "field; give it one --set with all its values"
                )
