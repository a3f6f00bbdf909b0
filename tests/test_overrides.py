"""`--set FIELD=VALUE`: reading it, the grid of a sweep, and where its errors go."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from l2compile.cli import main
from l2compile.generate import compile_spec
from l2compile.overrides import OverrideError, grid, parse
from tests.conftest import SMALL_SPEC

pytestmark = pytest.mark.unit


def test_values_are_read_as_the_spec_files_yaml_is() -> None:
    found = parse("l2=0,1e-4,0.01")
    assert found.path == ("l2",)
    assert found.values == (0, 0.0001, 0.01)
    assert found.value_texts == ("0", "1e-4", "0.01")
    assert parse("export.formats=[keras],[tflite, keras]").values == (
        ["keras"],
        ["tflite", "keras"],
    )
    assert parse("description='a, b',\"c\"").values == ("a, b", "c")
    assert parse("train.early_stopping=null").values == (None,)


@pytest.mark.parametrize(
    ("field", "path"),
    [
        ("train.optimizer.learning_rate", ("train", "optimizer", "learning_rate")),
        ("layers[1].units", ("layers", 1, "units")),
        ("layers.1.units", ("layers", 1, "units")),
    ],
)
def test_fields_are_paths_as_the_errors_write_them(field: str, path: tuple) -> None:
    assert parse(f"{field}=1").path == path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("l2", "expected FIELD=VALUE"),
        ("=1", "expected FIELD=VALUE"),
        ("l2=", "an empty value"),
        ("l2=0,,1", "an empty value"),
        ("layers[x].units=1", "is not a field path"),
        ("1.units=1", "starts with a name"),
        ("l2=0\nname: x", "line breaks are refused"),
        ("l2=a: b", "is not a YAML value"),
        ("l2=" + ",".join(["0"] * 101), "at most 100 values"),
    ],
)
def test_a_bad_set_is_refused_with_its_text(text: str, message: str) -> None:
    with pytest.raises(OverrideError) as error:
        parse(text)
    assert str(error.value).startswith("--set ")
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # Before: the line break was echoed raw, across two lines.
        (
            "description=a\nb",
            "--set description=a\\nb: control characters and line breaks are refused",
        ),
        # Before: '1e400' is not a YAML value (...); quote text that holds ': '.
        (
            "l2=1e400",
            "--set l2=1e400: '1e400' is too large: a number's size is at most 1.8e+308",
        ),
        ("l2=!!int x", "--set l2=!!int x: 'x' is not a valid '!!int' value"),
    ],
)
def test_a_bad_set_is_named_on_one_line_and_says_what_is_wrong(
    text: str, message: str
) -> None:
    with pytest.raises(OverrideError) as error:
        parse(text)
    assert str(error.value) == message


def test_a_number_too_large_for_a_float_is_too_large_in_a_spec(tmp_path: Path) -> None:
    from .conftest import compile_errors

    assert compile_errors(SMALL_SPEC.replace("l2: 0.01", "l2: -1.5e400"), tmp_path) == [
        "spec.yaml:4:5: error: l2: '-1.5e400' is too large: a number's size is at "
        "most 1.8e+308"
    ]


@given(st.lists(st.integers(1, 4), min_size=1, max_size=3))
def test_the_grid_is_every_combination_once_the_last_field_fastest(
    counts: list[int],
) -> None:
    sets = [
        parse(f"f{i}=" + ",".join(str(v) for v in range(n)))
        for i, n in enumerate(counts)
    ]
    combos = grid(sets)
    assert [tuple(o.values[0] for o in combo) for combo in combos] == list(
        itertools.product(*(range(n) for n in counts))
    )
    assert all([o.field for o in combo] == [s.field for s in sets] for combo in combos)


def _spec(tmp_path: Path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(SMALL_SPEC, encoding="utf-8")
    return path


def test_an_override_changes_the_plan_and_the_generated_header(
    tmp_path: Path,
) -> None:
    compiled = compile_spec(
        _spec(tmp_path), overrides=(parse("l2=0.5"), parse("layers[1].units=32"))
    )
    assert not isinstance(compiled, list)
    assert compiled.plan.l2 == 0.5
    assert compiled.plan.layers[1].output_shape == (32,)
    assert compiled.plan.overrides == ("l2=0.5", "layers[1].units=32")
    assert "# With --set l2=0.5\n# With --set layers[1].units=32\n" in compiled.code


def test_an_error_at_an_overridden_field_is_placed_at_its_set(
    tmp_path: Path,
) -> None:
    errors = compile_spec(
        _spec(tmp_path),
        overrides=(parse("l2=-1"), parse("train.optimizer.learning_rat=1")),
    )
    assert isinstance(errors, list)
    assert [str(e) for e in errors] == [
        "--set l2=-1: error: l2: must be greater than or equal to 0, got -1",
        "--set train.optimizer.learning_rat=1: error: train.optimizer."
        "learning_rat: unknown field 'learning_rat'; did you mean 'learning_rate'?",
    ]


def test_a_misspelt_part_of_a_path_is_placed_at_its_set(tmp_path: Path) -> None:
    errors = compile_spec(
        _spec(tmp_path), overrides=(parse("train.early_stoping.patience=3"),)
    )
    assert isinstance(errors, list)
    assert [str(e) for e in errors] == [
        "--set train.early_stoping.patience=3: error: train.early_stoping: unknown "
        "field 'early_stoping'; did you mean 'early_stopping'?"
    ]


def test_a_path_that_does_not_reach_into_the_spec_is_named(tmp_path: Path) -> None:
    errors = compile_spec(_spec(tmp_path), overrides=(parse("layers[9].units=3"),))
    assert isinstance(errors, list)
    assert str(errors[0]) == (
        "--set layers[9].units=3: error: layers has 4 entries (0 to 3); "
        "[9] is out of range"
    )
    errors = compile_spec(_spec(tmp_path), overrides=(parse("l2.x=3"),))
    assert isinstance(errors, list)
    assert "l2 is not a mapping" in str(errors[0])


def test_build_takes_one_value_per_set_and_the_manifest_records_them(
    tmp_path: Path,
) -> None:
    result = CliRunner().invoke(
        main, ["build", str(_spec(tmp_path)), "--set", "l2=0,1"]
    )
    assert result.exit_code == 2
    assert "build takes one value per field" in result.output
    result = CliRunner().invoke(
        main, ["build", str(_spec(tmp_path)), "--set", "l2=0", "--set", "l2=1"]
    )
    assert result.exit_code == 2
    assert "set the same field" in result.output


def test_eval_applies_the_builds_recorded_set(tmp_path: Path) -> None:
    from l2compile.evaluate import spec_of_build

    spec = _spec(tmp_path)
    build = tmp_path / "build"
    build.mkdir()
    (build / "model.keras").write_bytes(b"PK")
    from l2compile.manifest import file_sha256

    (build / "manifest.json").write_text(
        json.dumps(
            {
                "spec": {
                    "file": str(spec),
                    "sha256": file_sha256(spec),
                    "set": ["l2=0.5"],
                }
            }
        )
    )
    assert spec_of_build(build / "model.keras").overrides == ("l2=0.5",)
