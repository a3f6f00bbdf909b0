"""Reading Parquet tables for the parquet recipe, as rows of text.

A Parquet file (or a folder of them, read in sorted path order, each with the
first one's columns) is streamed a batch of rows at a time with
`pyarrow.parquet` and each value written as the text a CSV file would hold:
a null or a float NaN as "" (missing), a whole float as an integer (2009.0
as 2009: pandas writes a column of integers with nulls as floats), another
float as Python's repr (which reads back as the same double), an integer,
a string, a bool (True, False), a date (2012-01-31) or a timestamp
(2012-01-31 13:45:00) as `str` writes it. The
rows then go through the csv recipe's rules (l2compile.tables), so that a
Parquet table and a CSV of the same values give the same arrays. Lines in
messages count as in the CSV the table would be: the header is line 1, the
first row line 2, across the files of a folder.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from l2compile import files
from l2compile.errors import BuildError

__all__ = ["parquet_files", "parquet_records"]

#: Rows read at a time.
_BATCH_ROWS = 4096


def parquet_files(path: Path) -> list[Path]:
    """The Parquet file `path`, or the *.parquet files under the folder
    `path`, sorted by path."""
    if not path.is_dir():
        return [path]
    found = sorted(p for p in path.rglob("*.parquet") if p.is_file())
    if not found:
        raise BuildError(f"{path}: no .parquet files in this folder")
    return found


def parquet_records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Each row of the table, header first, as text cells, with the line it
    would start on in a CSV file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    header: list[str] | None = None
    line = 1
    first = None
    for file in parquet_files(path):
        try:
            with os.fdopen(_open(file), "rb") as f:
                reader = pq.ParquetFile(f)
                names = list(reader.schema_arrow.names)
                if header is None:
                    header, first = names, file
                    yield 1, list(names)
                elif names != header:
                    raise BuildError(
                        f"{file}: its columns differ from {first}'s; every file "
                        "of a folder holds the same columns, in the same order"
                    )
                for batch in reader.iter_batches(batch_size=_BATCH_ROWS):
                    columns = [
                        _texts(file, header[k], batch.column(k))
                        for k in range(batch.num_columns)
                    ]
                    for row in zip(*columns, strict=True):
                        line += 1
                        yield line, list(row)
        except (pa.ArrowException, OSError) as exc:
            raise BuildError(f"{file}: cannot read it as Parquet: {exc}") from None


def _open(file: Path) -> int:
    """The regular file's descriptor (a FIFO is never waited on)."""
    try:
        return files.open_regular(file)
    except files.NotAFile as exc:
        raise BuildError(f"{file}: is {exc.what}, not a Parquet file") from exc


def _texts(file: Path, name: str, column: Any) -> list[str]:
    """A column's values as the text cells of a CSV file."""
    import pyarrow as pa

    kind = column.type
    if pa.types.is_nested(kind) or pa.types.is_binary(kind):
        raise BuildError(
            f"{file}: column {name!r} holds {kind} values; a table's cells are "
            "numbers, text, booleans or dates"
        )
    return [_text(value) for value in column.to_pylist()]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer() and abs(value) < 2**53:
            return str(int(value))  # 2009.0 is 2009, as in an int column
        return repr(value)
    return str(value)
