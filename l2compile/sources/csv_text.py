"""A csv table whose feature is one text column (train.columns: {review:
text}): each row's text, tokenized as MediaPipe's TextClassifier tokenizes
it, is the model's input, and a label column names its class.

Not a recipe of its own: `recipe: csv` with a text column is this source
(`Csv.configured`). The table's rules still hold for its rows and labels
(l2compile.tables reads them: rows without a label dropped, the test split,
class names), and the text column is read beside them; other columns are not
read, since MediaPipe's TextClassifier feeds the model one tensor of ids."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from l2compile.errors import BuildError, some_of
from l2compile.layers.base import py_str
from l2compile.sources.base import ColumnType, Request
from l2compile.sources.csv import Csv
from l2compile.sources.text_input import ReadsText

if TYPE_CHECKING:
    from l2compile.datasets import Dataset


@dataclass(frozen=True)
class CsvText(ReadsText, Csv):
    encodes: ClassVar[bool] = False
    arrow: ClassVar[bool] = False
    imports: ClassVar[tuple[str, ...]] = (
        "import csv",
        "from collections.abc import Iterator",
        *ReadsText.text_imports,
    )

    @property
    def template(self) -> str:
        return "sources/csv_text.py.jinja"

    @property
    def column(self) -> str:
        """The text column."""
        return next(t.name for t in self.types if t.kind == "text")

    def constants(self) -> list[tuple[str, str, str]]:
        found = ReadsText.constants(self)
        at = len(found) - (self.test_split is not None)
        (label,) = self.label
        columns = [
            ("LABEL", py_str(label), "the label column: a class name or id"),
            ("TEXT", py_str(self.column), "the text column, the model's input"),
        ]
        return [*found[:at], *columns, *found[at:], *self.text_constants()]

    @property
    def data_help(self) -> str:
        return py_str(f"CSV file with a header row and a text column {self.column!r}")

    def read(self, request: Request) -> Dataset:
        """The table's rows and labels, as the csv recipe reads them, with the
        text column's cells as token ids."""
        from l2compile import documents, tables, text

        model_input = request.model_input
        assert request.given is not None and model_input is not None
        task = model_input.task
        if task is not None and (not task.scores_classes or len(self.label) != 1):
            raise BuildError(
                f"column {self.column!r} is text: its model is a classifier of one "
                "label column (task classification, a softmax over the classes), "
                "which MediaPipe's TextClassifier runs"
            )
        test = request.test_path.path if request.test_path is not None else None
        for path, origin in (
            (request.given, request.spec_path if request.data is None else None),
            (test, request.test_path),
        ):
            if path is not None and not self.found(path):
                from l2compile import datasets

                raise BuildError(datasets.missing(self, path, path, origin))
        # The table's own rules for its rows and labels: no feature is read,
        # and its width is not the model's (that is max_len ids).
        types = tuple(
            ColumnType(t.name, "ignore") if t.kind == "text" else t for t in self.types
        )
        table = Csv(
            **{
                f.name: getattr(self, f.name)
                for f in dataclasses.fields(Csv)
                if f.name not in ("types", "features")
            },
            types=types,
            features=(),
        )
        rows = tables.read_csv(
            table,
            request.given,
            test,
            seed=request.seed,
            model_input=dataclasses.replace(model_input, derived=True),
        )
        files = (request.given, request.given if test is None else test)
        tokenizer = text.Tokenizer(self.settings.regex, self.settings.lowercase)
        vocabulary = request.vocabulary
        if vocabulary is None:
            cells = self._cells(files[0], rows.ids(test=False))
            counts = text.count(tokenizer, cells)
            vocabulary = tuple(text.vocabulary(counts, self.settings.max_tokens))
        documents.check_vocabulary(request.given, vocabulary, model_input)
        ids = {token: i for i, token in enumerate(vocabulary)}
        (max_len,) = model_input.shape
        x = [
            documents.encode_texts(
                self._cells(file, rows.ids(test=part)), tokenizer, ids, max_len
            )
            for file, part in zip(files, (False, True), strict=True)
        ]
        unread = self._unread(request.given)
        return dataclasses.replace(
            rows,
            x_train=x[0],
            x_test=x[1],
            vocabulary=vocabulary,
            warnings=(*rows.warnings, *unread, *documents.unknown_warning(x[0])),
        )

    def new_texts(self, data: Path) -> tuple[list[str], list[str]]:
        """A CSV file's text column; each row keyed by the line it starts on."""
        from l2compile import tables

        if not data.is_file():
            raise BuildError(f"{data}: no such file; predict reads a CSV file")
        records = self.records()
        header = tables.header_of(data, records)
        if self.column not in header:
            raise BuildError(
                f"{data}: no column {self.column!r}, the text the model reads "
                f"(columns: {some_of(list(header))})"
            )
        column = header.index(self.column)
        keys, texts = [], []
        for line, row in itertools.islice(records(data), 1, None):
            if len(row) != len(header):
                raise BuildError(
                    f"{data}: line {line} has {len(row)} fields, but the header "
                    f"has {len(header)} columns"
                )
            keys.append(str(line))
            texts.append(row[column])
        if not texts:
            raise BuildError(f"{data}: no data rows")
        return keys, texts

    def _cells(self, path: Path, wanted: np.ndarray) -> Iterator[str]:
        """The text column's cells of the data rows `wanted` (counted from 0,
        ascending), in order."""
        from l2compile import tables

        records = self.records()
        column = tables.header_of(path, records).index(self.column)
        wanted = np.asarray(wanted)
        at = 0
        body = itertools.islice(records(path), 1, None)
        for i, (_, row) in enumerate(body):
            if at == len(wanted):
                return
            if i == wanted[at]:
                yield row[column]
                at += 1
        if at != len(wanted):
            raise BuildError(f"{path}: changed while it was read; build again")

    def _unread(self, path: Path) -> tuple[str, ...]:
        """A warning naming the columns a text model does not read."""
        from l2compile import tables

        header = tables.header_of(path, self.records())
        used = {self.column, *self.label}
        ignored = {t.name for t in self.types if t.kind == "ignore"}
        unread = [name for name in header if name not in used | ignored]
        if not unread:
            return ()
        names = some_of([repr(name) for name in unread])
        which = f"column {names} is" if len(unread) == 1 else f"columns {names} are"
        return (
            f"{path}: {which} not read: a text model reads its text column "
            f"{self.column!r} alone (train.columns: ignore to say so)",
        )


__all__ = ["CsvText"]
