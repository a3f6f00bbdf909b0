"""A CSV table with a header row: feature columns (numbers, or text the model
one-hot encodes itself) and label columns of any task."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from l2compile.errors import BuildError
from l2compile.layers.base import PlannedLayer as Layer
from l2compile.layers.base import py_str
from l2compile.sources.base import Request, Source, register

if TYPE_CHECKING:
    from l2compile.datasets import Dataset


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
        {"data", "data_files", "num_classes", "labels", "columns", "test_split"}
    )
    needs: ClassVar[frozenset[str]] = frozenset({"columns"})
    imports: ClassVar[tuple[str, ...]] = (
        "import csv",
        "import math",
        "from collections.abc import Iterator",
    )
    example: ClassVar[str] = "data.csv"

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
        return found[:at] + columns + found[at:]

    @property
    def data_help(self) -> str:
        return py_str("CSV file with a header row")

    def sample_text(self, dtype: str, shape: Sequence[int] = ()) -> str:
        return (
            "one table row: a value per feature column, in the order of "
            "columns: a number column's value as it is, a text column's "
            "category id (see columns)"
        )

    def input_json(
        self, shape: Sequence[int], columns: Sequence[Any]
    ) -> dict[str, Any]:
        """The columns and their vocabularies."""
        return {
            "columns": [
                {"name": c.name, "kind": "number"}
                if c.vocabulary is None
                else {
                    "name": c.name,
                    "kind": "category",
                    "ids": "0 for a value not in vocabulary, else its place "
                    "in vocabulary counted from 1",
                    "vocabulary": list(c.vocabulary),
                }
                for c in columns
            ]
        }

    def refuses_ids(self, layer: Layer) -> str | None:
        return (
            f"an {layer.type} looks up integer ids, which only the npz "
            f"recipe feeds; recipe {self.name!r} gives numbers (a csv's text "
            "columns are one-hot encoded in the model)"
        )

    def read(self, request: Request) -> Dataset:
        from l2compile import datasets, tables

        assert request.given is not None and request.model_input is not None
        test = request.test_path.path if request.test_path is not None else None
        for path, origin in (
            (request.given, request.spec_path if request.data is None else None),
            (test, request.test_path),
        ):
            if path is not None and not path.is_file():
                raise BuildError(datasets.missing(self, path, path, origin))
        return tables.read_csv(
            self,
            request.given,
            test,
            seed=request.seed,
            model_input=request.model_input,
        )
