"""A fast path for the csv recipe's reader: `tables.read_csv`'s rules, read
with Arrow.

    read_fast(recipe, train, test, seed=..., model_input=...) -> Dataset

gives what `tables.read_csv` gives, bit for bit, or raises `Fallback` where
it cannot be sure to: every file the Python reader refuses (it then names
the line and the column), and the clean files whose reading here could
differ from it. The caller runs `tables.read_csv` on a Fallback.

How
    A first pass over the raw bytes counts the data rows as `csv.reader`
    sees them (blank lines left out, quoted newlines inside their row) and
    checks that the file is UTF-8. In a window without quotes or CRs it
    counts line ends, and does not look for blank lines inside it: where
    Arrow then gives fewer rows, there were some, and the file is read
    again with them counted. The count gives the seeded split before a row
    is read, so one pass with Arrow fills arrays allocated once: the file
    is cut into pieces of whole records (256 KiB), each parsed alone by
    `pyarrow.csv.read_csv` on one of _AHEAD threads (nothing read further
    ahead, which keeps memory to the arrays); each piece's training rows
    count towards the columns' kinds and vocabularies, and its rows go
    straight to their split.

    A feature column's kind is guessed from its first block: NUMBER mode
    or TEXT mode (its distinct stripped values numbered in the order met:
    codes). Once a column is in number mode, Arrow's parser reads its cells
    as numbers (float64, the missing forms as null); a piece with a cell it
    cannot read so is parsed as text, and so is a block with a value that is
    not finite in float32. As text, a number-mode column's cells are
    converted by Arrow's cast, and cells the cast refuses go through
    `float`'s exact rules. At the end the training rows' counts settle the
    kinds: a text-mode column that is text has its codes replaced by its
    ids in the sorted vocabulary (a numeric one falls back: its first block
    held a non-number); a number-mode column that is text is read again
    alone, in text mode.

Exactly the Python reader's
    Cells are stripped as `str.strip` does (Arrow trims only ASCII
    whitespace here, and cells with other bytes are read by Python); Arrow's
    cast gives a finite number only for the decimal forms `float` reads the
    same (FAST; any other result sends the block's column to the exact
    rules); so does its parser, reading a number-mode column (a null only
    for a missing form, written exactly); the counted rows must be the rows
    Arrow gives. A quote that could be read otherwise (not at a field's
    start or end) falls back, and so does a piece where a field in any
    column could be longer than `csv.field_size_limit()`.
"""

from __future__ import annotations

import codecs
import collections
import csv
import functools
import itertools
import math
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv

from l2compile import datasets, tables
from l2compile.dates import DATE_PARTS, any_date_format, date_parts
from l2compile.errors import BuildError
from l2compile.recipes import ModelInput
from l2compile.sources.base import Source as Recipe

__all__ = ["Fallback", "read_fast"]


class Fallback(Exception):
    """The fast path cannot give the Python reader's result for certain:
    read the file with `tables.read_csv`, which gives it or the error."""


class _Recount(Exception):
    """A file's guessed row count counted blank lines: read it again with
    the rows counted exactly."""


#: Bytes read at a time by the first pass.
_PIECE = 1 << 20
#: Pieces parsed at once, each on its own thread, while the caller uses
#: the one before them (Arrow's parser leaves the GIL).
_AHEAD = int(os.environ.get("AHEAD") or max(2, min(8, os.cpu_count() or 1)))
#: Bytes Arrow reads at a time, whole records.
_CHUNK = 1 << 18
#: The most bytes of one row the fast path reads (tables.MAX_ROW_CHARS is
#: characters, up to 4 bytes each): a longer row falls back.
_MOST_ROW_BYTES = 1 << 23
#: Distinct values a text-mode column may take: codes are exact in float32.
_MOST_CODES = 1 << 20
_BOM = codecs.BOM_UTF8
#: Decimal numbers: Arrow's cast reads each exactly as `float` does.
_FAST = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
#: Bytes after which, or before which, a quote keeps Python's reading of
#: it and a parity count of quotes in step.
_FIELD_EDGE = frozenset(b',\r\n"')
#: Bytes that `str.strip` may remove and Arrow's ASCII trim keeps: non-ASCII
#: bytes and the ASCII separators \x1c-\x1f.
_ODD_BYTES = np.zeros(256, np.bool_)
_ODD_BYTES[0x80:] = True
_ODD_BYTES[0x1C:0x20] = True
#: The declared kinds of a feature column the fast path reads ("": none).
_DECLARED = frozenset({"", "numeric", "categorical", "date"})


def read_fast(
    recipe: Recipe,
    train: Path,
    test: Path | None,
    *,
    seed: int,
    model_input: ModelInput,
) -> datasets.Dataset:
    """Read and check the csv recipe's data as `tables.read_csv` does, or
    raise Fallback."""
    try:
        try:
            return _read(recipe, train, test, seed, model_input, exact=False)
        except _Recount:
            pass  # out of the handler first: its frames hold the arrays
        return _read(recipe, train, test, seed, model_input, exact=True)
    except (BuildError, pa.ArrowException, OSError, ValueError, csv.Error) as exc:
        raise Fallback(f"{type(exc).__name__}: {exc}") from exc


# --- Arrow arrays without pandas ---------------------------------------------------
# pa.array, pa.scalar and Array.to_numpy import pandas where it is installed
# (44 MiB): arrays are built from buffers and read as buffers.


def _strings(words: Sequence[str]) -> pa.Array:
    data = [word.encode() for word in words]
    offsets = np.cumsum([0] + [len(d) for d in data], dtype=np.int32)
    return pa.StringArray.from_buffers(
        len(data), pa.py_buffer(offsets), pa.py_buffer(b"".join(data))
    )


def _bools(mask: npt.NDArray[np.bool_]) -> pa.Array:
    bits = np.packbits(mask, bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(mask), [None, pa.py_buffer(bits)])


def _mask(array: pa.Array) -> npt.NDArray[np.bool_]:
    """A null-free boolean array as numpy."""
    bits = np.frombuffer(array.buffers()[1], np.uint8)
    end = array.offset + len(array)
    found = np.unpackbits(bits, count=end, bitorder="little")[array.offset :]
    return found.view(np.bool_)


def _view(array: pa.Array, dtype: type[np.generic]) -> npt.NDArray[Any]:
    """A null-free numeric array as numpy, without a copy."""
    if array.null_count:
        raise Fallback("a null where none can be")
    size = np.dtype(dtype).itemsize
    return np.frombuffer(
        array.buffers()[1], dtype, count=len(array), offset=array.offset * size
    )


def _values(array: pa.Array) -> npt.NDArray[np.float64]:
    """A float64 array's values as numpy, without a copy; a null's value
    is not defined."""
    return np.frombuffer(
        array.buffers()[1], np.float64, count=len(array), offset=array.offset * 8
    )


def _valid(array: pa.Array) -> npt.NDArray[np.bool_]:
    """Which cells of an array are not null."""
    bits = array.buffers()[0]
    if bits is None:
        return np.ones(len(array), np.bool_)
    end = array.offset + len(array)
    found = np.unpackbits(np.frombuffer(bits, np.uint8), count=end, bitorder="little")
    return found[array.offset :].view(np.bool_)


def _bytes_of(array: pa.Array) -> npt.NDArray[np.uint8]:
    """The bytes a string array's cells hold, end to end."""
    bounds = np.frombuffer(
        array.buffers()[1], np.int32, count=len(array) + 1, offset=array.offset * 4
    )
    data = array.buffers()[2]
    if data is None:
        return np.zeros(0, np.uint8)
    return np.frombuffer(data, np.uint8)[bounds[0] : bounds[-1]]


_MISSING_ARROW = _strings(sorted(tables._MISSING_FORMS))
_NO_ROWS = pa.RecordBatch.from_arrays([], names=[])
#: Cells Arrow reads as null in a column it reads as numbers: exactly the
#: missing forms (a cell with spaces around one is not a number to Arrow,
#: and its piece is read as text).
_NULL_VALUES = sorted(tables._MISSING_FORMS)


def _pool() -> pa.MemoryPool:
    """jemalloc where the wheel has it: with mimalloc the reader's buffers,
    allocated on its I/O thread and freed here, stay cached (+23 MiB)."""
    try:
        return pa.jemalloc_memory_pool()
    except NotImplementedError:
        return pa.default_memory_pool()


_POOL = _pool()


# --- the first pass: rows, counted from the bytes -------------------------------------


@dataclass
class _Count:
    """Counting the records of a CSV file as `csv.reader` reads them."""

    exact: bool = True  #: look for blank lines inside a window
    records: int = 0  #: non-blank records ended so far
    quoted: int = 0  #: 1 inside a quoted field
    at_start: bool = True  #: the next byte starts a record
    prev: int = -1  #: the byte before the next one (-1: the file's first)
    guessed: bool = False  #: a window's blank lines were not looked for

    def window(self, buf: bytearray, end: int, after: int) -> None:
        """Count buf[:end], which never ends in a CR; `after`: the byte
        after it (-1 at the file's end)."""
        if not end:
            return
        if (
            not self.quoted
            and buf.find(b'"', 0, end) < 0
            and buf.find(b"\r", 0, end) < 0
            and not buf.endswith(b"\n\n", 0, end)
            and (not self.exact or buf.find(b"\n\n", 0, end) < 0)
        ):  # the usual window: a record on each line (inexact: blank
            # lines inside it, which the search for them costs, counted)
            blank = self.at_start and buf[0] == 10
            self.records += buf.count(b"\n", 0, end) - blank
            self.at_start = buf[end - 1] == 10
            self.guessed |= not self.exact
        else:
            self._numpy(np.frombuffer(buf, np.uint8, count=end), after)
        self.prev = buf[end - 1]

    def _numpy(self, b: npt.NDArray[np.uint8], after: int) -> None:
        quote = b == 34
        flips = np.cumsum(quote, dtype=np.int64)
        inside = ((flips - quote + self.quoted) & 1).astype(np.bool_)
        if quote.any():
            self._check_quotes(b, np.flatnonzero(quote), inside, after)
        lf, cr = b == 10, b == 13
        cr_end = cr.copy()
        cr_end[:-1] &= ~lf[1:]
        cr_end[-1] &= after != 10
        ends = np.flatnonzero((lf | cr_end) & ~inside)
        crlf = np.zeros(len(ends), np.bool_)
        past = ends > 0
        crlf[past] = lf[ends[past]] & cr[ends[past] - 1]
        starts = ends - crlf
        before = np.concatenate(([-1 if self.at_start else -2], ends[:-1]))
        self.records += int(len(ends) - np.count_nonzero(starts == before + 1))
        self.at_start = bool(len(ends)) and ends[-1] == len(b) - 1
        if not len(ends) and len(b):
            self.at_start = False
        self.quoted = int((self.quoted + flips[-1]) & 1)

    def _check_quotes(
        self,
        b: npt.NDArray[np.uint8],
        at: npt.NDArray[np.intp],
        inside: npt.NDArray[np.bool_],
        after: int,
    ) -> None:
        """Each quote opens a field, closes one, or doubles one: a quote
        elsewhere is text to `csv.reader`, and counting quotes would fail."""
        edge = np.zeros(256, np.bool_)
        edge[list(_FIELD_EDGE)] = True
        prev = np.concatenate(([self.prev], b[:-1].astype(np.int64)))[at]
        nxt = np.concatenate((b[1:].astype(np.int64), [after]))[at]
        opening = ~inside[at]
        fine_prev = (prev < 0) | edge[np.maximum(prev, 0)]
        fine_next = (nxt < 0) | edge[np.maximum(nxt, 0)]
        if not (fine_prev[opening].all() and fine_next[~opening].all()):
            raise Fallback("a quote inside a field")

    def finish(self) -> int:
        if self.quoted:
            raise Fallback("a quoted field without its end")
        return self.records + (not self.at_start)


def _odd(buf: bytearray, start: int, size: int) -> bool:
    """Whether buf[start:start + size] holds a byte past ASCII."""
    return bool(np.frombuffer(buf, np.uint8, size, start).max() >= 0x80)


def _count_records(f: Any, exact: bool = True) -> tuple[int, bool]:
    """The file's non-blank records, header included, as `csv.reader`
    reads them, and whether that is a guess: not `exact`, blank lines
    inside a window of common lines are not looked for (a guess may count
    them; never too few). A file that is not UTF-8 falls back. One buffer
    is reused."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    count = _Count(exact)
    buf = bytearray(2 * _PIECE)
    held = 0  #: bytes carried to the next window
    first = True
    while True:
        view = memoryview(buf)
        got = f.readinto(view[held : held + _PIECE])
        end = held + got
        piece = view[held:end]
        if got and (decoder.getstate()[0] or _odd(buf, held, got)):
            decoder.decode(piece)  # UnicodeDecodeError: a ValueError
        if first and buf.startswith(_BOM):
            buf[: end - len(_BOM)], end = buf[len(_BOM) : end], end - len(_BOM)
        first = False
        if not got:
            decoder.decode(b"", final=True)
            count.window(buf, end, -1)
            return count.finish(), count.guessed
        cut = end - 1
        while cut > 0 and buf[cut - 1] == 13:  # a CR may be half of a CRLF
            cut -= 1
        if end - cut >= _PIECE:
            raise Fallback("a long run of CRs")
        count.window(buf, cut, buf[cut])
        held = end - cut
        buf[:held] = buf[cut:end]


# --- the plan: files, columns, splits -------------------------------------------------


@dataclass
class _File:
    """One file as it is read: its data rows, and which of them test."""

    path: Path
    rows: int  #: data rows, blank lines and the header left out
    held: npt.NDArray[np.bool_] | None  #: test_split: per data row, tests
    test: bool = False  #: every row tests (the test file)
    guessed: bool = False  #: `rows` may count blank lines (_count_records)
    keep: npt.NDArray[np.bool_] = field(init=False)  #: per data row, has a label

    def __post_init__(self) -> None:
        self.keep = np.zeros(self.rows, np.bool_)

    def tests(self, start: int, keep: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        """Which of the kept rows from data row `start` on test."""
        if self.held is None:
            return np.full(np.count_nonzero(keep), self.test)
        return self.held[start : start + len(keep)][keep]

    def split_rows(self, test: bool) -> int:
        """The most rows of one split this file gives."""
        if self.held is None:
            return self.rows if self.test == test else 0
        held = int(np.count_nonzero(self.held))
        return held if test else self.rows - held


class _Words:
    """A text-mode column's distinct stripped values, numbered from 1 in the
    order met (0: missing), with how often each comes in training and in
    any row, and whether each is a number."""

    def __init__(self) -> None:
        self.raw: dict[str, int] = {}  #: a cell as written -> its code
        self.codes: dict[str, int] = {}  #: a stripped value -> its code
        self.words: list[str] = [""]
        self.values: list[float] = [math.nan]  #: a number's value, else NaN
        self.train = np.zeros(1, np.int64)  #: per code, training rows
        self.every = np.zeros(1, np.int64)  #: per code, rows of either split

    def _code(self, cell: str) -> int:
        word = cell.strip()
        if tables.is_missing(word):
            code = 0
        else:
            code = self.codes.get(word, 0)
            if not code:
                code = self.codes[word] = len(self.words)
                self.words.append(word)
                self.values.append(float(word) if tables.is_number(word) else math.nan)
                if len(self.words) > _MOST_CODES:
                    raise Fallback("too many distinct values in a column")
        self.raw[cell] = code
        return code

    def encode(self, cells: pa.Array) -> npt.NDArray[np.int64]:
        """Each cell's code."""
        encoded = pc.dictionary_encode(cells, memory_pool=_POOL)
        found = encoded.dictionary.to_pylist()
        raw = self.raw
        lut = np.fromiter(
            (raw[w] if w in raw else self._code(w) for w in found), np.int64, len(found)
        )
        codes: npt.NDArray[np.int64] = lut[_view(encoded.indices, np.int32)]
        return codes

    def count(self, codes: npt.NDArray[np.int64], train: npt.NDArray[np.bool_]) -> None:
        size = len(self.words)
        self.train = _grown(self.train, size) + np.bincount(
            codes[train], minlength=size
        )
        self.every = _grown(self.every, size) + np.bincount(codes, minlength=size)

    def is_number(self) -> npt.NDArray[np.bool_]:
        """Per code, whether its value is a number (code 0: no)."""
        numbers: npt.NDArray[np.bool_] = ~np.isnan(np.array(self.values, np.float64))
        return numbers


def _grown(counts: npt.NDArray[np.int64], size: int) -> npt.NDArray[np.int64]:
    return np.concatenate((counts, np.zeros(size - len(counts), np.int64)))


@dataclass
class _Feature:
    """A feature column while it is read."""

    name: str
    place: int  #: its column in the file
    slot: int  #: its first input in x
    declared: str  #: "", "numeric", "categorical" or "date"
    format: str | None  #: a date's declared format
    mode: str = ""  #: "number" or "text" once its first block is read
    numbers: int = 0  #: number mode: training values that are numbers
    texts: int = 0  #: number mode: training values that are not
    stray: bool = False  #: number mode: a present non-number in any row
    missing: bool = False  #: a missing value in any row
    words: _Words = field(default_factory=_Words)


@dataclass
class _Plan:
    """What is read from the files, and where it goes."""

    header: tuple[str, ...]
    features: list[_Feature]
    label_places: tuple[int, ...]
    labels: Any  #: tables._Labels
    width: int
    label_words: _Words = field(default_factory=_Words)


def _features(recipe: Recipe, train: Path, header: tuple[str, ...]) -> list[_Feature]:
    """The feature columns, checked as `tables._sources` checks them."""
    places = {name: k for k, name in enumerate(header)}
    types = {column.name: column for column in recipe.types}
    features = tables.feature_columns(recipe, train, header, places)
    found, slot = [], 0
    for name in features:
        declared = types[name].kind if name in types else ""
        if declared not in _DECLARED:
            raise Fallback(f"feature {name!r} is declared {declared}")
        fmt = types[name].format if name in types else None
        found.append(_Feature(name, places[name], slot, declared, fmt))
        slot += len(DATE_PARTS) if declared == "date" else 1
    return found


def _files(
    recipe: Recipe, train: Path, test: Path | None, seed: int, exact: bool
) -> tuple[list[_File], tuple[str, ...]]:
    """The files to read, counted, with the train file's header."""
    header = tables._header(train, tables.csv_records)
    rows, guessed = _data_rows(train, exact)
    if test is not None:
        tables._same_header(
            test, tables._header(test, tables.csv_records), train, header
        )
        test_rows, test_guessed = _data_rows(test, exact)
        return [
            _File(train, rows, None, guessed=guessed),
            _File(test, test_rows, None, True, guessed=test_guessed),
        ], header
    assert recipe.test_split is not None
    flags = tables.held_out(train, rows, recipe.test_split, seed)
    return [_File(train, rows, flags, guessed=guessed)], header


def _data_rows(path: Path, exact: bool) -> tuple[int, bool]:
    with tables._open(path, binary=True) as f:
        records, guessed = _count_records(f, exact)
    if records < 1:
        raise Fallback("no header row")
    return records - 1, guessed


# --- the streamed pass ----------------------------------------------------------------


def _chunks(f: Any) -> Iterator[memoryview]:
    """The file's bytes in pieces of whole records, a BOM left out: Arrow
    reads each alone, so nothing is read ahead. A piece that holds no record
    end grows, to a bound (a row longer than it falls back)."""
    buf = bytearray(2 * _CHUNK)
    held = 0  #: bytes at buf's start of a record not yet ended
    first = True
    while True:
        if len(buf) - held < _CHUNK:
            if len(buf) >= _MOST_ROW_BYTES:
                raise Fallback("a row longer than the fast path reads")
            buf = buf[:held] + bytearray(len(buf))
        view = memoryview(buf)
        got = f.readinto(view[held : held + _CHUNK])
        end = held + got
        skip = 0
        if first:
            skip, first = len(_BOM) if buf.startswith(_BOM) else 0, False
        cut = _record_end(buf, end) if got else end
        if cut > skip:
            yield view[skip:cut]
        held = end - cut
        buf[:held] = buf[cut:end]
        if not got:
            return


def _record_end(buf: bytearray, end: int) -> int:
    """Where the last record that ends in buf[:end] ends (buf starts a
    record); 0 where none does."""
    if buf.find(b'"', 0, end) < 0:
        return max(buf.rfind(b"\n", 0, end), buf.rfind(b"\r", 0, end)) + 1
    b = np.frombuffer(buf, np.uint8, count=end)
    quote = b == 34
    outside = (np.cumsum(quote) - quote) % 2 == 0
    ends = np.flatnonzero(((b == 10) | (b == 13)) & outside)
    return int(ends[-1]) + 1 if len(ends) else 0


#: A block of rows: (data row of its first row, the rows, the same rows
#: with every column read as text).
_Block = tuple[int, pa.RecordBatch, Callable[[], pa.RecordBatch]]


def _blocks(
    file: _File,
    header: Sequence[str],
    include: Sequence[int],
    numbers: Callable[[], frozenset[int]] = frozenset,
) -> Iterator[_Block]:
    """Each block of the file, the header left out; every field within
    csv's bound. The columns `numbers()` names when a piece is sent off are
    read as numbers by Arrow (a missing form: null), unless a cell is not a
    number; every other column is text. The next _AHEAD pieces are parsed
    on other threads while the caller uses this one."""
    names = [f"c{k}" for k in range(len(header))]
    parse_options = pv.ParseOptions(newlines_in_values=True)
    options: dict[frozenset[int], pv.ConvertOptions] = {}

    def convert(typed: frozenset[int]) -> pv.ConvertOptions:
        if typed not in options:
            options[typed] = pv.ConvertOptions(
                column_types={
                    names[k]: pa.float64() if k in typed else pa.string()
                    for k in include
                },
                include_columns=[names[k] for k in include],
                strings_can_be_null=False,
                null_values=_NULL_VALUES,
            )
        return options[typed]

    def read(piece: bytes, options: pv.ConvertOptions) -> pa.RecordBatch:
        table = pv.read_csv(
            pa.BufferReader(pa.py_buffer(piece)),
            read_options=pv.ReadOptions(
                column_names=names, use_threads=False, block_size=len(piece) + 1
            ),
            parse_options=parse_options,
            convert_options=options,
            memory_pool=_POOL,
        )
        batches = table.combine_chunks(memory_pool=_POOL).to_batches()
        return batches[0] if batches else _NO_ROWS  # blank lines only

    text = convert(frozenset())
    limit = csv.field_size_limit()

    def parse(piece: bytes, options: pv.ConvertOptions) -> pa.RecordBatch:
        if not _fields_within(piece, limit):
            raise Fallback("a field that may pass csv's bound")
        if options is not text:
            try:
                return read(piece, options)
            except pa.ArrowInvalid:
                pass  # a cell that is not a number: the piece as text
        return read(piece, text)

    start = -1
    with (
        tables._open(file.path, binary=True) as f,
        ThreadPoolExecutor(_AHEAD, thread_name_prefix="l2compile-csv") as pool,
    ):
        sent = (
            (piece, pool.submit(parse, piece, convert(numbers())))
            for piece in _pieces(f)
        )
        for piece, batch in _one_ahead(sent):
            if not batch.num_rows:
                continue
            skip = int(start < 0)
            batch, start = batch.slice(skip), max(start, 0)
            if start + batch.num_rows > file.rows:
                raise Fallback("more rows than counted")
            yield start, batch, functools.partial(_as_text, read, piece, text, skip)
            start += batch.num_rows
    if max(start, 0) != file.rows:
        raise _Recount() if file.guessed else Fallback("fewer rows than counted")


def _as_text(
    read: Callable[[bytes, pv.ConvertOptions], pa.RecordBatch],
    piece: bytes,
    text: pv.ConvertOptions,
    skip: int,
) -> pa.RecordBatch:
    """A piece's rows with every column read as text, the header left out."""
    batch: pa.RecordBatch = read(piece, text).slice(skip)
    return batch


def _pieces(f: Any) -> Iterator[bytes]:
    return (bytes(chunk) for chunk in _chunks(f))  # _chunks reuses its buffer


def _one_ahead(
    sent: Iterator[tuple[bytes, Future[pa.RecordBatch]]],
) -> Iterator[tuple[bytes, pa.RecordBatch]]:
    """Each piece and its parsed rows, in order, the next _AHEAD pieces
    always under way while this one is used, and no more."""
    ahead: collections.deque[tuple[bytes, Future[pa.RecordBatch]]] = collections.deque()
    for piece in sent:
        if len(ahead) == _AHEAD:
            done = ahead.popleft()
            yield done[0], done[1].result()
        ahead.append(piece)
    while ahead:
        done = ahead.popleft()
        yield done[0], done[1].result()


def _fields_within(piece: bytes, limit: int) -> bool:
    """Whether no field of the piece (whole records) can be longer than
    `limit` characters: no stretch of more than `limit` bytes between two
    field ends outside quotes. Any column's field: csv.reader refuses a
    long one in a column nothing reads too."""
    if len(piece) <= limit:
        return True
    if b'"' not in piece:
        at = 0
        while len(piece) - at > limit:
            end = at + limit + 1
            cut = max(piece.rfind(b",", at, end), piece.rfind(b"\n", at, end))
            cut = max(cut, piece.rfind(b"\r", at, end))
            if cut < 0:
                return False
            at = cut + 1
        return True
    b = np.frombuffer(piece, np.uint8)
    quote = b == 34
    outside = (np.cumsum(quote) - quote) % 2 == 0
    ends = np.flatnonzero(((b == 44) | (b == 10) | (b == 13)) & outside)
    bounds = np.concatenate(([-1], ends, [len(b)]))
    return bool(np.diff(bounds).max() <= limit + 1)


# --- cells ----------------------------------------------------------------------------


def _numbers(
    cells: pa.Array,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_] | None]:
    """Each cell's value as `float` reads it stripped: NaN where it is
    missing or not a finite number; and which cells are present (None: all
    are, and all are numbers). Arrow's cast takes only decimal numbers
    without spaces, which `float` reads the same."""
    try:
        values = _view(pc.cast(cells, pa.float64(), memory_pool=_POOL), np.float64)
    except pa.ArrowInvalid:
        return _numbers_trimmed(cells)
    if (np.abs(values) < tables.FLOAT32_LIMIT).all():  # NaN is not
        return values, None
    return _numbers_trimmed(cells)  # "nan" is missing, "inf" present


def _numbers_trimmed(
    cells: pa.Array,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """`_numbers` for cells with spaces, missing values or text: trimmed by
    Arrow where its ASCII trim is `str.strip`, else read by Python."""
    if _ODD_BYTES[_bytes_of(cells)].any():
        return _numbers_python(cells.to_pylist())
    trimmed = pc.ascii_trim_whitespace(cells, memory_pool=_POOL)
    present = ~_mask(pc.is_in(trimmed, value_set=_MISSING_ARROW))
    fast = _mask(pc.match_substring_regex(trimmed, _FAST))
    values = np.full(len(cells), np.nan)
    if fast.any():
        try:
            cast = pc.cast(pc.filter(trimmed, _bools(fast)), pa.float64())
        except pa.ArrowInvalid:  # an exponent past float64's: float gives inf
            return _numbers_python(cells.to_pylist())
        values[fast] = _view(cast, np.float64)
    rest = present & ~fast
    if rest.any():  # `float` also reads digits with underscores: 1_000
        odd = rest & _mask(pc.match_substring(trimmed, "_"))
        if odd.any():
            found = pc.filter(trimmed, _bools(odd)).to_pylist()
            values[odd] = [float(c) if tables.is_number(c) else math.nan for c in found]
    values[~(np.abs(values) < tables.FLOAT32_LIMIT)] = np.nan  # past float32
    return values, present


def _numbers_python(
    cells: list[str],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    values = np.full(len(cells), np.nan)
    present = np.ones(len(cells), np.bool_)
    for i, cell in enumerate(cells):
        word = cell.strip()
        if tables.is_missing(word):
            present[i] = False
        elif tables.is_number(word):
            values[i] = float(word)
    return values, present


# --- one block ------------------------------------------------------------------------


@dataclass
class _Split:
    """One split's arrays, allocated for the most rows it can have."""

    x: npt.NDArray[np.float32]
    y: npt.NDArray[Any]
    filled: int = 0

    def add(
        self,
        x: npt.NDArray[np.float32],
        y: npt.NDArray[Any],
        rows: npt.NDArray[np.bool_] | None = None,
    ) -> None:
        """A block's rows, or those of them `rows` marks, copied once."""
        count = len(x) if rows is None else int(np.count_nonzero(rows))
        end = self.filled + count
        if end > len(self.x):
            raise Fallback("more rows than counted")
        if rows is None:
            self.x[self.filled : end] = x
            self.y[self.filled : end] = y
        else:
            np.compress(rows, x, axis=0, out=self.x[self.filled : end])
            np.compress(rows, y, axis=0, out=self.y[self.filled : end])
        self.filled = end

    def shrink(self) -> None:
        self.x.resize((self.filled, self.x.shape[1]), refcheck=False)
        self.y.resize((self.filled, *self.y.shape[1:]), refcheck=False)


def _add(
    splits: dict[bool, _Split],
    tests: npt.NDArray[np.bool_],
    x: npt.NDArray[np.float32],
    y: npt.NDArray[Any],
) -> None:
    """A block's kept rows, each to its split, in file order."""
    if not tests.any():
        splits[False].add(x, y)
    elif tests.all():
        splits[True].add(x, y)
    else:
        splits[False].add(x, y, ~tests)
        splits[True].add(x, y, tests)


def _label_block(
    plan: _Plan, batch: pa.RecordBatch, at: dict[int, int]
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[Any]]:
    """Which rows have their labels, and the labels of those rows: codes
    for class labels, else the numbers (a non-number falls back)."""
    if isinstance(plan.labels, tables._Classes):
        codes = plan.label_words.encode(batch.column(at[plan.label_places[0]]))
        keep = codes != 0
        return keep, codes[keep]
    keep = np.ones(batch.num_rows, np.bool_)
    columns = []
    for place in plan.label_places:
        values, present = _numbers(batch.column(at[place]))
        if present is not None:
            keep &= present
        columns.append(values)
    y = np.stack(columns, axis=1)[keep]
    if np.isnan(y).any():
        raise Fallback("a label that is not a number")
    if isinstance(plan.labels, tables._ZeroOne) and not np.isin(y, (0.0, 1.0)).all():
        raise Fallback("a label that is not 0 or 1")
    return keep, y if y.shape[1] > 1 or isinstance(plan.labels, tables._ZeroOne) else y[
        :, 0
    ]


def _guess(feature: _Feature, cells: pa.Array) -> str:
    """A column's mode, from its first block: a declared type's, else
    number mode where at least half of its present values are numbers."""
    if feature.declared:
        return "number" if feature.declared == "numeric" else "text"
    values, present = _numbers(cells)
    shown = len(values) if present is None else np.count_nonzero(present)
    return "number" if 2 * np.count_nonzero(~np.isnan(values)) >= shown else "text"


def _fill(
    feature: _Feature,
    cells: pa.Array,
    x: npt.NDArray[np.float32],
    train: npt.NDArray[np.bool_],
) -> None:
    """One column of a block's kept rows into x, counted."""
    if not feature.mode:
        feature.mode = _guess(feature, cells)
    if feature.mode == "text":
        codes = feature.words.encode(cells)
        feature.words.count(codes, train)
        x[:, feature.slot] = codes
        return
    values, present = _numbers(cells)
    x[:, feature.slot] = values
    if present is None:
        feature.numbers += int(np.count_nonzero(train))
        return
    number = ~np.isnan(values)
    stray = present & ~number
    feature.missing |= not present.all()
    if stray.any():
        if feature.declared == "numeric":
            raise Fallback(f"a non-number in numeric column {feature.name!r}")
        feature.stray = True
        feature.texts += int(np.count_nonzero(stray & train))
    feature.numbers += int(np.count_nonzero(number & train))


def _fill_numbers(
    features: Sequence[_Feature],
    columns: Sequence[pa.Array],
    x: npt.NDArray[np.float32],
    train: npt.NDArray[np.bool_],
) -> bool:
    """Number-mode columns that Arrow read as numbers (null: a missing
    form) into x, counted; False, with nothing counted, where one holds a
    value that is not finite in float32 there: a cell such as "inf", or
    one Arrow may read otherwise than `float` ("nan" with spaces). Its
    block is then read as text."""
    slots = [feature.slot for feature in features]
    gaps = []
    with np.errstate(over="ignore", invalid="ignore"):  # past float32: inf
        for slot, column in zip(slots, columns, strict=True):
            x[:, slot] = _values(column)
            if column.null_count:
                gap = ~_valid(column)
                x[gap, slot] = 0  # a null's value is not defined
                gaps.append((slot, gap))
    if not np.isfinite(x[:, slots]).all():
        return False
    trained = int(np.count_nonzero(train))
    missing = dict(gaps)
    for feature in features:
        feature.numbers += trained
        if feature.slot in missing:
            gap = missing[feature.slot]
            x[gap, feature.slot] = np.nan
            feature.missing = True
            feature.numbers -= int(np.count_nonzero(gap & train))
    return True


def _read_file(plan: _Plan, file: _File, splits: dict[bool, _Split]) -> None:
    """The streamed pass over one file."""
    include = sorted({f.place for f in plan.features} | set(plan.label_places))
    at = {place: k for k, place in enumerate(include)}
    classes = isinstance(plan.labels, tables._Classes)
    scratch = np.empty((0, plan.width), np.float32)  #: a block's rows, reused

    def numbers() -> frozenset[int]:
        return frozenset(f.place for f in plan.features if f.mode == "number")

    for start, batch, text in _blocks(file, plan.header, include, numbers):
        keep, y = _label_block(plan, batch, at)
        file.keep[start : start + len(keep)] = keep
        if not keep.all():
            batch = batch.filter(_bools(keep))
        tests = file.tests(start, keep)
        train = ~tests
        if classes:
            plan.label_words.count(y, train)
        if len(scratch) < len(tests):
            scratch = np.empty((len(tests), plan.width), np.float32)
        x = scratch[: len(tests)]
        typed = [
            f for f in plan.features if pa.types.is_float64(batch[at[f.place]].type)
        ]
        if typed and not _fill_numbers(
            typed, [batch[at[f.place]] for f in typed], x, train
        ):
            batch = text().filter(_bools(keep))
            typed = []
        done = {f.place for f in typed}
        for feature in plan.features:
            if feature.place not in done:
                _fill(feature, batch.column(at[feature.place]), x, train)
        _add(splits, tests, x, y)


def _read_again(
    plan: _Plan,
    files: Sequence[_File],
    splits: dict[bool, _Split],
    redo: list[_Feature],
) -> None:
    """Read the number-mode columns that are text again, in text mode."""
    include = sorted({f.place for f in redo})
    at = {place: k for k, place in enumerate(include)}
    filled = {False: 0, True: 0}
    for feature in redo:
        feature.mode, feature.words = "text", _Words()
    for file in files:
        for start, batch, _ in _blocks(file, plan.header, include):
            keep = file.keep[start : start + batch.num_rows]
            if not keep.all():
                batch = batch.filter(_bools(keep))
            tests = file.tests(start, keep)
            for feature in redo:
                codes = feature.words.encode(batch.column(at[feature.place]))
                feature.words.count(codes, ~tests)
                for test in (False, True):
                    part = codes[tests == test]
                    begin = filled[test]
                    splits[test].x[begin : begin + len(part), feature.slot] = part
            for test in (False, True):
                filled[test] += int(np.count_nonzero(tests == test))


# --- settling the columns -------------------------------------------------------------


def _counts(feature: _Feature) -> tuple[int, int]:
    """(numbers, non-numbers) among a column's present training values."""
    if feature.mode == "number":
        return feature.numbers, feature.texts
    numbers = feature.words.is_number()
    numbers[0] = False
    texts = ~numbers
    texts[0] = False
    train = feature.words.train
    return int(train[numbers].sum()), int(train[texts].sum())


def _is_numeric(feature: _Feature) -> bool:
    """The column's kind, as `tables._settle_columns` decides it."""
    if feature.declared:
        return feature.declared == "numeric"
    numbers, texts = _counts(feature)
    return 2 * numbers >= numbers + texts


def _check_columns(
    plan: _Plan, path: Path, numeric: list[bool], recipe: Recipe
) -> list[_Feature]:
    """Fall back where `tables._settle_columns` refuses the columns; the
    number-mode columns that are text, to be read again."""
    missing = tables._Missing()
    redo = []
    for feature, number in zip(plan.features, numeric, strict=True):
        if feature.mode == "text":
            feature.missing = bool(feature.words.every[0])
            if number:  # text mode: its first block held a non-number
                raise Fallback(f"a non-number in numeric column {feature.name!r}")
        elif number and feature.stray:
            raise Fallback(f"a non-number in numeric column {feature.name!r}")
        elif not number:
            redo.append(feature)
        if feature.missing:
            missing.add(path, 0, [feature.name])
        if sum(_counts(feature)) == 0:
            raise Fallback(f"column {feature.name!r} without a training value")
    names = [feature.name for feature in plan.features]
    tables._check_policies(path, names, numeric, missing, recipe.missing)
    return redo


def _refuse_identifiers(plan: _Plan, numeric: list[bool], rows: int) -> None:
    """Fall back where `tables._refuse_identifiers` refuses a text column."""
    for feature, number in zip(plan.features, numeric, strict=True):
        distinct = int(np.count_nonzero(feature.words.train[1:]))
        bound = max(tables.ID_VALUES, tables.ID_SHARE * rows)
        if not number and not feature.declared and distinct >= bound:
            raise Fallback(f"column {feature.name!r} reads as an ID")


def _remap(
    splits: dict[bool, _Split], slot: int, table: npt.NDArray[np.float32]
) -> None:
    """Replace the codes in x's inputs from `slot` on by their rows of
    `table` (a column per input), a slice at a time."""
    width = table.shape[1]
    for split in splits.values():
        x = split.x
        for begin in range(0, split.filled, 1 << 16):
            end = min(begin + (1 << 16), split.filled)
            codes = x[begin:end, slot].astype(np.intp)
            x[begin:end, slot : slot + width] = table[codes]


def _kinds(plan: _Plan, numeric: list[bool], splits: dict[bool, _Split]) -> list[Any]:
    """Each column's tables._Kind, its codes replaced by what x holds."""
    kinds = []
    for feature, number in zip(plan.features, numeric, strict=True):
        words = feature.words
        if number:
            kinds.append(tables._Kind(feature.name, "number"))
            continue
        trained = [words.words[c] for c in np.flatnonzero(words.train[1:]) + 1]
        if feature.declared == "date":
            form = feature.format or any_date_format(set(trained))
            if not form:
                raise Fallback(f"no date form fits column {feature.name!r}")
            parts = [(math.nan,) * len(DATE_PARTS)]
            parts += [date_parts(word, form) for word in words.words[1:]]
            _remap(splits, feature.slot, np.array(parts).astype(np.float32))
            kinds.append(tables._Kind(feature.name, "date", format=form))
            continue
        vocabulary = sorted(trained)
        rank = {word: i + 1 for i, word in enumerate(vocabulary)}
        ids = np.array([rank.get(word, 0) for word in words.words], np.float32)
        ids[0] = 0
        _remap(splits, feature.slot, ids[:, None])
        kinds.append(tables._Kind(feature.name, "category", tuple(vocabulary)))
    return kinds


def _settle_labels(plan: _Plan, splits: dict[bool, _Split]) -> tuple[str, ...]:
    """Class labels' ids, as `tables._Classes` settles them (numbers, or
    names sorted); the classes where they are names."""
    labels = plan.labels
    if not isinstance(labels, tables._Classes):
        return ()
    words = plan.label_words
    numbers = words.is_number()
    trained = np.flatnonzero(words.train[1:]) + 1
    used = np.flatnonzero(words.every[1:]) + 1
    lut = np.zeros(len(words.words), np.int64)
    classes: tuple[str, ...] = ()
    if numbers[trained].all():
        for code in used:
            found = labels._id(words.words[code]) if numbers[code] else None
            if found is None:
                raise Fallback("a label that is not a class id")
            lut[code] = found
    else:
        classes = tuple(sorted(words.words[c] for c in trained))
        if len(classes) != labels.needed or (labels.binary and len(classes) != 2):
            raise Fallback("not as many classes as the model has")
        if not all(name.isprintable() for name in classes):
            raise Fallback("a class name that is not printable")
        rank = {name: i for i, name in enumerate(classes)}
        for code in used:
            if words.words[code] not in rank:
                raise Fallback("a test label not among the classes")
            lut[code] = rank[words.words[code]]
    for split in splits.values():
        y = split.y
        for begin in range(0, split.filled, 1 << 16):
            end = min(begin + (1 << 16), split.filled)
            y[begin:end] = lut[y[begin:end]]
    return classes


# --- the result -----------------------------------------------------------------------


def _dropped(files: Sequence[_File], label: Sequence[str]) -> tuple[str, ...]:
    """The warning for each file whose rows without a label were dropped,
    in `tables._dropped`'s words; their first lines found with csv.reader."""
    found = []
    for file in files:
        dropped = np.flatnonzero(~file.keep)
        if len(dropped):
            lines = _lines_of(file.path, dropped[: tables._MISSING_LINES].tolist())
            found.append(tables.dropped_warning(file.path, len(dropped), lines, label))
    return tuple(found)


def _lines_of(path: Path, rows: list[int]) -> list[int]:
    """The lines data rows (counted from 0) start on, read again up to the
    last of them."""
    wanted = set(rows)
    lines = {}
    records = tables.csv_records(path)
    for row, (line, _) in enumerate(itertools.islice(records, 1, None)):
        if row in wanted:
            lines[row] = line
            if len(lines) == len(wanted):
                break
    return [lines[row] for row in rows]  # the reader closes as it goes


def _check_rows(files: Sequence[_File], splits: dict[bool, _Split]) -> None:
    """Each file, and each split, must hold rows with a label."""
    for file in files:
        if file.held is None and not file.keep.any():
            raise Fallback(f"{file.path}: no data row has a label")
    if not (splits[False].filled and splits[True].filled):
        raise Fallback("a split without a row with a label")


def _ids(files: Sequence[_File], test: bool) -> npt.NDArray[np.int64]:
    """The data rows (counted from 0 in their file) of one split."""
    rows = [
        np.flatnonzero(
            file.keep if file.held is None else file.keep & (file.held == test)
        )
        for file in files
        if file.test == test or file.held is not None
    ]
    found = rows[0] if len(rows) == 1 else np.concatenate(rows)  # one copy at most
    return found.astype(np.int64, copy=False)


def _read(
    recipe: Recipe,
    train: Path,
    test: Path | None,
    seed: int,
    model_input: ModelInput,
    *,
    exact: bool,
) -> datasets.Dataset:
    task = model_input.task
    if task is None or (test is None and recipe.test_split is None):
        raise Fallback("no task, or no test data")
    labels = tables._labels_for(task, recipe.label)
    files, header = _files(recipe, train, test, seed, exact)
    features = _features(recipe, train, header)
    width = sum(len(DATE_PARTS) if f.declared == "date" else 1 for f in features)
    places = tuple(header.index(name) for name in recipe.label)
    plan = _Plan(header, features, places, labels, width)
    most = {t: sum(file.split_rows(t) for file in files) for t in (False, True)}
    tables._check_memory(train, width, labels, most)
    splits = {
        t: _Split(
            np.empty((most[t], width), np.float32),
            np.empty(labels.shape(most[t]), labels.dtype),
        )
        for t in (False, True)
    }
    for file in files:
        _read_file(plan, file, splits)
    _check_rows(files, splits)
    numeric = [_is_numeric(feature) for feature in features]
    redo = _check_columns(plan, train, numeric, recipe)
    if redo:
        _read_again(plan, files, splits, redo)
    _refuse_identifiers(plan, numeric, splits[False].filled)
    kinds = _kinds(plan, numeric, splits)
    classes = _settle_labels(plan, splits)
    for split in splits.values():
        split.shrink()
    # x holds no number past float32 (_numbers reads one as a non-number);
    # a target past it falls back, and the Python reader refuses it.
    for split in splits.values():
        if split.y.dtype == np.float32 and np.isinf(split.y).any():
            raise Fallback("a target past float32's range")
    columns = tables._columns(kinds, splits[False].x, recipe.missing)
    if not model_input.derived:
        tables._check_width(train, model_input, columns)
    return datasets.Dataset(
        splits[False].x,
        splits[False].y,
        splits[True].x,
        splits[True].y,
        source=str(train) + (f" and {test}" if test is not None else ""),
        columns=columns,
        classes=classes,
        train_ids=_ids(files, False),
        test_ids=_ids(files, True),
        warnings=_dropped(files, recipe.label),
    )
