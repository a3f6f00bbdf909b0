"""A Parquet table (a file, or a folder of them): the csv recipe's fields
and rules, its values read as the text a CSV file would hold."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from l2compile.layers.base import py_str
from l2compile.sources.base import register
from l2compile.sources.csv import Csv


@register
@dataclass(frozen=True)
class Parquet(Csv):
    name: ClassVar[str] = "parquet"
    title: ClassVar[str] = "Parquet"
    wanted: ClassVar[str] = "a Parquet file or a folder of them"
    example: ClassVar[str] = "data.parquet"
    arrow: ClassVar[bool] = False  #: its rows come from l2compile.parquet
    #: A text column is the csv recipe's alone.
    fields: ClassVar[frozenset[str]] = Csv.fields - {"text"}
    imports: ClassVar[tuple[str, ...]] = (
        *(line for line in Csv.imports if line != "import csv"),
        "from pathlib import Path",
    )

    @property
    def data_help(self) -> str:
        return py_str("Parquet file, or a folder of .parquet files")

    def records(self) -> Any:
        """How its files' rows are read: as the text a CSV would hold."""
        from l2compile.parquet import parquet_records

        return parquet_records

    def found(self, path: Path) -> bool:
        """Whether `path` is where its data can be: a file or a folder."""
        return path.exists()
