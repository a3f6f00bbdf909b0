"""A CSV table with a header row: feature columns (numbers, or text the model
one-hot encodes itself) and label columns of any task."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from l2compile.dates import DATE_FORMATS, DATE_PARTS
from l2compile.errors import BuildError, some_of
from l2compile.layers.base import PlannedLayer as Layer
from l2compile.layers.base import py_str
from l2compile.sources.base import (
    ColumnType,
    ReadsText,
    Report,
    Request,
    Source,
    register,
)

if TYPE_CHECKING:
    from l2compile.datasets import Dataset


#: What a category's id is, for app developers reading model.json.
_IDS = {
    "ids": "0 for a missing value or one not in vocabulary, else its place in "
    "vocabulary counted from 1"
}


def encodes_table(keras_class: str, module: str, name: str) -> bool:
    """Whether a node of a saved model is part of the table encoding the
    generated encode() puts before the spec's layers (templates/parts/
    table.py.jinja): its keras.ops calls, its one-hot CategoryEncoding
    layers (one_hot_<column>) and the Concatenate that joins them
    (features). `l2compile import` reads them as a csv recipe's input."""
    if module.startswith("keras.src.ops"):
        return True
    if keras_class == "CategoryEncoding":
        return name.startswith("one_hot_")
    return keras_class == "Concatenate" and name == "features"


@register
@dataclass(frozen=True)
class Csv(Source):
    name: ClassVar[str] = "csv"
    title: ClassVar[str] = "CSV"
    own_data: ClassVar[bool] = True
    any_task: ClassVar[bool] = True
    classes_from_data: ClassVar[bool] = True
    encodes: ClassVar[bool] = True
    wanted: ClassVar[str] = "a CSV file"
    fields: ClassVar[frozenset[str]] = frozenset(
        {"data", "data_files", "num_classes", "labels", "columns", "test_split", "text"}
    )
    needs: ClassVar[frozenset[str]] = frozenset({"columns"})
    #: The data part a spec written by `l2compile import` holds for a model
    #: that encodes a table itself: a placeholder to fill in.
    placeholder: ClassVar[dict[str, object]] = {
        "recipe": "csv",
        "data": "data.csv",
        "label": "label",
        "test_split": 0.2,
    }
    imports: ClassVar[tuple[str, ...]] = (
        "import csv",
        "import datetime",
        "import json",
        "import math",
        "from collections.abc import Iterator, Mapping, Sequence",
        "from typing import Any",
    )
    example: ClassVar[str] = "data.csv"
    #: Read with Arrow first (l2compile.tables_arrow), which gives the Python
    #: reader's dataset or falls back to it.
    arrow: ClassVar[bool] = True

    @classmethod
    def reads_text(cls, kinds: Sequence[str]) -> bool:
        """A csv with a text column reads text (l2compile.sources.csv_text)."""
        return cls is Csv and "text" in kinds

    @classmethod
    def configured(cls, **data: Any) -> Source:
        if cls.reads_text([t.kind for t in data.get("types", ())]):
            return CsvText(**data)
        return cls(**data)

    def check_input(self, shape: Sequence[int], report: Report) -> None:
        """A table needs test rows: a test file, or test_split of its one file."""
        super().check_input(shape, report)
        if self.test_data is None and self.test_split is None:
            report(
                ("train", "data"),
                f"{self.data} is one file, and the model needs rows to test on: "
                "add test_split (the share of its rows that tests, seeded), or "
                "name a test file (data: {train: a.csv, test: b.csv})",
            )

    def constants(self) -> list[tuple[str, str, str]]:
        found = super().constants()
        at = len(found) - (self.test_split is not None)
        names = ", ".join(py_str(name) for name in self.label)
        columns = [("LABELS", f"({names},)", "the label columns")]
        if self.features is not None:
            names = "".join(f"    {py_str(name)},\n" for name in self.features)
            columns.append(("FEATURES", "(\n" + names + ")", "the feature columns"))
        else:
            columns.append(("FEATURES", "None", "every column but the labels"))
        columns += self._missing_constants()
        return found[:at] + columns + found[at:]

    def _missing_constants(self) -> list[tuple[str, str, str]]:
        """What missing values become, the declared column types, and the
        date forms a date column's format is inferred from."""
        missing = self.missing
        policies = "".join(
            f"    {py_str(name)}: {py_str(rule)},\n" for name, rule in missing.columns
        )
        types = "".join(
            f"    {py_str(column.name)}: {py_str(column.kind)},\n"
            for column in self.types
        )
        formats = "".join(
            f"    {py_str(column.name)}: {py_str(column.format)},\n"
            for column in self.types
            if column.format is not None
        )
        forms = "".join(f"    {py_str(form)},\n" for form in DATE_FORMATS)
        return [
            (
                "NUMERIC_MISSING",
                py_str(missing.numeric),
                "a missing number's fill: median, mean, zero or error",
            ),
            (
                "CATEGORY_MISSING",
                py_str(missing.categorical),
                "a missing category: own_category, most_frequent or error",
            ),
            (
                "MISSING_INDICATOR",
                repr(missing.indicator),
                "the model also reads whether a number was missing",
            ),
            (
                "MISSING_COLUMNS: dict[str, str]",
                "{\n" + policies + "}" if policies else "{}",
                "the policy of single columns",
            ),
            (
                "TYPES: dict[str, str]",
                "{\n" + types + "}" if types else "{}",
                "declared column types; the others are inferred",
            ),
            (
                "FORMATS: dict[str, str]",
                "{\n" + formats + "}" if formats else "{}",
                "a date column's given format",
            ),
            (
                "DATE_FORMATS",
                "(\n" + forms + ")",
                "the forms a date column's format is inferred from",
            ),
            (
                "COLUMNS_FILE",
                py_str("columns.json"),
                "the inputs a build lists, beside its model",
            ),
            (
                "DATE_PARTS",
                "(\n" + "".join(f"    {py_str(part)},\n" for part in DATE_PARTS) + ")",
                "the inputs a date becomes: years since 2000, month and weekday "
                "on circles",
            ),
        ]

    @property
    def data_help(self) -> str:
        return py_str("CSV file with a header row")

    def sample_text(self, dtype: str, shape: Sequence[int] = ()) -> str:
        return (
            "one table row: a value per input, in the order of columns: a "
            "number as it is (NaN where missing), a text column's category "
            "id (0 where missing), a date's parts (see columns)"
        )

    def input_json(
        self, shape: Sequence[int], columns: Sequence[Any]
    ) -> dict[str, Any]:
        """The model's inputs: a column's value, or a date's parts, with
        their vocabularies and what a missing value becomes."""
        return {
            "missing": "send NaN for a missing number (a date's parts) and 0 "
            "for a missing category: the model fills them as each input's "
            "missing and fill say",
            "columns": [
                column.describe() | _IDS
                if column.vocabulary is not None
                else column.describe()
                for column in columns
            ],
        }

    def refuses_ids(self, layer: Layer) -> str | None:
        return (
            f"an {layer.type} looks up integer ids, which only the npz "
            f"recipe feeds; recipe {self.name!r} gives numbers (a csv's text "
            "columns are one-hot encoded in the model)"
        )

    def records(self) -> Any:
        """How its files' rows are read (tables.Records): as CSV."""
        from l2compile import tables

        return tables.csv_records

    def found(self, path: Path) -> bool:
        """Whether `path` is where its data can be: a file."""
        return path.is_file()

    def files_given(self, request: Request) -> tuple[Path, Path | None]:
        """The training file and the test file (None: test_split), each
        checked to be there."""
        from l2compile import datasets

        assert request.given is not None
        test = request.test_path.path if request.test_path is not None else None
        for path, origin in (
            (request.given, request.spec_path if request.data is None else None),
            (test, request.test_path),
        ):
            if path is not None and not self.found(path):
                raise BuildError(datasets.missing(self, path, path, origin))
        return request.given, test

    def read(self, request: Request) -> Dataset:
        from l2compile import tables

        assert request.given is not None and request.model_input is not None
        _, test = self.files_given(request)
        if self.arrow:
            from l2compile import tables_arrow

            try:
                return tables_arrow.read_fast(
                    self,
                    request.given,
                    test,
                    seed=request.seed,
                    model_input=request.model_input,
                )
            except tables_arrow.Fallback:
                pass  # the Python reader gives the same dataset, or the error
        return tables.read_csv(
            self,
            request.given,
            test,
            seed=request.seed,
            model_input=request.model_input,
            records=self.records(),
        )


@dataclass(frozen=True)
class CsvText(ReadsText, Csv):
    """A csv table whose feature is one text column (train.columns: {review:
    text}): each row's text, tokenized as MediaPipe's TextClassifier
    tokenizes it, is the model's input, and a label column names its class.

    Not a recipe of its own: `recipe: csv` with a text column is this source
    (`Csv.configured`). The table's rules still hold for its rows and labels
    (l2compile.tables reads them: rows without a label dropped, the test
    split, class names), and the text column is read beside them; other
    columns are not read, since MediaPipe's TextClassifier feeds the model one
    tensor of ids."""

    encodes: ClassVar[bool] = False
    arrow: ClassVar[bool] = False
    imports: ClassVar[tuple[str, ...]] = (
        "import csv",
        "from collections.abc import Iterator",
        *ReadsText.text_imports,
    )

    @property
    def template(self) -> str:
        """Not a source of its own (csv's variant): its fragment is a part."""
        return "parts/text_table.py.jinja"

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
        _, test = self.files_given(request)
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

    def _cells(self, path: Path, wanted: Any) -> Iterator[str]:
        """The text column's cells of the data rows `wanted` (counted from 0,
        ascending), in order."""
        from l2compile import tables

        records = self.records()
        column = tables.header_of(path, records).index(self.column)
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
