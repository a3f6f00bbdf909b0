"""A CSV table with a header row: feature columns (numbers, or text the model
one-hot encodes itself) and label columns of any task."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from l2compile.dates import DATE_FORMATS, DATE_PARTS
from l2compile.errors import BuildError
from l2compile.layers.base import PlannedLayer as Layer
from l2compile.layers.base import py_str
from l2compile.sources.base import Request, Source, register

if TYPE_CHECKING:
    from l2compile.datasets import Dataset


#: What a category's id is, for app developers reading model.json.
_IDS = {
    "ids": "0 for a missing value or one not in vocabulary, else its place in "
    "vocabulary counted from 1"
}


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
            from l2compile.sources.csv_text import CsvText

            return CsvText(**data)
        return cls(**data)

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

    def read(self, request: Request) -> Dataset:
        from l2compile import datasets, tables

        assert request.given is not None and request.model_input is not None
        test = request.test_path.path if request.test_path is not None else None
        for path, origin in (
            (request.given, request.spec_path if request.data is None else None),
            (test, request.test_path),
        ):
            if path is not None and not self.found(path):
                raise BuildError(datasets.missing(self, path, path, origin))
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
