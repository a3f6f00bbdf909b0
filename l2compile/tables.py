"""Reading and checking a user's CSV file for the csv recipe, streamed (and
a Parquet table's rows for the parquet recipe, which l2compile.parquet gives
as the text a CSV would hold: `read_csv(records=...)`).

The file is read several times, never held: memory is the float32 (and
int64) arrays it becomes, the text columns' vocabularies and a block of a few
thousand rows. The generated module reimplements these rules, so they are
stated here exactly.

Reading
    The file must be a regular file (a symbolic link to one is followed): a
    folder, a FIFO or a device is refused from its open descriptor, before a
    byte is read. It is opened with encoding "utf-8-sig" (a BOM is dropped)
    and newline="", and read with Python's `csv.reader` in its default
    dialect. Lines are counted from 1, as a text editor does, with the header
    on line 1; a row is named by the line it starts on, so quoted fields
    holding newlines count right. Blank lines (rows the reader gives as [])
    are skipped, before the header too. The first row is the header; its
    names are stripped of surrounding whitespace, and must be unique and not
    empty.

Bounds
    A row, with the lines its quoted fields span, holds at most
    MAX_ROW_CHARS characters, and a field at most `csv.field_size_limit()`
    (131,072); lines are read with that bound, so a file without newlines is
    never read whole. The header has at most MAX_COLUMNS columns. The file's
    size is not bounded: it is streamed, and its arrays are checked against
    the memory available.

Cells
    Every cell is stripped of surrounding whitespace. A cell is MISSING if it
    is "" or, in any case, one of "na", "n/a", "nan", "null". A cell is a
    NUMBER if `float(cell)` succeeds and gives a value finite in float32
    (its magnitude under FLOAT32_LIMIT: 1e39 is not a number).

Columns
    The label columns are `recipe.label`; the feature columns
    `recipe.features`, or else every header column that is not a label nor
    declared `ignore` (`recipe.types`), in the file's order. Each column that
    `recipe.types` or `recipe.missing.columns` names must be a feature column
    (or, in types, an ignored one). A test file's header must be the train
    file's: the same columns in the same order. Every row must have as many
    fields as the header has columns.

Missing values
    A row whose label (any label column) is missing is dropped: it is in
    neither split, and the dataset's warnings say how many rows each file
    lost, with their first lines. A missing feature value is NaN in a
    numeric column, id 0 in a text column, and NaN in each part of a date.
    Each feature column's policy is `recipe.missing.policy(name, numeric)`:
    an error policy with a missing value in any row (training or test) is an
    error, and one error names every such column of each file, with its count
    of rows and its first lines. A numeric column's fill is the median or
    mean of its training split's present values (`np.median`/`np.mean` of
    the float32 values, as a Python float), or 0.0 for zero, None for error
    (0.0 where no training value is present, which only a date part can be);
    a text column's, for most_frequent, the id most frequent in the training
    split, slot 0 not counted (None where every value is missing), else
    None. `indicator` marks the numeric inputs whose training split holds a
    NaN. A feature column without a present value in the training rows is
    an error.

Split
    With a test file: the train file's rows train, the test file's test.
    Else, with `recipe.test_split`: n = the number of data rows;
    order = np.random.default_rng(seed).permutation(n);
    held = round(n * test_split); the rows order[:held] test and the rows
    order[held:] train, each kept in file order. Neither is an error.

Features
    A column declared numeric is NUMERIC; categorical is TEXT; date is a
    DATE. An undeclared feature column is NUMERIC if at least half of its
    present values in the training rows are numbers, else TEXT. In a numeric
    column every present value (training or test row) must be a number. A
    date column's format is the declared one, else the first of
    DATE_FORMATS that every distinct training value fits under
    `datetime.strptime` (none fitting is an error); each present value, in
    any row, must fit it, and becomes DATE_PARTS: the year less 2000, and sin and cos
    of 2 pi (month - 1) / 12 and of 2 pi weekday / 7 (Monday 0). A text
    column's vocabulary is its distinct values in the training rows, sorted;
    a value's id is 1 + its index in the vocabulary, and 0 (the
    out-of-vocabulary slot) for a missing value or one not in it (test rows
    only). An undeclared text column whose
    training rows hold at least 50 distinct values, and at least 0.9 of the
    rows, is an error (an ID, a date or free text, not a category). x is
    float32 (rows, inputs): the numbers, the ids and each date's five parts
    in their column's place. The model fills missing values and one-hot
    encodes each text column, so a sample is sum(1, or 2 with an indicator,
    for a numeric input; len(vocabulary) + 1 for a text column) values,
    which must equal input.shape.

Labels, by `model_input.task` (its `output_per_column` and `bool_labels`)
    regression: every label value must be a number; y is float32, (n,) for
        one label column, (n, k) for k.
    multilabel: every label value must be the number 0 or 1; y is float32
        (n, k).
    binary and classification: exactly one label column. If every value in
        the training rows is a number, the labels are numbers: binary's must
        be 0 or 1; classification's integers (2.0 is 2) from 0 to the last
        layer's units less 1; y is int64 (n,), their values. Otherwise they
        are names: the classes are the training rows' distinct values,
        sorted, of which binary needs exactly two and classification as many
        as the last layer's units; y is int64 (n,), each value's index among
        the classes, and a test value not among them is an error.
    regression and multilabel need one label column per output of the model.

Errors
    The first problem found raises `BuildError`, naming the file, and the line
    and column where there is one. They are found in this order: the recipe
    against the task; the header, then the test file's; with test_split, the
    split's rows (a first pass counts them); the rows in file order, the
    train file first (field counts, and the labels of regression and
    multilabel, in rows with a label); a file, or a split, without data rows
    with a label; non-numbers in numeric columns (the first in file order);
    a single column's policy of the wrong kind; the missing values whose
    policy is error, all of them; columns without a training value; the
    text columns whose values are nearly all distinct, all of them; a date
    column's format; the training rows' labels; the memory the arrays need;
    while the arrays are filled, the test rows' labels of binary and
    classification and dates of another form, in file order; last, the
    encoded width against input.shape.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

# The module, not its names: datasets may import this module while it loads.
from l2compile import datasets, files
from l2compile.dates import DATE_PARTS, any_date_format, date_parts
from l2compile.errors import BuildError, closest, some_of
from l2compile.recipes import ModelInput
from l2compile.sources.base import ColumnType, Missing
from l2compile.sources.base import Source as Recipe
from l2compile.tasks import Task

__all__ = [
    "MAX_COLUMNS",
    "MAX_ROW_CHARS",
    "MISSING",
    "is_missing",
    "is_number",
    "read_csv",
]

#: The most columns a table's header has, read or not. Every row is split
#: into all of its fields, and by default every column but the labels is a
#: feature: an input of the model, a category encoding where it is text, an
#: entry of model.json. 65,536 holds the wide tables people keep as CSV (a
#: gene-expression matrix has some 20,000 columns); a wider one is a sparse
#: matrix, which a CSV table is the wrong form for.
MAX_COLUMNS = 65_536
#: The most characters a row holds, with the lines its quoted fields span:
#: 128 characters for each of MAX_COLUMNS columns. Lines are read with this
#: bound, so a line without end is refused, never read whole; it bounds the
#: memory one row takes while it is split.
MAX_ROW_CHARS = 8 * 1024 * 1024
#: Bytes read at a time while the line that is not UTF-8 is found again.
_PIECE_BYTES = 1 << 20

#: The values that mean "no value", compared in lower case.
MISSING = ("", "na", "n/a", "nan", "null")
#: Every spelling of them, in any case: a row is checked by one set operation.
_MISSING_FORMS = frozenset(
    "".join(letters)
    for word in MISSING
    for letters in itertools.product(*((c.lower(), c.upper()) for c in word))
)
#: Rows converted at a time while the arrays are filled.
_BLOCK_ROWS = 4096
#: Distinct label values kept while counting a classifier's classes, beyond
#: those it needs: enough to name them, bounded where a column is not labels.
_EXTRA_LABELS = 100

_Getter = Callable[[Sequence[str]], tuple[str, ...]]
#: How a file's rows are read: each non-blank row, header first, as text
#: cells, with the line it starts on.
Records = Callable[[Path], Iterator[tuple[int, list[str]]]]


def is_missing(cell: str) -> bool:
    """Whether a stripped cell holds no value."""
    return cell in _MISSING_FORMS


#: The arrays are float32: a number at or past this rounds to infinity there.
FLOAT32_LIMIT = 3.4028235677973366e38


def is_number(cell: str) -> bool:
    """Whether a stripped cell is a number, as `float` reads it, that is
    finite in float32 (1e39 is not: it would be infinity in the arrays)."""
    try:
        return abs(float(cell)) < FLOAT32_LIMIT
    except ValueError:
        return False


def read_csv(
    recipe: Recipe,
    train: Path,
    test: Path | None,
    *,
    seed: int,
    model_input: ModelInput,
    records: Records | None = None,
) -> datasets.Dataset:
    """Read and check the csv recipe's data: `train`, and `test` or a seeded
    `recipe.test_split` of `train`. See the module's docstring for the rules.
    `records`: how a file's rows are read (default: as CSV; the parquet
    recipe's rows, as text, go through the same rules)."""
    records = records or csv_records
    task = model_input.task
    assert task is not None, "the csv recipe always has a task"
    if test is None and recipe.test_split is None:
        raise BuildError(
            "the csv recipe needs test data: a test file (data: {train: ..., "
            "test: ...}) or train.test_split"
        )
    labels = _labels_for(task, recipe.label)
    sources, features = _sources(recipe, train, test, seed, records)
    scan = _Scan(len(features), sources[0].kinds)
    missing = _Missing()
    for index, source in enumerate(sources):
        _scan(index, source, scan, labels, missing)
    _check_rows(sources, scan)
    kinds = _settle_columns(sources, features, scan, missing, recipe.missing)
    labels.settle(train)
    width = sum(_WIDTHS[kind.kind] for kind in kinds)
    _check_memory(train, width, labels, scan.rows)
    x, y = _fill(sources, kinds, labels, scan.rows, width)
    columns = _columns(kinds, x[False], recipe.missing)
    if not model_input.derived:
        _check_width(train, model_input, columns)
    ids = {}
    for part in (False, True):
        rows = [
            np.setdiff1d(
                _rows_of(source, part, scan.total[k]),
                scan.dropped[k],
                assume_unique=True,
            )
            for k, source in enumerate(sources)
            if source.test == part or source.held is not None
        ]
        ids[part] = np.concatenate(rows)
    return datasets.Dataset(
        x[False],
        y[False],
        x[True],
        y[True],
        source=str(train) + (f" and {test}" if test is not None else ""),
        columns=columns,
        classes=labels.classes,
        train_ids=ids[False],
        test_ids=ids[True],
        warnings=_dropped(sources, scan, recipe.label),
    )


def _rows_of(source: _Source, test: bool, count: int) -> npt.NDArray[np.int64]:
    """The data rows of one file (`count` in all) in one split, counted from 0."""
    if source.held is None:
        return np.arange(count, dtype=np.int64)
    flags = np.frombuffer(source.held, np.uint8)
    return np.flatnonzero(flags == test)


def _dropped(
    sources: Sequence[_Source], scan: _Scan, label: Sequence[str]
) -> tuple[str, ...]:
    """The warning for each file whose rows without a label were dropped."""
    return tuple(
        dropped_warning(source.path, len(scan.dropped[k]), scan.dropped_lines[k], label)
        for k, source in enumerate(sources)
        if scan.dropped[k]
    )


def dropped_warning(
    path: Path, count: int, lines: Sequence[int], label: Sequence[str]
) -> str:
    """The warning for a file that lost `count` rows without a label (their
    first `lines`)."""
    names = ", ".join(repr(name) for name in label)
    shown = ", ".join(str(line) for line in lines[:_MISSING_LINES])
    more = ", ..." if count > _MISSING_LINES else ""
    at = "line" if count == 1 else "lines"
    return (
        f"{path}: dropped {_plural(count, 'row')} without a label in {names} "
        f"({at} {shown}{more}): a row needs its label to train or to be scored"
    )


def _sources(
    recipe: Recipe, train: Path, test: Path | None, seed: int, records: Records
) -> tuple[list[_Source], tuple[str, ...]]:
    """The files to read, their headers checked, and the feature columns."""
    header = _header(train, records)
    # Each name's place, found once: a header may have MAX_COLUMNS names.
    places = {name: k for k, name in enumerate(header)}
    features = feature_columns(recipe, train, header, places)
    types = {column.name: column for column in recipe.types}
    labels = tuple(places[name] for name in recipe.label)
    columns = tuple(places[name] for name in features)
    kinds = tuple(types.get(name, _READ) for name in features)
    if test is None:
        assert recipe.test_split is not None
        held = _split(train, recipe.test_split, seed, records)
        source = _Source(train, header, labels, columns, kinds, held, records)
        return [source], features
    test_header = _header(test, records)
    _same_header(test, test_header, train, header)
    return [
        _Source(train, header, labels, columns, kinds, None, records),
        _Source(test, test_header, labels, columns, kinds, None, records, test=True),
    ], features


def feature_columns(
    recipe: Recipe, train: Path, header: Sequence[str], places: dict[str, int]
) -> tuple[str, ...]:
    """The feature columns of a table whose header is `header` (`places`:
    each name's place): train.features, else every column that is not a
    label nor ignored; the columns each field names checked against them."""
    types = {column.name: column for column in recipe.types}
    features = recipe.features
    if features is None:
        features = tuple(
            name
            for name in header
            if name not in recipe.label
            and (name not in types or types[name].kind != "ignore")
        )
        if not features:
            raise BuildError(
                f"{train}: no feature columns: every column is a label or "
                "ignored (train.columns)"
            )
    _find(train, places, recipe.label, "train.label")
    _find(train, places, features, "train.features")
    _find(train, places, list(types), "train.columns")
    policies = [name for name, _ in recipe.missing.columns]
    _find(train, places, policies, "train.missing.columns")
    chosen = set(features)
    for name, field_name in [(name, "train.columns") for name in types] + [
        (name, "train.missing.columns") for name in policies
    ]:
        ignored = field_name == "train.columns" and types[name].kind == "ignore"
        if name not in chosen and not ignored:
            raise BuildError(
                f"{train}: {field_name} names column {name!r}, which is not a "
                f"feature column (features: {some_of(features, limit=8)})"
            )
    return features


#: An undeclared column: its kind is inferred from its values.
_READ = ColumnType("", "")


# --- reading rows ---------------------------------------------------------------------


def csv_records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Each non-blank row of a CSV file, header included, with the line it
    starts on."""
    try:
        with _open(path) as f:
            lines = _Lines(f, path)
            try:
                for row in csv.reader(lines):
                    start = lines.start
                    lines.next_row()
                    if row:
                        yield start, row
            except csv.Error as exc:
                raise BuildError(f"{path}: line {lines.start}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise BuildError(_not_utf8(path)) from exc
    except OSError as exc:
        raise BuildError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _open(path: Path, *, binary: bool = False) -> IO[Any]:
    """The regular file `path`, open (`files.open_regular`: a FIFO is never
    waited on and a device never read)."""
    try:
        fd = files.open_regular(path)
    except files.NotAFile as exc:
        raise BuildError(f"{path}: is {exc.what}, not a CSV file") from exc
    except OSError as exc:
        raise BuildError(f"{path}: {files.unreadable(exc)}") from exc
    if binary:
        return os.fdopen(fd, "rb")
    return os.fdopen(fd, encoding="utf-8-sig", newline="")


class _Lines:
    """A text file's lines for `csv.reader`, read with a bound: the lines of
    one row hold at most MAX_ROW_CHARS characters in all."""

    def __init__(self, f: IO[str], path: Path) -> None:
        self.f, self.path = f, path
        self.read = 0  #: lines read so far
        self.start = 1  #: the line the row being read starts on
        self.left = MAX_ROW_CHARS  #: characters the row may still take

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self.f.readline(self.left + 1)
        if not line:
            raise StopIteration
        self.read += 1
        self.left -= len(line)
        if self.left < 0:
            raise BuildError(
                f"{self.path}: line {self.start}: the row is longer than "
                f"{MAX_ROW_CHARS:,} characters; a row has at most {MAX_ROW_CHARS:,}"
            )
        return line

    def next_row(self) -> None:
        """The reader has a whole row: the next one starts on the next line."""
        self.start, self.left = self.read + 1, MAX_ROW_CHARS


def _not_utf8(path: Path) -> str:
    """Where a file stops being UTF-8: found again line by line, since the
    text reader decodes blocks and cannot say. A line is read in pieces, so a
    file without newlines is never held whole."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    number = 1
    with _open(path, binary=True) as f:
        try:
            while piece := f.readline(_PIECE_BYTES):
                decoder.decode(piece)  # a character cut between pieces waits
                number += piece.endswith(b"\n")
            decoder.decode(b"", final=True)  # a character cut at the end
        except UnicodeDecodeError as exc:
            byte = exc.object[exc.start : exc.start + 1].hex()
            return f"{path}: line {number} is not UTF-8 text (byte 0x{byte})"
    return f"{path}: is not UTF-8 text"


def header_of(path: Path, records: Records) -> tuple[str, ...]:
    """A table's column names, checked as a build checks them."""
    return _header(path, records)


def _header(path: Path, records: Records) -> tuple[str, ...]:
    """The header's column names, stripped: at most MAX_COLUMNS, each named,
    and each unique."""
    for line, row in records(path):
        if len(row) > MAX_COLUMNS:
            raise BuildError(
                f"{path}: line {line}: the header has {len(row):,} columns; a "
                f"table has at most {MAX_COLUMNS:,}"
            )
        names = tuple(cell.strip() for cell in row)
        first: dict[str, int] = {}
        for k, name in enumerate(names, 1):
            if not name:
                raise BuildError(
                    f"{path}: line {line}, column {k:,}: the header cell is empty; "
                    "every column needs a name"
                )
            if first.setdefault(name, k) != k:
                raise _named_twice(path, line, names, name)
        return names
    raise BuildError(f"{path}: no header row")


def _named_twice(path: Path, line: int, names: Sequence[str], name: str) -> BuildError:
    """The error for a name that heads more than one column."""
    places = [f"{k:,}" for k, other in enumerate(names, 1) if other == name]
    times = "twice" if len(places) == 2 else f"{len(places):,} times"
    shown = (
        some_of(places, limit=8)
        if len(places) > 8
        else f"{', '.join(places[:-1])} and {places[-1]}"
    )
    return BuildError(
        f"{path}: line {line}: column {name!r} appears {times} in the header "
        f"(columns {shown})"
    )


def _find(
    path: Path, places: dict[str, int], names: Sequence[str], field_name: str
) -> None:
    """Each of `names` (the spec's `field_name`) must be a header column
    (`places`: the header's names, in order, each with its place)."""
    for name in names:
        if name in places:
            continue
        message = f"{path}: no column {name!r} ({field_name})"
        guess = closest(name, places)
        if guess is not None:
            message += f"; did you mean {guess!r}?"
        else:
            message += f"; its columns are: {some_of(list(places), limit=8)}"
        raise BuildError(message)


def _same_header(
    test: Path, test_header: Sequence[str], train: Path, header: Sequence[str]
) -> None:
    """A test file's header must be the train file's, in the same order (the
    generated module reads the columns by their place)."""
    if tuple(test_header) == tuple(header):
        return
    train_names, test_names = set(header), set(test_header)
    missing = [name for name in header if name not in test_names]
    extra = [name for name in test_header if name not in train_names]
    parts = [
        f"{what} {'column' if len(names) == 1 else 'columns'} "
        + some_of([repr(name) for name in names], limit=8)
        for what, names in (("missing", missing), ("extra", extra))
        if names
    ] or [
        "the same columns in another order "
        f"({some_of(list(header), limit=8)} in {train})"
    ]
    raise BuildError(f"{test}: its header differs from {train}'s: {'; '.join(parts)}")


def _split(path: Path, test_split: float, seed: int, records: Records) -> bytes:
    """Which of the file's data rows test (1) and train (0): a first pass
    counts them, and a seeded permutation picks round(n * test_split)."""
    rows = sum(1 for _ in itertools.islice(records(path), 1, None))
    # One byte a row, indexed as ints.
    return held_out(path, rows, test_split, seed).astype(np.uint8).tobytes()


def held_out(
    path: Path, rows: int, test_split: float, seed: int
) -> npt.NDArray[np.bool_]:
    """Which of a file's `rows` data rows test: a seeded permutation picks
    round(rows * test_split); a split that leaves either side empty is an
    error."""
    if rows == 0:
        raise BuildError(f"{path}: no data rows")
    held = round(rows * test_split)
    if held == 0 or held == rows:
        none = "tests on none" if held == 0 else "leaves none to train on"
        raise BuildError(
            f"{path}: train.test_split {test_split} of {_plural(rows, 'data row')} "
            f"{none}"
        )
    order = np.random.default_rng(seed).permutation(rows)
    flags = np.zeros(rows, np.bool_)
    flags[order[:held]] = True
    return flags


def _getter(positions: Sequence[int]) -> _Getter:
    """A row's fields at `positions`, as a tuple, fetched in C."""
    if len(positions) == 1:
        at = positions[0]
        return lambda row: (row[at],)
    if not positions:
        return lambda row: ()
    return itemgetter(*positions)


@dataclass(frozen=True)
class _Source:
    """One file as it is read: where its label and feature columns are, and
    which of its rows test."""

    path: Path
    header: tuple[str, ...]
    labels: tuple[int, ...]
    features: tuple[int, ...]
    kinds: tuple[ColumnType, ...]  #: each feature's declared type (kind "": none)
    held: bytes | None  #: test_split: per data row, 1 where it tests
    records: Records  #: how its rows are read
    test: bool = False  #: every row tests (the test file)

    def rows(self) -> Iterator[tuple[int, int, bool, list[str]]]:
        """(data row counted from 0, line, whether it tests, fields) for each
        data row, each with as many fields as the header."""
        width, held = len(self.header), self.held
        for i, (line, row) in enumerate(
            itertools.islice(self.records(self.path), 1, None)
        ):
            if len(row) != width:
                raise BuildError(
                    f"{self.path}: line {line} has {_plural(len(row), 'field')}, "
                    f"but the header has {_plural(width, 'column')}"
                )
            if held is None:
                yield i, line, self.test, row
            elif i < len(held):
                yield i, line, held[i] == 1, row
            else:
                raise _changed(self.path)

    def missing(self, row: Sequence[str]) -> list[str]:
        """The feature columns whose value is missing in `row`, in the file's
        order."""
        read = sorted(self.features)
        return [self.header[at] for at in read if is_missing(row[at].strip())]


#: The lines a missing-values error names for each column.
_MISSING_LINES = 3


@dataclass
class _Gaps:
    """One column's missing values in one file: how many, the first lines."""

    count: int = 0
    lines: list[int] = field(default_factory=list)


@dataclass
class _Missing:
    """Every missing value of the rows read, by file and column; one error
    names them all."""

    #: {file: {column: its gaps}}, each in the order first found.
    found: dict[Path, dict[str, _Gaps]] = field(default_factory=dict)

    def add(self, path: Path, line: int, columns: list[str]) -> None:
        for column in columns:
            gaps = self.found.setdefault(path, {}).setdefault(column, _Gaps())
            gaps.count += 1
            if len(gaps.lines) < _MISSING_LINES:
                gaps.lines.append(line)

    def check(self, refused: set[str]) -> None:
        """Raise the error that names every column with missing values whose
        policy is error (`refused`)."""
        found = {
            path: {name: gaps for name, gaps in columns.items() if name in refused}
            for path, columns in self.found.items()
        }
        found = {path: columns for path, columns in found.items() if columns}
        if not found:
            return
        parts = []
        for path, columns in found.items():
            parts.append(
                f"{path}: missing values in {_plural(len(columns), 'column')}:"
            )
            for column, gaps in columns.items():
                shown = ", ".join(str(line) for line in gaps.lines)
                more = ", ..." if gaps.count > len(gaps.lines) else ""
                at = "line" if gaps.count == 1 else "lines"
                parts.append(
                    f"  - {column!r}: {_plural(gaps.count, 'row')} ({at} {shown}{more})"
                )
        raise BuildError(
            "\n".join(parts)
            + "\ntrain.missing says error for "
            + ("this column" if len(refused) == 1 else "these columns")
            + ": fill those cells or remove those rows, or let the build fill "
            "them (train.missing: numbers median, mean or zero; text "
            "own_category or most_frequent)"
        )

    def columns(self) -> set[str]:
        """The feature columns with a missing value in any file."""
        return {name for columns in self.found.values() for name in columns}


def _at(path: Path, line: int, column: str, what: str) -> BuildError:
    """An error about one value: `FILE: line 7, column 'age': what`."""
    return BuildError(f"{path}: line {line}, column {column!r}: {what}")


def _changed(path: Path) -> BuildError:
    return BuildError(f"{path}: changed while it was being read; read it again")


def _plural(count: int, word: str, words: str = "") -> str:
    """`1 column`, `3 columns`; `words` where the plural is not word + s."""
    return f"{count:,} " + (word if count == 1 else words or word + "s")


# --- the scan: counting, checking, vocabularies ---------------------------------------


@dataclass
class _Scan:
    """What the scan of the rows finds for each feature column: in the
    training rows, how many values are numbers and how many are not, and the
    distinct values that are not (the vocabulary, where it is text); in any
    row, the first value that is not a number (an error where it is numeric).

    Columns that have held only numbers so far are converted a row at a time
    in C (`fast`); the others, which may be text, a cell at a time."""

    size: int
    kinds: tuple[ColumnType, ...]  #: each column's declared type (kind "": none)
    numbers: list[int] = field(init=False)
    texts: list[int] = field(init=False)
    words: list[set[str]] = field(init=False)
    #: (source index, line, value) of each column's first non-number.
    first_text: list[tuple[int, int, str] | None] = field(init=False)
    #: Rows by whether they test.
    rows: dict[bool, int] = field(init=False)
    fast: list[int] = field(init=False)
    slow: list[int] = field(init=False)
    #: Per file: its data rows, and those dropped (no label) and their lines.
    total: list[int] = field(default_factory=list)
    dropped: list[list[int]] = field(default_factory=list)
    dropped_lines: list[list[int]] = field(default_factory=list)
    _fast_get: _Getter = field(init=False)
    _fast_rows: int = 0  #: training rows whose fast columns all held numbers

    def __post_init__(self) -> None:
        self.numbers = [0] * self.size
        self.texts = [0] * self.size
        self.words = [set() for _ in range(self.size)]
        self.first_text = [None] * self.size
        self.rows = {False: 0, True: 0}
        # Declared text columns are never numbers: their cells are read slowly.
        text = {k for k, kind in enumerate(self.kinds) if kind.kind in _TEXT_KINDS}
        self.fast = [k for k in range(self.size) if k not in text]
        self.slow = sorted(text)
        self._fast_get = _getter(self.fast)

    def row(self, source: int, line: int, test: bool, cells: list[str]) -> None:
        """Count one row's stripped, present feature values."""
        self.rows[test] += 1
        if not test:
            for k in self.slow:
                self._count(k, cells[k])
        try:
            values = list(map(float, self._fast_get(cells)))
            # A sum is finite only where every term is; float32 holds less.
            fine = math.isfinite(sum(values)) and (
                not values or max(map(abs, values)) < FLOAT32_LIMIT
            )
        except ValueError:
            fine = False
        if fine:
            self._fast_rows += not test
            return
        moved = []
        for k in self.fast:
            cell = cells[k]
            if cell in _MISSING_FORMS:
                continue  # neither a number nor a text value
            number = is_number(cell)
            if not test:
                self.numbers[k] += number
            if not number:
                self.first_text[k] = (source, line, cell)
                moved.append(k)
                if not test:
                    self.texts[k] += 1
                    self.words[k].add(cell)
        if moved:
            self._move(moved)

    def _count(self, k: int, cell: str) -> None:
        words = self.words[k]
        if cell in _MISSING_FORMS:
            return
        if cell in words:
            self.texts[k] += 1
        elif is_number(cell):
            self.numbers[k] += 1
        else:
            self.texts[k] += 1
            words.add(cell)

    def _move(self, moved: list[int]) -> None:
        """Columns that met a non-number leave the fast ones; those credit
        the rows counted together first."""
        for k in self.fast:
            self.numbers[k] += self._fast_rows
        self._fast_rows = 0
        gone = set(moved)  # a row may move every column at once
        self.fast = [k for k in self.fast if k not in gone]
        self.slow = sorted(self.slow + moved)
        self._fast_get = _getter(self.fast)

    def finish(self) -> None:
        """Credit the fast columns with the rows counted together, at a
        file's end."""
        self._move([])


def _scan(
    index: int, source: _Source, scan: _Scan, labels: _Labels, missing: _Missing
) -> None:
    """Pass over one file's rows (`sources[index]`): field counts, rows
    without a label (dropped, in `scan`), missing feature values (gathered in
    `missing`), the labels checked row by row, and the features counted."""
    get_features, get_labels = _getter(source.features), _getter(source.labels)
    dropped: list[int] = []
    dropped_lines: list[int] = []
    total = 0
    for i, line, test, row in source.rows():
        total += 1
        label_cells = list(map(str.strip, get_labels(row)))
        if not _MISSING_FORMS.isdisjoint(label_cells):
            dropped.append(i)
            dropped_lines.append(line)
            continue
        cells = list(map(str.strip, get_features(row)))
        if not _MISSING_FORMS.isdisjoint(cells):
            missing.add(source.path, line, source.missing(row))
        scan.row(index, line, test, cells)
        labels.scan(source.path, line, test, label_cells)
    scan.finish()
    scan.total.append(total)
    scan.dropped.append(dropped)
    scan.dropped_lines.append(dropped_lines[:_MISSING_LINES])


def _check_rows(sources: Sequence[_Source], scan: _Scan) -> None:
    """Each file must hold data rows with a label (a split file's were
    counted already), and the training split some."""
    for k, source in enumerate(sources):
        test = source.test
        if source.held is None and not scan.rows[test]:
            if scan.dropped[k]:
                raise BuildError(f"{source.path}: no data row has a label")
            raise BuildError(f"{source.path}: no data rows")
    for test, split in ((False, "training"), (True, "test")):
        if not scan.rows[test]:
            raise BuildError(
                f"{sources[0].path}: no row of the {split} split has a label"
            )


@dataclass(frozen=True)
class _Kind:
    """A feature column as the scan settled it: a number, a category (with
    its vocabulary) or a date (with its format)."""

    name: str
    kind: str  #: "number", "category" or "date"
    vocabulary: tuple[str, ...] = ()
    format: str = ""


#: The model inputs each kind of column becomes.
_WIDTHS = {"number": 1, "category": 1, "date": len(DATE_PARTS)}
#: The declared kinds whose values are read as text.
_TEXT_KINDS = frozenset({"categorical", "date"})


def _settle_columns(
    sources: Sequence[_Source],
    features: Sequence[str],
    scan: _Scan,
    missing: _Missing,
    policy: Missing,
) -> list[_Kind]:
    """Each feature column's kind, a text column's vocabulary and a date
    column's format; refuses the first non-number in a numeric column, a
    column without values, missing values their policy refuses, and text
    columns whose values are nearly all distinct."""
    declared = [kind.kind for kind in sources[0].kinds]
    numeric = [
        declared[k] == "numeric"
        or (
            declared[k] not in _TEXT_KINDS
            and 2 * scan.numbers[k] >= scan.numbers[k] + scan.texts[k]
        )
        for k in range(scan.size)
    ]
    bad = [
        (found, k)
        for k, found in enumerate(scan.first_text)
        if numeric[k] and found is not None
    ]
    if bad:
        (source, line, cell), k = min(bad)
        why = (
            "train.columns says numeric"
            if declared[k] == "numeric"
            else "the column's other values are numbers"
        )
        raise _at(
            sources[source].path, line, features[k], f"{cell!r} is not a number ({why})"
        )
    _check_policies(sources[0].path, features, numeric, missing, policy)
    empty = [
        name for k, name in enumerate(features) if not scan.numbers[k] + scan.texts[k]
    ]
    if empty:
        shown = some_of([repr(name) for name in empty], limit=8)
        raise BuildError(
            f"{sources[0].path}: {_plural(len(empty), 'feature column')} without a "
            f"value in the training rows: {shown}; leave it out (train.columns: "
            f"{{{empty[0]}: ignore}})"
        )
    mixed = [k for k in range(scan.size) if not numeric[k] and scan.numbers[k]]
    if mixed:
        _add_numbers(sources[0], mixed, scan.words, set(scan.dropped[0]))
    _refuse_identifiers(sources[0].path, features, numeric, declared, scan)
    kinds = []
    for k, name in enumerate(features):
        if numeric[k]:
            kinds.append(_Kind(name, "number"))
        elif declared[k] == "date":
            given = sources[0].kinds[k].format
            found = given or _date_format(sources[0].path, name, scan.words[k])
            kinds.append(_Kind(name, "date", format=found))
        else:
            kinds.append(_Kind(name, "category", tuple(sorted(scan.words[k]))))
    return kinds


def _check_policies(
    path: Path,
    features: Sequence[str],
    numeric: Sequence[bool],
    missing: _Missing,
    policy: Missing,
) -> None:
    """Each column's own policy must suit its kind, and missing values whose
    policy is error stop the build, all named at once."""
    kinds = dict(zip(features, numeric, strict=True))
    for name, chosen in policy.columns:
        if chosen in _NUMERIC_FILLS and not kinds[name]:
            raise BuildError(
                f"{path}: train.missing.columns: {name!r} is a text column, which "
                f"{chosen} cannot fill: own_category, most_frequent or error"
            )
        if chosen in _CATEGORY_FILLS and kinds[name]:
            raise BuildError(
                f"{path}: train.missing.columns: {name!r} is a numeric column, "
                f"which {chosen} cannot fill: median, mean, zero or error"
            )
    found = missing.columns()
    missing.check(
        {
            name
            for name in features
            if name in found and policy.policy(name, kinds[name]) == "error"
        }
    )


_NUMERIC_FILLS = frozenset({"median", "mean", "zero"})
_CATEGORY_FILLS = frozenset({"own_category", "most_frequent"})


#: A text column is refused as a category where its training rows hold at
#: least ID_VALUES distinct values, and that many are at least ID_SHARE of
#: the rows: an ID, a date or free text, whose one-hot encoding would only
#: memorize rows.
ID_VALUES = 50
ID_SHARE = 0.9


def _refuse_identifiers(
    path: Path,
    features: Sequence[str],
    numeric: Sequence[bool],
    declared: Sequence[str],
    scan: _Scan,
) -> None:
    """One error naming every undeclared text column whose values are nearly
    all distinct (ID_VALUES, ID_SHARE)."""
    rows = scan.rows[False]
    found = [
        (name, len(scan.words[k]), any_date_format(scan.words[k]))
        for k, name in enumerate(features)
        if not numeric[k]
        and not declared[k]
        and len(scan.words[k]) >= max(ID_VALUES, ID_SHARE * rows)
    ]
    if not found:
        return
    lines = [
        f"  - {name!r}: {distinct:,} distinct values in {_plural(rows, 'training row')}"
        + (f"; they read as dates ({form})" if form else "")
        for name, distinct, form in found
    ]
    first = found[0][0]
    raise BuildError(
        f"{path}: {_plural(len(found), 'text column')} whose values are nearly "
        "all distinct, which l2compile does not one-hot encode by inference:\n"
        + "\n".join(lines)
        + "\nsuch a column is an ID, a date or free text: a category per row "
        "only memorizes the rows. Say what it is in train.columns: ignore (an "
        "ID or free text), date (year, month and weekday become inputs) or "
        f"categorical (one-hot it anyway), e.g. train.columns: {{{first}: ignore}}"
    )


def _add_numbers(
    source: _Source, columns: list[int], words: list[set[str]], dropped: set[int]
) -> None:
    """Another pass, for text columns that also hold numbers: the scan kept
    only their non-numbers, so that numeric columns never kept their values."""
    get = _getter([source.features[k] for k in columns])
    for i, _, test, row in source.rows():
        if not test and i not in dropped:
            for k, cell in zip(columns, get(row), strict=True):
                cell = cell.strip()
                if cell not in _MISSING_FORMS:
                    words[k].add(cell)


# --- dates ----------------------------------------------------------------------------


def _date_format(path: Path, name: str, values: set[str]) -> str:
    """The one common, unambiguous form (DATE_FORMATS) that every training
    value of a date column fits."""
    found = any_date_format(values)
    if found:
        return found
    bad = sorted(values)[:3]
    raise BuildError(
        f"{path}: column {name!r} (train.columns: date): its training values fit "
        f"no common, unambiguous date form ({', '.join(map(repr, bad))}, ...); give "
        f"its format, as strptime reads it: train.columns: {{{name}: {{type: date, "
        "format: '%d/%m/%Y'}}"
    )


# --- labels ---------------------------------------------------------------------------


class _Labels(ABC):
    """How a task's label columns are checked and converted."""

    dtype: type[np.generic]

    def __init__(self, task: Task, names: tuple[str, ...]) -> None:
        self.task = task
        self.names = names
        self.classes: tuple[str, ...] = ()

    def shape(self, rows: int) -> tuple[int, ...]:
        return (rows,) if len(self.names) == 1 else (rows, len(self.names))

    @abstractmethod
    def scan(self, path: Path, line: int, test: bool, cells: list[str]) -> None:
        """Check one row's stripped, present label values, where they can be
        checked alone."""

    def settle(self, path: Path) -> None:
        """Check what needs every training row (`path`: the train file)."""
        return None  # most tasks' labels are checked a row at a time

    @abstractmethod
    def convert(self, path: Path, line: int, test: bool, cells: list[str]) -> Any:
        """One row's labels as y holds them."""


class _Targets(_Labels):
    """Regression: every value a number."""

    dtype = np.float32

    def scan(self, path: Path, line: int, test: bool, cells: list[str]) -> None:
        for name, cell in zip(self.names, cells, strict=True):
            if not is_number(cell):
                raise _at(
                    path,
                    line,
                    name,
                    f"{cell!r} is not a number (task {self.task.name} predicts "
                    "numbers)",
                )

    def convert(self, path: Path, line: int, test: bool, cells: list[str]) -> Any:
        return float(cells[0]) if len(cells) == 1 else list(map(float, cells))


class _ZeroOne(_Labels):
    """Multilabel: every value the number 0 or 1."""

    dtype = np.float32

    def shape(self, rows: int) -> tuple[int, ...]:
        return (rows, len(self.names))

    def scan(self, path: Path, line: int, test: bool, cells: list[str]) -> None:
        if _ZERO_ONE.issuperset(cells):
            return
        for name, cell in zip(self.names, cells, strict=True):
            if not is_number(cell) or float(cell) not in (0.0, 1.0):
                raise _at(
                    path,
                    line,
                    name,
                    f"{_shown(cell)} is not a label of task {self.task.name} (0 or 1)",
                )

    def convert(self, path: Path, line: int, test: bool, cells: list[str]) -> Any:
        return list(map(float, cells))


_ZERO_ONE = frozenset(("0", "1"))


class _Classes(_Labels):
    """Binary and classification: one column, of class ids or class names,
    as the training rows decide."""

    dtype = np.int64

    def __init__(self, task: Task, names: tuple[str, ...]) -> None:
        super().__init__(task, names)
        self.binary = task.bool_labels  # class ids 0 and 1, of one output
        self.needed = task.class_count
        self.seen: set[str] = set()  #: distinct training values, bounded
        self.overflow = False  #: more distinct values than `seen` keeps
        self.numbers = True  #: every training value is a number
        self.first_bad: tuple[int, str] | None = None  #: not an id, in training
        self.ids: dict[str, int] = {}  #: value -> y, once settled

    def scan(self, path: Path, line: int, test: bool, cells: list[str]) -> None:
        cell = cells[0]
        if test or cell in self.seen:
            return  # a value's checks depend on the value alone
        if len(self.seen) < self.needed + _EXTRA_LABELS:
            self.seen.add(cell)
        else:
            self.overflow = True
        if not is_number(cell):
            self.numbers = False
        elif self.first_bad is None and self._id(cell) is None:
            self.first_bad = (line, cell)

    def _id(self, cell: str) -> int | None:
        """A number's label, if it is one the task takes."""
        value = float(cell)
        if self.binary:
            return int(value) if value in (0.0, 1.0) else None
        if value.is_integer() and 0 <= value < self.needed:
            return int(value)
        return None

    def _not_an_id(self, cell: str) -> str:
        if self.binary:
            return f"{_shown(cell)} is not a label of task binary (0 or 1)"
        return (
            f"{_shown(cell)} is not a class id (0 to {self.needed - 1}: the last "
            f"layer has {_plural(self.needed, 'unit')})"
        )

    def settle(self, path: Path) -> None:
        name = self.names[0]
        if self.numbers:
            if self.first_bad is not None:
                line, cell = self.first_bad
                raise _at(path, line, name, self._not_an_id(cell))
            return
        classes = sorted(self.seen)
        odd = [value for value in classes if not value.isprintable()]
        if odd:
            raise BuildError(
                f"{path}: column {name!r} holds the class name {odd[0]!r}; a class "
                "name becomes a line of labels.txt: it must be printable, on one line"
            )
        shown = (
            ", ".join(classes[:8]) + " and more"
            if self.overflow
            else some_of(classes, limit=8)
        )
        count = f"more than {len(classes):,}" if self.overflow else f"{len(classes):,}"
        if self.binary and (self.overflow or len(classes) != 2):
            raise BuildError(
                f"{path}: column {name!r} has {count} "
                f"{'value' if count == '1' else 'values'} in the training rows "
                f"({shown}); task binary needs two (0 and 1, or two names)"
            )
        if self.overflow or len(classes) != self.needed:
            raise BuildError(
                f"{path}: column {name!r} has {count} "
                f"{'class' if count == '1' else 'classes'} in the training rows "
                f"({shown}), but the last layer has {_plural(self.needed, 'unit')}"
            )
        self.classes = tuple(classes)
        self.ids = {value: i for i, value in enumerate(classes)}

    def convert(self, path: Path, line: int, test: bool, cells: list[str]) -> Any:
        cell = cells[0]
        found = self.ids.get(cell)
        if found is not None:
            return found
        if self.classes:
            raise _at(
                path,
                line,
                self.names[0],
                f"{cell!r} is not among the training rows' classes "
                f"({some_of(list(self.classes), limit=8)})",
            )
        found = self._id(cell) if is_number(cell) else None
        if found is None:
            raise _at(path, line, self.names[0], self._not_an_id(cell))
        if len(self.ids) < self.needed + _EXTRA_LABELS:
            self.ids[cell] = found  # "1" and "1.0" are both 1
        return found


def _shown(cell: str) -> str:
    """A label value for a message: a number as written, else quoted."""
    return cell if is_number(cell) else repr(cell)


def _labels_for(task: Task, names: tuple[str, ...]) -> _Labels:
    """The task's labels, refusing label columns it cannot read."""
    columns = f"{_plural(len(names), 'column')} ({', '.join(names)})"
    if not task.output_per_column:
        if len(names) != 1:
            raise BuildError(
                f"train.label names {columns}; task {task.name} reads one label column"
            )
        return _Classes(task, names)
    if task.outputs and len(names) != task.outputs:
        raise BuildError(
            f"train.label names {columns}, but the model outputs "
            f"{_plural(task.outputs, 'value')}: task {task.name} needs one label "
            "column per output"
        )
    if task.bool_labels:
        return _ZeroOne(task, names)
    return _Targets(task, names)


# --- the model's input, and memory ----------------------------------------------------


def _check_width(
    path: Path, model_input: ModelInput, columns: Sequence[datasets.Column]
) -> None:
    """input.shape must hold a sample after the model's one-hot encoding."""
    width = sum(column.width for column in columns)
    if tuple(model_input.shape) == (width,):
        return
    shape = list(model_input.shape)
    numeric = sum(column.width for column in columns if column.vocabulary is None)
    texts = [column for column in columns if column.vocabulary is not None]
    if not texts:
        what = (
            "no feature columns"
            if not numeric
            else "one numeric column"
            if numeric == 1
            else "numeric columns"
        )
        raise BuildError(
            f"input.shape {shape} must equal the number of feature values, but "
            f"{path} gives {width} ({what})"
        )
    parts = [
        f"{column.name!r} one-hot as {column.width:,} "
        f"({_plural(column.width - 1, 'category', 'categories')}"
        " and an out-of-vocabulary slot)"
        for column in texts[:8]
    ]
    if len(texts) > 8:
        rest = texts[8:]
        parts.append(
            f"{len(rest)} more text columns one-hot as "
            f"{sum(c.width for c in rest):,} in all"
        )
    described = ", ".join(parts)
    if numeric:
        inputs = sum(column.vocabulary is None for column in columns)
        what = (
            _plural(numeric, "numeric column")
            if numeric == inputs
            else f"{numeric:,} numeric values (numbers, date parts and was-missing "
            "inputs)"
        )
        described = f"{what}, and {described}"
    raise BuildError(
        f"input.shape {shape} must equal the number of feature values after "
        f"encoding, but {path} gives {width:,}: {described}"
    )


def _check_memory(
    path: Path,
    width: int,
    labels: _Labels,
    rows: dict[bool, int],
) -> None:
    """Refuse arrays that cannot fit in memory before they are allocated, as
    the other recipes do (`datasets.check_memory`), from their shapes."""
    headers = {}
    for test, split in ((False, "train"), (True, "test")):
        headers[f"x_{split}"] = datasets.ArrayHeader(
            (rows[test], width), np.dtype(np.float32)
        )
        headers[f"y_{split}"] = datasets.ArrayHeader(
            tuple(labels.shape(rows[test])), np.dtype(labels.dtype)
        )
    datasets.check_memory(str(path), headers)


# --- the fill -------------------------------------------------------------------------


class _Ids(dict[str, int]):
    """A text column's ids: 0 for a value not in its vocabulary."""

    def __missing__(self, key: str) -> int:
        return 0


@dataclass
class _Split:
    """One split's arrays, filled a block of rows at a time."""

    x: npt.NDArray[np.float32]
    y: npt.NDArray[Any]
    numeric: list[int]  #: x's numeric columns
    text: list[int]  #: x's text columns
    dates: list[int]  #: x's date columns (each the first of DATE_PARTS)
    filled: int = 0
    numbers: list[list[float]] = field(default_factory=list)
    ids: list[list[int]] = field(default_factory=list)
    parts: list[list[float]] = field(default_factory=list)
    labels: list[Any] = field(default_factory=list)

    def add(
        self,
        numbers: list[float],
        ids: list[int],
        parts: list[float],
        label: Any,
        path: Path,
    ) -> None:
        self.numbers.append(numbers)
        self.ids.append(ids)
        self.parts.append(parts)
        self.labels.append(label)
        if len(self.labels) >= _BLOCK_ROWS:
            self.flush(path)

    def flush(self, path: Path) -> None:
        start, end = self.filled, self.filled + len(self.labels)
        if end > len(self.x):
            raise _changed(path)
        if self.numeric:
            self.x[start:end, self.numeric] = np.array(self.numbers, np.float32)
        if self.text:
            self.x[start:end, self.text] = np.array(self.ids, np.float32)
        if self.dates:
            self.x[start:end, self.dates] = np.array(self.parts, np.float32)
        self.y[start:end] = np.array(self.labels, self.y.dtype)
        self.filled = end
        self.numbers, self.ids, self.parts, self.labels = [], [], [], []


def _number(cell: str) -> float:
    """A present number's value, NaN for a missing one."""
    return math.nan if cell in _MISSING_FORMS else float(cell)


class _Dates(dict[str, tuple[float, ...]]):
    """A date column's values' model inputs, each parsed once: NaN for a
    missing value."""

    def __init__(
        self, path: Path, kind: _Kind, whose: str = "the training values' form"
    ) -> None:
        super().__init__((form, _NO_DATE) for form in _MISSING_FORMS)
        self.path, self.kind = path, kind
        self.whose = whose  #: where the format came from, for messages

    def at(self, line: int, cell: str) -> tuple[float, ...]:
        found = self.get(cell)
        if found is None:
            try:
                found = self[cell] = date_parts(cell, self.kind.format)
            except ValueError:
                raise _at(
                    self.path,
                    line,
                    self.kind.name,
                    f"{cell!r} is not a date of the form {self.kind.format!r} "
                    f"({self.whose})",
                ) from None
        return found


_NO_DATE = (math.nan,) * len(DATE_PARTS)


def _whose(declared: ColumnType) -> str:
    """Where a date column's format came from, for messages."""
    if declared.format:
        return "train.columns' format"
    return "the training values' form"


def _fill(
    sources: Sequence[_Source],
    kinds: Sequence[_Kind],
    labels: _Labels,
    rows: dict[bool, int],
    width: int,
) -> tuple[dict[bool, npt.NDArray[Any]], dict[bool, npt.NDArray[Any]]]:
    """The last pass: the values, converted into arrays allocated once; a
    date column's DATE_PARTS take its place and the places after it."""
    at = list(itertools.accumulate((_WIDTHS[k.kind] for k in kinds), initial=0))
    numeric = [k for k, c in enumerate(kinds) if c.kind == "number"]
    text = [k for k, c in enumerate(kinds) if c.kind == "category"]
    dates = [k for k, c in enumerate(kinds) if c.kind == "date"]
    vocabularies = [
        _Ids((word, i + 1) for i, word in enumerate(kinds[k].vocabulary)) for k in text
    ]
    splits = {
        test: _Split(
            np.empty((rows[test], width), np.float32),
            np.empty(labels.shape(rows[test]), labels.dtype),
            [at[k] for k in numeric],
            [at[k] for k in text],
            [at[k] + p for k in dates for p in range(len(DATE_PARTS))],
        )
        for test in (False, True)
    }
    for source in sources:
        get_numbers = _getter([source.features[k] for k in numeric])
        get_text = _getter([source.features[k] for k in text])
        get_dates = _getter([source.features[k] for k in dates])
        get_labels = _getter(source.labels)
        readers = [
            _Dates(source.path, kinds[k], _whose(source.kinds[k])) for k in dates
        ]
        for _, line, test, row in source.rows():
            cells = list(map(str.strip, get_labels(row)))
            if not _MISSING_FORMS.isdisjoint(cells):
                continue  # dropped: the scan counted it
            # The scan checked every value: these conversions cannot fail.
            numbers = list(map(_number, map(str.strip, get_numbers(row))))
            ids = [
                vocabulary[cell.strip()]
                for vocabulary, cell in zip(vocabularies, get_text(row), strict=True)
            ]
            parts = [
                part
                for reader, cell in zip(readers, get_dates(row), strict=True)
                for part in reader.at(line, cell.strip())
            ]
            label = labels.convert(source.path, line, test, cells)
            splits[test].add(numbers, ids, parts, label, source.path)
    for split in splits.values():
        split.flush(sources[0].path)
        if split.filled != len(split.x):
            raise _changed(sources[-1].path)
    return (
        {test: split.x for test, split in splits.items()},
        {test: split.y for test, split in splits.items()},
    )


def _columns(
    kinds: Sequence[_Kind], x: npt.NDArray[np.float32], policy: Missing
) -> tuple[datasets.Column, ...]:
    """The model's inputs, with what a missing value of each becomes: from
    the training rows `x`, as `policy` says."""
    found: list[datasets.Column] = []
    column = np.empty(len(x), np.float32)  #: one input's values, in a row
    for kind in kinds:
        rule = policy.policy(kind.name, kind.kind != "category")
        if kind.kind == "category":
            fill = None
            if rule == "most_frequent":
                ids = x[:, len(found)].astype(np.int64)
                counts = np.bincount(ids, minlength=len(kind.vocabulary) + 1)
                counts[0] = 0  # slot 0 holds missing and unseen values
                fill = float(np.argmax(counts)) if counts.any() else None
            found.append(
                datasets.Column(kind.name, kind.vocabulary, fill=fill, policy=rule)
            )
            continue
        parts = DATE_PARTS if kind.kind == "date" else ("",)
        for part in parts:
            np.copyto(column, x[:, len(found)])
            gaps = bool(np.isnan(column).any())
            found.append(
                datasets.Column(
                    kind.name,
                    fill=fill_value(rule, column, gaps=gaps, scratch=True),
                    indicator=policy.indicator and gaps,
                    policy=rule,
                    part=part,
                    format=kind.format,
                )
            )
    return tuple(found)


def fill_value(
    rule: str,
    values: npt.NDArray[np.float32],
    *,
    gaps: bool = True,
    scratch: bool = False,
) -> float | None:
    """What a missing number becomes under `rule`, from a column's training
    values (NaN where missing: none where not `gaps`); None under error.
    `scratch`: `values` may be reordered. The generated module computes it
    the same way."""
    if rule == "zero":
        return 0.0
    if rule == "error":
        return None
    present = values[~np.isnan(values)] if gaps else values
    if not len(present):
        return 0.0
    if rule == "mean":
        return float(np.mean(present))
    return float(np.median(present, overwrite_input=scratch or gaps))


# --- new rows, for predict ------------------------------------------------------------


def read_inputs(
    path: Path,
    inputs: Sequence[dict[str, Any]],
    allowed: Sequence[str] | None = (),
    records: Records | None = None,
) -> tuple[list[int], npt.NDArray[np.float32]]:
    """New rows of a table, without labels, as a trained model reads them:
    `inputs` as its columns.json lists them (numbers, NaN where missing;
    category ids, 0 for a missing or unseen value; a date's DATE_PARTS), with
    the file's rules for reading. Each row's key is the line it starts on.
    Every input's column must be in the header, and every header column must
    be one of them or of `allowed` (the labels, the ignored columns; None:
    any column may stay, as where train.features picked the model's)."""
    records = records or csv_records
    header = _header(path, records)
    places = {name: k for k, name in enumerate(header)}
    names = list(dict.fromkeys(str(column["name"]) for column in inputs))
    for name in names:
        if name not in places:
            guess = closest(name, places)
            hint = f"; did you mean {guess!r}?" if guess else ""
            raise BuildError(
                f"{path}: no column {name!r}, which the model reads{hint} (its "
                f"columns: {some_of(names, limit=8)})"
            )
    known = {*names, *(allowed or ())}
    extra = [name for name in header if name not in known and allowed is not None]
    if extra:
        raise BuildError(
            f"{path}: {_plural(len(extra), 'column')} the model does not read: "
            f"{some_of([repr(n) for n in extra], limit=8)}; remove "
            f"{'it' if len(extra) == 1 else 'them'} (the model reads "
            f"{some_of(names, limit=8)})"
        )
    readers = [_reader(path, column) for column in inputs]
    at = [places[str(column["name"])] for column in inputs]
    keys: list[int] = []
    values: list[list[float]] = []
    for line, row in itertools.islice(records(path), 1, None):
        if len(row) != len(header):
            raise BuildError(
                f"{path}: line {line} has {_plural(len(row), 'field')}, "
                f"but the header has {_plural(len(header), 'column')}"
            )
        keys.append(line)
        values.append(
            [read(line, row[k].strip()) for read, k in zip(readers, at, strict=True)]
        )
    return keys, np.array(values, np.float32).reshape(len(keys), len(inputs))


#: A missing value where the model was trained to fill none.
_UNFILLED = (
    "missing value, which the model does not fill (it was built with "
    "train.missing: error for this column)"
)


def _reader(path: Path, column: dict[str, Any]) -> Callable[[int, str], float]:
    """How one input's value is read from its cell (and the cell's line)."""
    name = str(column["name"])
    refuses = column.get("missing") == "error"  # trained without a fill
    if column.get("kind") == "category":
        ids = {str(word): i + 1 for i, word in enumerate(column.get("vocabulary", ()))}

        def category(line: int, cell: str) -> float:
            if refuses and cell in _MISSING_FORMS:
                raise _at(path, line, name, _UNFILLED)
            return ids.get(cell, 0)

        return category
    date = column.get("date")
    if isinstance(date, dict):
        part = DATE_PARTS.index(str(date["part"]))
        form = str(date["format"])
        dates = _Dates(path, _Kind(name, "date", format=form), "the model's")
        return lambda line, cell: dates.at(line, cell)[part]

    def number(line: int, cell: str) -> float:
        if cell in _MISSING_FORMS:
            if refuses:
                raise _at(path, line, name, _UNFILLED)
            return math.nan
        if not is_number(cell):
            raise _at(
                path, line, name, f"{cell!r} is not a number (the model reads one)"
            )
        return float(cell)

    return number
