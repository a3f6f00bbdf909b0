"""A data source is one module: a class registered from outside l2compile,
with its template fragment beside it, works end to end (the JSON Schema,
validate, generate and build) without a change to any other file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from click.testing import CliRunner

from l2compile.cli import main
from l2compile.sources import SOURCES, Source, register

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Toy(Source):
    """Two Gaussian blobs made from a seed: no files to find."""

    name: ClassVar[str] = "toy"
    title: ClassVar[str] = "toy blobs"
    template_folder: ClassVar[Path | None] = HERE / "sources"
    example: ClassVar[str] = "-"

    num_classes: int | None = 2
    labels: tuple[str, ...] = ("left", "right")

    def read(self, request: Any) -> Any:
        from l2compile import datasets

        rng = np.random.default_rng(7)
        y = rng.integers(0, 2, size=240)
        x = rng.normal(size=(240, 4)) + np.where(y[:, None] == 1, 2.0, -2.0)
        arrays = {
            "x_train": x[:180],
            "y_train": y[:180],
            "x_test": x[180:],
            "y_test": y[180:],
        }
        return datasets.check_arrays(self, arrays, "toy", request.model_input)


SPEC = """\
name: blobs
input: {shape: [4]}
l2: 0.001
layers:
  - {type: dense, units: 8, activation: relu}
  - {type: dense, units: 2, activation: softmax}
train:
  recipe: toy
  epochs: 20
  batch_size: 16
export:
  formats: [keras]
"""


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[Toy]]:
    """Toy, registered for one test (the build's child processes import this
    module to unpickle it, so the repository is put on their path)."""
    monkeypatch.setenv("PYTHONPATH", str(HERE.parent))
    register(Toy)
    yield Toy
    SOURCES.pop(Toy.name)


@pytest.mark.unit
def test_the_toy_source_is_in_the_schema_and_validates(
    toy: type[Toy], tmp_path: Path
) -> None:
    schema = CliRunner().invoke(main, ["schema"])
    assert schema.exit_code == 0
    recipe = json.loads(schema.stdout)["$defs"]["TrainSpec"]["properties"]["recipe"]
    assert recipe["enum"] == [
        "mnist",
        "fashion_mnist",
        "npz",
        "csv",
        "parquet",
        "image_folder",
        "text_folder",
        "toy",
    ]
    spec = tmp_path / "blobs.yaml"
    spec.write_text(SPEC)
    assert CliRunner().invoke(main, ["validate", str(spec)]).exit_code == 0
    # The spec's field checks come from what the source declares: it takes
    # no train.data, so a spec that gives one is refused by name.
    spec.write_text(SPEC.replace("recipe: toy", "recipe: toy\n  data: x.npz"))
    refused = CliRunner().invoke(main, ["validate", str(spec)])
    assert refused.exit_code == 2
    assert (
        "data is only for the npz, csv, parquet, image_folder and text_folder "
        "recipes; 'toy'" in refused.stderr
    )


@pytest.mark.unit
def test_an_unregistered_source_is_an_unknown_recipe(tmp_path: Path) -> None:
    spec = tmp_path / "blobs.yaml"
    spec.write_text(SPEC)
    refused = CliRunner().invoke(main, ["validate", str(spec)])
    assert refused.exit_code == 2
    assert "unknown value 'toy'" in refused.stderr


@pytest.mark.build
def test_the_toy_source_generates_and_builds(toy: type[Toy], tmp_path: Path) -> None:
    spec = tmp_path / "blobs.yaml"
    spec.write_text(SPEC)
    generated = CliRunner().invoke(
        main, ["generate", str(spec), "-o", str(tmp_path / "gen") + "/"]
    )
    assert generated.exit_code == 0, generated.output
    module = (tmp_path / "gen" / "blobs.py").read_text()
    assert "Two Gaussian blobs in four dimensions" in module
    compile(module, "blobs.py", "exec")

    out = tmp_path / "out"
    built = CliRunner().invoke(main, ["build", str(spec), "--out", str(out)])
    assert built.exit_code == 0, built.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert (out / "model.keras").is_file()
    # The blobs are far apart: the model learns them, and the build says so.
    assert metrics["test_accuracy"] > 0.9
    assert metrics["learned"] is True
