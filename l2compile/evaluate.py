"""`l2compile eval`: score any artifact of a build on its recipe's test split.

The data is preprocessed by the spec's generated module, as in the build, so
an artifact is scored on exactly the inputs it was trained for. Which spec that
is comes from `--spec`, or from the build's manifest.json; the artifact's input
and output shapes are checked against it before anything runs, because a
SavedModel fed the wrong shape can abort the whole process.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy.typing as npt

from l2compile import formats, manifest
from l2compile.contract import import_generated
from l2compile.datasets import Dataset, load_dataset
from l2compile.errors import BuildError, some_of
from l2compile.files import NotJson, read_json
from l2compile.formats import FORMATS
from l2compile.formats.base import TensorShape
from l2compile.nodes import ModelPlan


@dataclass(frozen=True)
class Evaluation:
    """An artifact's scores on a test split."""

    kind: str
    samples: int
    data: str
    scores: dict[str, float]  #: each of the task's metrics
    loss: float
    loss_note: str
    size_bytes: int
    mean_latency_ms: float
    batch: int
    #: The scores class by class (or target by target): Task.breakdown.
    breakdown: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildSpec:
    """The spec a build's manifest names, found from the current folder."""

    spec: Path
    manifest: Path
    overrides: tuple[str, ...] = ()  #: the build's --set, as given


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def kind_of(path: Path) -> str:
    """Which artifact `path` is: the name of its format (l2compile.formats)."""
    for name, found in FORMATS.items():
        if found.recognizes(path):
            return name
    if not path.exists():
        raise BuildError(f"{path}: no such file or folder")
    raise BuildError(
        f"{path}: not an artifact l2compile can evaluate ({formats.artifacts()})"
    )


def _read_manifest(artifact: Path, path: Path) -> Any:
    try:
        return manifest.read(path)
    except FileNotFoundError:
        raise BuildError(
            f"{artifact} has no build manifest beside it ({path}) to name "
            "the spec it was built from; pass --spec"
        ) from None
    except manifest.Unreadable as exc:
        raise BuildError(f"{exc}; pass --spec") from None


def _is_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except (OSError, ValueError):  # ValueError: a NUL in the name
        return False


def spec_of_build(artifact: Path) -> BuildSpec:
    """The spec that the build of `artifact` was made from, as the build's
    manifest.json names it, if it is still there and unchanged."""
    kind_of(artifact)  # a missing artifact is named as such first
    # model.keras and *.tflite lie in the build folder, saved_model/ in it too.
    named = artifact if artifact.name not in ("", "..") else artifact.resolve()
    found_at = named.parent / manifest.NAME
    recorded = _read_manifest(artifact, found_at)
    spec = recorded.get("spec") if isinstance(recorded, dict) else None
    if not isinstance(spec, dict):
        spec = {}
    file, sha = spec.get("file"), spec.get("sha256")
    if not (isinstance(file, str) and file and isinstance(sha, str) and sha):
        raise BuildError(
            f"{found_at} is not a build manifest (it names no spec.file and "
            "spec.sha256); pass --spec"
        )
    # spec.file is relative to where the build ran; try it from here first.
    candidates = [Path(file)]
    from_build = spec.get(manifest.FROM_BUILD)
    if isinstance(from_build, str) and from_build:
        candidates.append(Path(os.path.normpath(found_at.parent / from_build)))
    found = next((path for path in candidates if _is_file(path)), None)
    if found is None:
        raise BuildError(
            f"the build's manifest ({found_at}) names {file}, which is not there "
            "from here; pass --spec"
        )
    try:
        now = manifest.file_sha256(found)
    except OSError as exc:
        raise BuildError(f"cannot read {found}: {exc.strerror}; pass --spec") from None
    if now != sha.lower():
        raise BuildError(
            f"{found} changed since the build (sha256 {sha[:12]} then, {now[:12]} "
            "now); pass --spec to score against it anyway"
        )
    sets = spec.get("set", [])
    if not (isinstance(sets, list) and all(isinstance(s, str) for s in sets)):
        raise BuildError(f"{found_at}: spec.set is not a list of FIELD=VALUE")
    return BuildSpec(spec=found, manifest=found_at, overrides=tuple(sets))


def _fits(shape: TensorShape, expected: tuple[int, ...]) -> bool:
    """Whether `shape`, without its batch dimension, is `expected`."""
    if shape is None:  # not known: nothing to hold against it
        return True
    rest = shape[1:]
    return len(rest) == len(expected) and all(
        d is None or d == e for d, e in zip(rest, expected, strict=True)
    )


def _shape_text(shape: TensorShape) -> str:
    if shape is None:
        return "unknown"
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def check_signature(
    path: Path,
    plan: ModelPlan,
    inputs: Sequence[TensorShape],
    outputs: Sequence[TensorShape],
) -> None:
    """Refuse an artifact whose input or output does not fit `plan`'s spec."""
    spec = plan.source_file
    advice = "score it against the spec it was built from"
    if len(inputs) != 1:
        raise BuildError(
            f"{path} takes {len(inputs)} inputs, but {spec}'s model takes one; {advice}"
        )
    # A csv model takes a value per feature column and encodes them into
    # input.shape itself; reading the data checks those columns against it.
    if not plan.recipe.encodes and not _fits(inputs[0], plan.input_shape):
        raise BuildError(
            f"{path} takes input of shape {_shape_text(inputs[0])}, but "
            f"{spec}'s input.shape is {list(plan.input_shape)}; {advice}"
        )
    if len(outputs) != 1:
        raise BuildError(
            f"{path} gives {len(outputs)} outputs, but {spec}'s model gives one; "
            f"{advice}"
        )
    if not _fits(outputs[0], plan.task.output_shape):
        raise BuildError(
            f"{path} gives output of shape {_shape_text(outputs[0])}, but "
            f"{spec}'s {plan.task.output_origin(plan.recipe)}; {advice}"
        )


def evaluate_artifact(
    path: Path,
    plan: ModelPlan,
    code: str,
    data: Path | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> Evaluation:
    """Score the artifact at `path` on the test split of `plan`'s recipe,
    after checking that its input and output fit `plan`."""
    kind = kind_of(path)
    opened = FORMATS[kind].open(path, plan)
    if opened.inputs is not None:  # before the data: a wrong shape stops here
        check_signature(path, plan, opened.inputs, opened.outputs)
    trained = None
    if plan.recipe.encodes:
        trained = trained_columns(path, log)
        plan = _read_by_name(plan, trained)
    vocabulary = None
    if plan.recipe.vocabulary_size:  # new text is read by the trained vocabulary
        from l2compile import documents

        vocabulary = documents.trained_vocabulary(path)
    dataset = load_dataset(
        plan.recipe,
        data,
        spec_path=plan.data_path,
        model_input=plan.model_input,
        seed=plan.split_seed,
        test_path=plan.test_path,
        vocabulary=vocabulary,
    )
    for warning in dataset.warnings:
        log(warning)
    if plan.recipe.encodes:
        _check_columns(path, dataset, trained)
    if plan.recipe.streamed:  # a file that does not decode is named, as build does
        from l2compile import images

        images.check_decodable(dataset.x_test)
    x, targets = _test_split(plan, code, dataset)
    scores = opened.score(x, targets)
    names = dataset.classes or plan.task.names
    return Evaluation(
        kind=kind,
        samples=len(targets),
        data=dataset.source,
        scores=scores.scores,
        loss=scores.loss,
        loss_note=scores.loss_note,
        size_bytes=_size(path),
        mean_latency_ms=scores.mean_latency_ms,
        batch=scores.batch,
        breakdown=plan.task.breakdown(scores.outputs, targets, names),
    )


#: The files beside an artifact that list the columns its model reads, and
#: where in each.
_COLUMN_FILES = ((manifest.COLUMNS, ("columns",)), ("model.json", ("input", "columns")))


@dataclass(frozen=True)
class TrainedColumns:
    """The columns a csv model was trained on, in order, with each text
    column's vocabulary, and the file that lists them."""

    names: tuple[str, ...]
    vocabularies: tuple[tuple[str, ...], ...]
    file: Path


def trained_columns(path: Path, log: Callable[[str], None]) -> TrainedColumns | None:
    """The columns listed beside the artifact (its build's columns.json, or
    model.json); None, said in `log`, where no file lists them."""
    folder = Path(path).resolve().parent
    for name, keys in _COLUMN_FILES:
        found = folder / name
        try:
            listed: Any = read_json(found, manifest.MAX_COLUMNS_BYTES)
            for key in keys:
                listed = listed[key]
            return TrainedColumns(
                tuple(str(c["name"]) for c in listed),
                tuple(tuple(map(str, c.get("vocabulary", ()))) for c in listed),
                found,
            )
        except FileNotFoundError:
            continue
        except (OSError, NotJson) as exc:
            raise BuildError(f"{found}: cannot be read: {exc}") from None
        except (KeyError, TypeError, AttributeError):
            continue  # an older build's file, without the columns
    names = " nor ".join(name for name, _ in _COLUMN_FILES)
    log(
        f"warning: neither {names} beside {path} lists the "
        "columns its model was trained on: the data's columns are read in the "
        "file's order, unchecked"
    )
    return None


def _read_by_name(plan: ModelPlan, trained: TrainedColumns | None) -> ModelPlan:
    """The plan reading the trained columns by name, in the trained order,
    where the spec does not list them itself (the file's order may differ)."""
    if trained is None or plan.recipe.features is not None:
        return plan
    # A date column is several inputs of one name: each column once.
    names = tuple(dict.fromkeys(trained.names))
    recipe = dataclasses.replace(plan.recipe, features=names)
    return dataclasses.replace(plan, recipe=recipe)


def _check_columns(
    path: Path, dataset: Dataset, trained: TrainedColumns | None
) -> None:
    """A csv model's columns must be the trained ones, in the trained order,
    and its text columns encoded as they were trained."""
    if trained is None:
        return
    names = tuple(c.name for c in dataset.columns)
    if names != trained.names:
        raise BuildError(
            f"{dataset.source}: the spec's features are "
            f"{some_of(names, limit=8)}, but {path} was trained on "
            f"{some_of(trained.names, limit=8)}, in that order ({trained.file})"
        )
    for column, vocabulary in zip(dataset.columns, trained.vocabularies, strict=True):
        if tuple(column.vocabulary or ()) != vocabulary:
            raise BuildError(
                f"{dataset.source}: column {column.name!r} is encoded otherwise "
                f"than {path} was trained ({trained.file}: vocabulary "
                f"{some_of(vocabulary, limit=6) or 'none'}; this data's: "
                f"{some_of(column.vocabulary or (), limit=6) or 'none'}): score "
                "it on data with the training split's values"
            )


def _test_split(
    plan: ModelPlan, code: str, dataset: Dataset
) -> tuple[Any, npt.NDArray[Any]]:
    """The test split preprocessed by `code`, the spec's generated module, and
    its targets as the task scores them."""
    with tempfile.TemporaryDirectory() as folder:
        module_path = Path(folder) / f"{plan.name}.py"
        module_path.write_text(code, encoding="utf-8")
        generated = import_generated(
            module_path, f"eval_{plan.name}", plan.distribute, plan.optional_members
        )
        x, y = generated.preprocess(dataset.x_test, dataset.y_test)
    return x, plan.task.targets(y)


#: eval prints every class's scores up to this many classes, else the lowest
#: recalls; and the confusion matrix up to CONFUSION_CLASSES.
LISTED_CLASSES = 50
CONFUSION_CLASSES = 20
_NAME = 24  #: characters of a class name shown in a column


def breakdown_lines(breakdown: dict[str, Any]) -> list[str]:
    """What eval prints of the scores class by class (or target by target)."""
    lines = [
        f"{name + ':':<10} {breakdown[name]:.4f}"
        for name in ("balanced_accuracy", "macro_f1")
        if name in breakdown
    ]
    if "per_target" in breakdown:
        lines.append("per target:")
        lines += _columns(
            ["target", "mae", "rmse"],
            [
                [name, f"{s['mae']:.4f}", f"{s['rmse']:.4f}"]
                for name, s in breakdown["per_target"].items()
            ],
        )
    per_class: dict[str, dict[str, float]] = breakdown.get("per_class", {})
    if per_class:
        shown = list(per_class.items())
        title = "per class:"
        if len(shown) > LISTED_CLASSES:
            shown = sorted(shown, key=lambda item: item[1]["recall"])[:LISTED_CLASSES]
            title = f"per class ({LISTED_CLASSES} of {len(per_class)}, lowest recall):"
        lines.append(title)
        lines += _columns(
            ["class", "precision", "recall", "f1", "support"],
            [
                [
                    name,
                    *(f"{s[k]:.4f}" for k in ("precision", "recall", "f1")),
                    str(int(s["support"])),
                ]
                for name, s in shown
            ],
        )
    confusion = breakdown.get("confusion", {})
    labels = confusion.get("labels", [])
    if labels and not confusion.get("per_label") and len(labels) <= CONFUSION_CLASSES:
        lines.append("confusion (rows: the true class, columns: the predicted):")
        lines += _columns(
            ["", *labels],
            [
                [name, *map(str, row)]
                for name, row in zip(labels, confusion["counts"], strict=True)
            ],
        )
    return lines


def _columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as aligned columns, indented; names cut to _NAME characters."""
    cells = [
        [c if len(c) <= _NAME else c[: _NAME - 1] + "…" for c in row]
        for row in [list(header), *map(list, rows)]
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
