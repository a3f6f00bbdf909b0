"""The parquet recipe: a Parquet table (a file or a folder of them) goes
through the csv recipe's rules, so that it gives the arrays, and the build
the metrics, that a CSV of the same table gives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from l2compile.datasets import Dataset, load_dataset
from l2compile.errors import BuildError
from l2compile.generate import compile_spec

from .test_missing_values import SPEC, _write

pytestmark = pytest.mark.build


def _tables(folder: Path) -> tuple[Path, Path]:
    """The same table as a CSV file and as a folder of two Parquet files,
    written by pyarrow from the CSV's values (nulls where cells are missing,
    dates as dates)."""
    import pyarrow as pa
    import pyarrow.csv as pv
    import pyarrow.parquet as pq

    csv_path = folder / "penguins.csv"
    _write(csv_path, 300, np.random.default_rng(5))
    table = pv.read_csv(csv_path)
    assert pa.types.is_date32(table.schema.field("day").type) or pa.types.is_timestamp(
        table.schema.field("day").type
    )
    # Whole numbers as floats, as pandas writes a column of integers with
    # nulls: 3987.0 reads as the CSV's 3987.
    mass = table.schema.get_field_index("mass")
    table = table.set_column(mass, "mass", table.column("mass").cast(pa.float64()))
    parts = folder / "penguins"
    parts.mkdir()
    pq.write_table(table.slice(0, 120), parts / "part-0.parquet")
    pq.write_table(table.slice(120), parts / "part-1.parquet")
    return csv_path, parts


def _compiled(folder: Path, recipe: str, data: str) -> Any:
    spec = folder / f"{recipe}.yaml"
    text = SPEC.replace("recipe: csv", f"recipe: {recipe}")
    spec.write_text(text.replace("data: penguins.csv", f"data: {data}"))
    compiled = compile_spec(spec)
    assert not isinstance(compiled, list), [str(e) for e in compiled]
    return compiled


def _read(compiled: Any, path: Path) -> Dataset:
    plan = compiled.plan
    return load_dataset(
        plan.recipe, path, model_input=plan.model_input, seed=plan.split_seed
    )


def _same(one: Dataset, other: Dataset) -> None:
    for name in ("x_train", "y_train", "x_test", "y_test"):
        a, b = getattr(one, name), getattr(other, name)
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert one.columns == other.columns
    assert one.classes == other.classes
    np.testing.assert_array_equal(one.ids(False), other.ids(False))
    np.testing.assert_array_equal(one.ids(True), other.ids(True))


def test_a_parquet_folder_reads_as_the_csv_of_the_same_table(tmp_path: Path) -> None:
    csv_path, parts = _tables(tmp_path)
    from_csv = _read(_compiled(tmp_path, "csv", "penguins.csv"), csv_path)
    from_parquet = _read(_compiled(tmp_path, "parquet", "penguins/"), parts)
    _same(from_csv, from_parquet)
    # Missing cells (nulls) are missing in both; dates parsed in both.
    assert np.isnan(from_parquet.x_train[:, 0]).any()
    assert {c.part for c in from_parquet.columns if c.name == "day"} == {
        "years_since_2000",
        "month_sin",
        "month_cos",
        "weekday_sin",
        "weekday_cos",
    }
    # Rows without a label are dropped and named by the line they would be on.
    assert (
        from_parquet.warnings[0].split(": ", 1)[1]
        == (from_csv.warnings[0].split(": ", 1)[1])
    )


def test_a_parquet_folder_whose_files_differ_is_refused(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "parts"
    folder.mkdir()
    names = ["bill", "mass", "island", "sex", "day", "tag", "species"]
    row = [40.0, 4000, "Dream", "male", "2012-01-01", "a", "Adelie"]
    table = pa.table({name: [value] for name, value in zip(names, row, strict=True)})
    pq.write_table(table, folder / "a.parquet")
    pq.write_table(table.select(names[::-1]), folder / "b.parquet")
    (tmp_path / "penguins").mkdir()
    compiled = _compiled(tmp_path, "parquet", "penguins/")
    with pytest.raises(BuildError) as err:
        _read(compiled, folder)
    assert str(err.value) == (
        f"{folder / 'b.parquet'}: its columns differ from {folder / 'a.parquet'}'s; "
        "every file of a folder holds the same columns, in the same order"
    )
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(BuildError) as err:
        _read(compiled, tmp_path / "bad.parquet")
    assert str(err.value).startswith(
        f"{tmp_path / 'bad.parquet'}: cannot read it as Parquet"
    )


def test_parquet_and_csv_builds_give_the_same_metrics(tmp_path: Path) -> None:
    from l2compile import build as builder
    from l2compile.contract import import_generated

    csv_path, parts = _tables(tmp_path)
    metrics = {}
    for recipe, data in (("csv", "penguins.csv"), ("parquet", "penguins/")):
        compiled = _compiled(tmp_path, recipe, data)
        out = tmp_path / f"build_{recipe}"
        result = builder.build(compiled.plan, compiled.code, out, log=lambda _: None)
        metrics[recipe] = result.metrics
    for name in ("test_accuracy", "test_loss", "validation"):
        assert metrics["csv"][name] == metrics["parquet"][name], name
    # The generated module reads the Parquet folder as the build did.
    module = import_generated(tmp_path / "build_parquet" / "penguins.py", "pq_module")
    (x_train, _), (x_test, _), columns = module.load_data(str(parts))
    built = _read(_compiled(tmp_path, "parquet", "penguins/"), parts)
    np.testing.assert_array_equal(x_train, built.x_train)
    np.testing.assert_array_equal(x_test, built.x_test)
    assert columns == built.encoding
    model = json.loads((tmp_path / "build_parquet" / "model.json").read_text())
    assert model["input"]["shape"] == [1, 9]
    # predict reads new Parquet rows as the CSV build reads new CSV rows.
    from l2compile.predict import predict_build

    from_parquet = predict_build(tmp_path / "build_parquet", parts)
    from_csv = predict_build(tmp_path / "build_csv", csv_path)
    assert from_parquet.rows == from_csv.rows
    assert len(from_parquet.rows) == 300
    # A table is read by its own kind, whichever recipe built the model.
    assert predict_build(tmp_path / "build_csv", parts).rows == from_csv.rows
