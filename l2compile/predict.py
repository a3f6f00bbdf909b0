"""`l2compile predict`: a build's model on new rows of a table, new images
or new documents, without labels.

The new data is read with the build's own rules and encoders: a table by
the columns its columns.json lists (vocabularies, date formats; missing
values as NaN and slot 0, which the model fills), an image folder's files
decoded as the build's generated module decodes them, a document tokenized
by the vocabulary the build wrote (vocab.txt). Any of the build's
artifacts runs it, and the task turns its outputs into a table: the class
predicted and each class's probability, or the targets' values.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from l2compile import evaluate, images, manifest, tables
from l2compile import overrides as overrides_
from l2compile.contract import import_generated
from l2compile.errors import BuildError
from l2compile.files import NotJson, read_bounded, read_json
from l2compile.formats import FORMATS
from l2compile.generate import Compiled, compile_spec
from l2compile.nodes import ModelPlan
from l2compile.parquet import parquet_records
from l2compile.sources.base import ReadsText
from l2compile.sources.csv import Csv

__all__ = ["MODELS", "Predictions", "predict_build"]

#: The artifact predict runs where --model is not given: the first of these
#: that the build folder holds.
MODELS = ("model.keras", "saved_model", "model.tflite")
#: The most bytes of labels.txt read.
_LABELS_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Predictions:
    """predict's table: its header (key first) and one row per input."""

    header: list[str]
    rows: list[list[str]]
    model: Path

    def csv_text(self) -> str:
        """The table as CSV text, quoted where a value needs it."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.header)
        writer.writerows(self.rows)
        return out.getvalue()


def predict_build(
    build: Path,
    data: Path,
    model: Path | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> Predictions:
    """The predictions of the model in `build` (or `model`) for `data`."""
    compiled = _compiled(build)
    plan = compiled.plan
    artifact = model if model is not None else default_model(build)
    opened = FORMATS[evaluate.kind_of(artifact)].open(artifact, plan)
    if opened.inputs is not None:
        evaluate.check_signature(artifact, plan, opened.inputs, opened.outputs)
    if plan.recipe.encodes:
        keys, x = _table(build, plan, data)
    elif plan.recipe.streamed:
        keys, x = _images(plan, compiled.code, data, log)
    elif plan.recipe.vocabulary_size:
        keys, x = _documents(plan, artifact, data)
    else:
        raise BuildError(
            f"predict reads new rows of a table (recipe csv), new images "
            f"(recipe image_folder) or new texts (text_folder, a csv's text column); "
            f"{build} "
            f"was built from recipe {plan.recipe.name!r}: use its generated module"
        )
    log(f"predicting {len(keys):,} samples with {artifact}")
    outputs = np.asarray(opened.predict(x))
    header, rows = plan.task.prediction_table(outputs, _names(build, plan))
    return Predictions(
        ["key", *header],
        [[key, *row] for key, row in zip(keys, rows, strict=True)],
        artifact,
    )


def default_model(build: Path) -> Path:
    """The build's artifact that predict runs by default."""
    for name in MODELS:
        if (build / name).exists():
            return build / name
    if not (build / manifest.NAME).is_file():
        raise BuildError(f"{build}: not a build folder (it has no {manifest.NAME})")
    raise BuildError(f"{build}: holds none of {', '.join(MODELS)}; pass --model")


def _compiled(build: Path) -> Compiled:
    """The spec the build was made from, with the fields it overrode."""
    found = evaluate.spec_of_build(default_model(build))
    try:
        sets = tuple(overrides_.parse(text) for text in found.overrides)
    except overrides_.OverrideError as exc:
        raise BuildError(f"{found.manifest}: spec.set: {exc}") from None
    compiled = compile_spec(found.spec, overrides=sets)
    if isinstance(compiled, list):
        raise BuildError(
            f"{found.spec} no longer compiles: " + "; ".join(map(str, compiled))
        )
    return compiled


def _table(build: Path, plan: ModelPlan, data: Path) -> tuple[list[str], Any]:
    """New rows, read by the columns the build's columns.json lists."""
    listed = build / manifest.COLUMNS
    try:
        inputs = read_json(listed, manifest.MAX_COLUMNS_BYTES)["columns"]
    except (OSError, NotJson, KeyError, TypeError) as exc:
        raise BuildError(f"{listed}: cannot read the model's columns: {exc}") from None
    if not isinstance(inputs, list) or not all(isinstance(c, dict) for c in inputs):
        raise BuildError(f"{listed}: columns is not a list of columns")
    recipe = plan.recipe
    assert isinstance(recipe, Csv), "a table's recipe reads like csv's"
    if not data.exists():
        raise BuildError(f"{data}: no such file or folder")
    # Where train.features picked the model's columns, the others were never
    # read, so a file may keep them; else each column was read, and another
    # one means other data.
    ignored = [t.name for t in recipe.types if t.kind == "ignore"]
    allowed = None if recipe.features is not None else (*recipe.label, *ignored)
    # A table is read by its own kind: a Parquet file or folder, else CSV
    # (both give the same text cells, so either feeds any table's model).
    parquet = data.is_dir() or data.suffix.lower() == ".parquet"
    records = parquet_records if parquet else tables.csv_records
    lines, x = tables.read_inputs(data, inputs, allowed, records)
    if not lines:
        raise BuildError(f"{data}: no data rows")
    return [str(line) for line in lines], x


def _images(
    plan: ModelPlan, code: str, data: Path, log: Callable[[str], None]
) -> tuple[list[str], Any]:
    """New images, decoded by the build's generated module."""
    paths, keys = images.new_images(data)
    found = np.array(paths)
    images.check_decodable(found)
    with tempfile.TemporaryDirectory() as folder:
        module_path = Path(folder) / f"{plan.name}.py"
        module_path.write_text(code, encoding="utf-8")
        generated = import_generated(
            module_path, f"predict_{plan.name}", plan.distribute, plan.optional_members
        )
        x, _ = generated.preprocess(found, np.zeros(len(found), np.int64))
    return keys, x


def _documents(plan: ModelPlan, artifact: Path, data: Path) -> tuple[list[str], Any]:
    """New texts (a text folder's .txt files, a csv's text column), tokenized
    by the vocabulary the model was trained with."""
    from l2compile import documents, text

    vocabulary = documents.trained_vocabulary(artifact)
    recipe = plan.recipe
    assert isinstance(recipe, ReadsText), "a text model's recipe reads text"
    keys, texts = recipe.new_texts(data)
    settings = recipe.settings
    tokenizer = text.Tokenizer(settings.regex, settings.lowercase)
    ids = {token: i for i, token in enumerate(vocabulary)}
    (max_len,) = plan.input_shape
    return keys, documents.encode_texts(texts, tokenizer, ids, max_len, len(texts))


def _names(build: Path, plan: ModelPlan) -> Sequence[str]:
    """The classes as the build named them: labels.txt (written beside a
    TFLite file), else metrics.json's confusion matrix's labels, else the
    task's labels or targets."""
    path = build / "labels.txt"
    if path.is_file():
        text = read_bounded(path, _LABELS_BYTES).decode("utf-8")
        names = text.splitlines()
        if len(names) == plan.task.class_count:
            return names
    try:
        metrics = read_json(build / "metrics.json", _LABELS_BYTES)
        labels = metrics["test_confusion"]["labels"]
    except (OSError, NotJson, KeyError, TypeError):
        return plan.task.names
    if isinstance(labels, list) and len(labels) == plan.task.class_count:
        return [str(label) for label in labels]
    return plan.task.names
