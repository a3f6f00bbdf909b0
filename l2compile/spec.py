"""The spec: what a user writes, as pydantic models, and its validation.

This stage only checks that each field is well-formed on its own. What depends
on several fields at once (shapes, the recipe's classes) is checked while
planning, in `l2compile.plan`.
"""

from __future__ import annotations

import datetime
import functools
import importlib.machinery
import importlib.metadata
import os
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Literal,
    Union,
    get_args,
    get_origin,
)

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Discriminator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    Tag,
    TypeAdapter,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError, core_schema

from l2compile import text as text_
from l2compile.backends import DEFAULT as DEFAULT_BACKEND
from l2compile.backends import Choice as BackendChoice
from l2compile.errors import FieldPath, SpecError, closest, spoken_list
from l2compile.fields import (
    Identifier,
    L2Coefficient,
    PositiveInt,
    StrictModel,
    is_identifier,
)
from l2compile.fields import unique as _unique
from l2compile.formats import DEFAULT_FORMATS, FORMAT_NAMES, FORMATS
from l2compile.layers import KINDS, LAYER_TYPES, LayerSpec
from l2compile.overrides import Override, apply
from l2compile.source import Document, read_spec_file
from l2compile.sources import SOURCES
from l2compile.sources.base import taking
from l2compile.tasks import LOSSES, METRICS, TASKS

# The generated module is run as a script from its own folder, which then comes
# first on the import path: a model named after any module the run may load
# would shadow it. The standard library and the modules the generated code
# imports are listed here; any other installed module is found on the path.
_SHADOWED = (
    frozenset(sys.stdlib_module_names)
    | frozenset(sys.builtin_module_names)
    | {"keras", "numpy", "tensorflow"}
)


def _import_path() -> tuple[str, ...]:
    """Where installed modules live: sys.path less the working folder, whose
    files (an earlier generated module, say) are the user's own."""
    try:
        here = os.path.realpath(os.getcwd())
    except OSError:  # the working folder was removed
        here = ""
    return tuple(p for p in sys.path if p and os.path.realpath(p) != here)


@functools.cache
def _installed_module(name: str, path: tuple[str, ...]) -> bool:
    """Whether `name` is an installed top-level module or package, found
    without importing it. A namespace package counts only where an installed
    distribution provides it (`google`), since any folder on the path makes one."""
    found = importlib.machinery.PathFinder.find_spec(name, list(path))
    if found is None:
        return False
    if found.origin is not None:
        return True
    return name in _distribution_packages()


@functools.cache
def _distribution_packages() -> frozenset[str]:
    return frozenset(importlib.metadata.packages_distributions())


def _true_false_or_auto(value: object) -> object:
    """One error for jit_compile, not one per member of its union."""
    if value is True or value is False or value == "auto":
        return value
    raise PydanticCustomError("true_false_auto", "must be true, false or auto")


def _test_or_share(value: object) -> object:
    """One error for train.validation, not one per member of its union."""
    if value == "test":
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1:
        return float(value)
    raise PydanticCustomError(
        "test_or_share",
        "must be test, or the share of the training data to hold out for "
        "validation, above 0 and below 1",
    )


def _balanced_or_weights(value: object) -> object:
    """One error for train.class_weight, not one per member of its union."""
    if value == "balanced" or value is None:
        return value
    if isinstance(value, list) and value:
        for i, weight in enumerate(value):
            if (
                isinstance(weight, bool)
                or not isinstance(weight, int | float)
                or not weight > 0
                or weight == float("inf")
            ):
                raise PydanticCustomError(
                    "class_weights",
                    "class_weight[{i}] must be a number above 0",
                    {"i": i},
                )
        return [float(w) for w in value]
    raise PydanticCustomError(
        "class_weights",
        "must be balanced, or a list of weights, one per class",
    )


def _column_or_columns(value: object) -> object:
    """One error for train.label, not one per member of its union."""
    if isinstance(value, str) and value:
        return value
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, str) and v for v in value)
    ):
        repeated = sorted({v for v in value if value.count(v) > 1})
        if repeated:
            raise PydanticCustomError(
                "value_error", "{error}", {"error": f"{repeated[0]!r} is listed twice"}
            )
        return value
    raise PydanticCustomError(
        "column_names", "must be a column name, or a list of column names"
    )


def _one_line(value: str) -> str:
    if not value.isprintable():
        raise ValueError(
            "must be printable text on one line (it is a line of labels.txt)"
        )
    return value


def _check_module_name(value: str) -> str:
    if value in _SHADOWED:
        raise ValueError(
            f"{value!r} would shadow the Python module of the same name "
            "in the generated code; choose another name"
        )
    if _installed_module(value, _import_path()):
        raise ValueError(
            f"{value!r} would shadow the installed Python module of the same name "
            "when the generated code runs; choose another name"
        )
    return value


ModuleName = Annotated[Identifier, AfterValidator(_check_module_name)]


def module_name_problem(value: str) -> str | None:
    """Why `value` cannot be a spec's name (None: it can)."""
    try:
        TypeAdapter(ModuleName).validate_python(value)
    except ValidationError as error:
        return "; ".join(
            str(e["ctx"]["error"]) if "ctx" in e and "error" in e["ctx"] else e["msg"]
            for e in error.errors()
        )
    return None


#: Names written one a line into labels.txt and model.json.
Names = list[
    Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_one_line)]
]

if TYPE_CHECKING:
    Layer = LayerSpec
else:
    # One class per layer kind, told apart by `type`: the registry's kinds.
    Layer = Annotated[
        Union[tuple(KINDS[name] for name in LAYER_TYPES)],  # noqa: UP007 (a runtime tuple)
        Field(discriminator="type"),
    ]


if TYPE_CHECKING:
    LossName = str
    MetricName = str
    TaskName = str
else:
    LossName = Literal[tuple(LOSSES)]
    MetricName = Literal[METRICS]
    TaskName = Literal[tuple(TASKS)]


#: The shape a spec is planned with where input.shape is left out, until
#: the build derives it from the data (a csv table's width after encoding).
DERIVED_SHAPE = (1,)


class InputSpec(StrictModel):
    shape: Annotated[list[PositiveInt], Field(min_length=1, max_length=8)] | None = (
        Field(
            default=None,
            description="Each sample's shape. A csv table's may be left out: the "
            "build derives it from the data (the width after encoding).",
        )
    )

    @property
    def planned(self) -> tuple[int, ...]:
        """The shape the spec is planned with: input.shape, else
        DERIVED_SHAPE until the data gives it."""
        return tuple(self.shape) if self.shape is not None else DERIVED_SHAPE


LearningRate = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class ScheduleSpec(StrictModel):
    """A learning-rate schedule, as a Keras LearningRateSchedule that steps
    with every batch (epochs are counted in the training split's batches)."""

    schedule: Literal["constant", "cosine", "step"] = Field(
        description="constant; cosine (decays to alpha times initial over the "
        "epochs after warmup, keras.optimizers.schedules.CosineDecay); step "
        "(multiplies by drop every every_epochs, ExponentialDecay staircase)."
    )
    initial: LearningRate = Field(
        description="The learning rate it starts from (cosine: after warmup)."
    )
    warmup_epochs: Annotated[int, Field(ge=0, le=10_000)] = Field(
        default=0,
        description="cosine: epochs over which the rate rises linearly from 0 "
        "to initial.",
    )
    alpha: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = Field(
        default=0.0, description="cosine: the final rate, as a share of initial."
    )
    drop: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] = Field(
        default=0.5, description="step: what the rate is multiplied by."
    )
    every_epochs: Annotated[int, Field(ge=1, le=10_000)] | None = Field(
        default=None, description="step: how many epochs between drops."
    )

    @model_validator(mode="after")
    def _own_fields(self) -> ScheduleSpec:
        owners = {
            "warmup_epochs": "cosine",
            "alpha": "cosine",
            "drop": "step",
            "every_epochs": "step",
        }
        for name, owner in owners.items():
            if name in self.model_fields_set and self.schedule != owner:
                raise PydanticCustomError(
                    "recipe_field",
                    "{field} is only for schedule {owner}",
                    {"field": name, "owner": owner},
                )
        if self.schedule == "step" and self.every_epochs is None:
            raise PydanticCustomError(
                "recipe_field",
                "schedule step needs every_epochs: how many epochs between drops",
                {"field": "every_epochs"},
            )
        return self


def _rate_or_schedule(value: object) -> str:
    """Which member of learning_rate a value is meant for."""
    return _SCHEDULE if isinstance(value, dict) else _RATE


#: The tags of learning_rate's members, which error paths leave out.
_RATE, _SCHEDULE = "<rate>", "<schedule>"


class OptimizerSpec(StrictModel):
    type: Literal["adam", "sgd", "rmsprop"] = "adam"
    learning_rate: Annotated[
        Annotated[LearningRate, Tag(_RATE)] | Annotated[ScheduleSpec, Tag(_SCHEDULE)],
        Discriminator(_rate_or_schedule),
    ] = Field(
        default=0.001,
        description="A constant rate, or a schedule: {schedule: cosine, "
        "initial: 0.001, warmup_epochs: 1}.",
    )
    weight_decay: L2Coefficient = Field(
        default=0.0,
        description="Decoupled weight decay (AdamW for adam) on the weights the "
        "l2 rules reach.",
    )
    weight_decay_with_l2: bool = Field(
        default=False,
        description="Allow weight decay and an L2 penalty on the same weights.",
    )


DataPath = Annotated[str, Field(min_length=1, max_length=4096)]
ColumnName = Annotated[str, Field(min_length=1, max_length=256)]


class SplitFiles(StrictModel):
    """A csv recipe's training and test tables, as two files."""

    train: DataPath
    test: DataPath


NumericFill = Literal["median", "mean", "zero", "error"]
CategoryFill = Literal["own_category", "most_frequent", "error"]
#: A single column's policy: one of either kind's, checked against the
#: column's kind when the data is read.
ColumnFill = Literal["median", "mean", "zero", "own_category", "most_frequent", "error"]


class MissingSpec(StrictModel):
    """csv recipe: what a missing feature value becomes (docs/data.md). The
    fill values come from the training rows and live in the model."""

    numeric: NumericFill = Field(
        default="median",
        description="A numeric column's missing values: the training rows' "
        "median, mean, zero, or error (the build stops).",
    )
    categorical: CategoryFill = Field(
        default="own_category",
        description="A text column's missing values: own_category (the "
        "out-of-vocabulary slot, which training then sees), most_frequent "
        "(the training rows' commonest value) or error.",
    )
    indicator: bool = Field(
        default=False,
        description="Add a was-missing input (1 or 0) for each numeric column "
        "whose training rows miss a value.",
    )
    columns: dict[ColumnName, ColumnFill] = Field(
        default_factory=dict,
        description="A policy for single columns, over numeric and categorical.",
    )


ColumnKind = Literal["numeric", "categorical", "date", "text", "ignore"]


def _strptime_format(value: str) -> str:
    """A format datetime.strptime reads: a date written with it reads back."""
    sample = datetime.datetime(2001, 2, 3, 4, 5, 6)
    try:
        datetime.datetime.strptime(sample.strftime(value), value)
    except ValueError as exc:
        raise ValueError(
            f"is not a date format that strptime reads ({exc}); e.g. '%d/%m/%Y'"
        ) from None
    return value


#: A strftime format, as Python's datetime.strptime reads it.
DateFormat = Annotated[
    str,
    Field(min_length=2, max_length=64, pattern=r"%"),
    AfterValidator(_strptime_format),
]


class DateColumn(StrictModel):
    """A date column with its format: {type: date, format: "%d/%m/%Y"}."""

    type: Literal["date"]
    format: DateFormat | None = None


def _kind_or_date(value: object) -> str:
    """Which member of a column type a value is meant for."""
    return _DATE if isinstance(value, dict) else _KIND


#: The tags of a column type's members, which error paths leave out.
_KIND, _DATE = "<kind>", "<date>"
#: A column type: a word, or a mapping for a date with its format.
ColumnType = Annotated[
    Annotated[ColumnKind, Tag(_KIND)] | Annotated[DateColumn, Tag(_DATE)],
    Discriminator(_kind_or_date),
]


def _splits_text(value: str) -> str:
    """A delimiter regex that MediaPipe's tokenizer (RE2) and Python's `re`
    split text by the same way."""
    problem = text_.regex_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


class TextSpec(StrictModel):
    """Text recipes: how documents become token ids, as MediaPipe's
    TextClassifier makes them (docs/text.md)."""

    max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        default=text_.DEFAULT_MAX_TOKENS,
        description="How many of the training split's most frequent tokens "
        "the vocabulary keeps, besides <PAD>, <START> and <UNKNOWN>.",
    )
    lowercase: bool = Field(
        default=False,
        description="Lower-case ASCII letters before splitting. MediaPipe's "
        "TextClassifier does not, so an app must lower-case text itself.",
    )
    regex: Annotated[
        str, Field(min_length=1, max_length=256), AfterValidator(_splits_text)
    ] = Field(
        default=text_.DEFAULT_REGEX,
        description="The delimiter regex (RE2 on the device, Python's re in "
        "ASCII mode here): text splits at its matches.",
    )


class TrackingSpec(StrictModel):
    """Where a build's runs are recorded besides its folder (docs/tracking.md)."""

    mlflow: bool = Field(
        default=False,
        description="Log the build as an MLflow run: the spec's fields, each "
        "epoch's metrics with the L2 penalty apart, the test scores and the "
        "files. To MLFLOW_TRACKING_URI, else to mlflow.db in the working "
        "folder. Needs l2compile[mlflow].",
    )
    tensorboard: bool = Field(
        default=False,
        description="Write each epoch's metrics as TensorBoard event files in "
        "the build's tensorboard/ folder. Needs l2compile[tensorboard].",
    )


class SourceName(str):
    """train.recipe: the name of a registered data source (l2compile.sources).

    Checked against the registry when a spec is validated, and listed in the
    JSON Schema when it is made, so a source registered after this module
    was imported is known to both.
    """

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(cls._check)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        return {"enum": list(SOURCES), "type": "string"}

    @staticmethod
    def _check(value: Any) -> str:
        if isinstance(value, str) and value in SOURCES:
            return value
        raise PydanticCustomError(
            "literal_error",
            "Input should be {expected}",
            {"expected": " or ".join(repr(name) for name in SOURCES)},
        )


def _only_for(field: str, words: str) -> str:
    """'{words} is only for the csv recipe', or '... the npz and csv recipes',
    naming the sources that take `field`."""
    names = taking(field)
    plural = "recipes" if len(names) > 1 else "recipe"
    return f"{words} only for the {spoken_list(names)} {plural}"


def _path_or_files(value: object) -> str:
    """Which member of train.data a value is meant for: a mapping is the csv
    recipe's train and test files, anything else one path."""
    return _FILES if isinstance(value, dict) else _PATH


#: The tags of train.data's members, which error paths leave out.
_PATH, _FILES = "<path>", "<files>"


class EarlyStoppingSpec(StrictModel):
    """Stop training when a validation score has stopped improving
    (keras.callbacks.EarlyStopping)."""

    monitor: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        default="val_loss",
        description="What to watch: val_loss, or val_ and a metric's name.",
    )
    patience: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=3, description="Epochs without improvement before it stops."
    )
    min_delta: Annotated[float, Field(ge=0, allow_inf_nan=False)] = Field(
        default=0.0, description="The least change that counts as improvement."
    )
    restore_best_weights: bool = Field(
        default=True,
        description="End with the weights of the best epoch, not the last.",
    )


class TrainSpec(StrictModel):
    recipe: SourceName
    data: (
        Annotated[
            Annotated[DataPath, Tag(_PATH)] | Annotated[SplitFiles, Tag(_FILES)],
            Discriminator(_path_or_files),
        ]
        | None
    ) = Field(
        default=None,
        description="npz, csv, parquet and image_folder recipes: the .npz file, "
        "the CSV file (or {train: a.csv, test: b.csv}), the Parquet file or "
        "folder, or the folder of images, relative to the spec file; --data "
        "overrides it.",
    )
    label: Annotated[
        ColumnName | list[ColumnName] | None, BeforeValidator(_column_or_columns)
    ] = Field(
        default=None,
        description="csv recipe: the label column, or a list of columns "
        "(multilabel, or regression with several targets).",
    )
    features: (
        Annotated[list[ColumnName], Field(min_length=1), AfterValidator(_unique)] | None
    ) = Field(
        default=None,
        description="csv recipe: the feature columns, in the order the model "
        "reads them; default: every column but the labels, in the file's order.",
    )
    missing: MissingSpec | None = Field(
        default=None,
        description="csv recipe: what missing feature values become "
        "(default: numbers the training median, text its own category); a "
        "row without a label is dropped.",
    )
    columns: dict[ColumnName, ColumnType] | None = Field(
        default=None,
        description="csv recipe: a type for some columns: numeric, categorical, "
        "date (or {type: date, format: '%d/%m/%Y'}) or ignore; the others are "
        "inferred.",
    )
    text: TextSpec | None = Field(
        default=None,
        description="text_folder recipe: the tokenizer and vocabulary "
        "(default: MediaPipe's regex tokenizer, 10,000 tokens).",
    )
    tracking: TrackingSpec = Field(
        default=TrackingSpec(),
        description="Record the build as an MLflow run and TensorBoard logs "
        "(build --track adds to it).",
    )
    test_split: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] | None = Field(
        default=None,
        description="csv and image_folder recipes: the share of the data to "
        "test on (seeded; stratified by class for image folders), where "
        "there is no separate test file or folder.",
    )
    num_classes: Annotated[int, Field(ge=1, le=1_000_000)] | None = Field(
        default=None,
        description="npz recipe: how many classes (task classification) or "
        "labels (multilabel) the data has.",
    )
    labels: Names | None = Field(
        default=None,
        description="npz recipe: a name for each class (binary: the negative, "
        "then the positive), label or regression target.",
    )
    target_units: Names | None = Field(
        default=None,
        description="task regression: the unit of each target, for model.json.",
    )
    optimizer: OptimizerSpec = OptimizerSpec()
    loss: LossName | None = Field(
        default=None,
        description="The loss; defaults to the task's (docs/tasks.md).",
    )
    metrics: (
        Annotated[list[MetricName], Field(min_length=1), AfterValidator(_unique)] | None
    ) = Field(
        default=None,
        description="What training logs and the build reports; defaults to the "
        "task's (docs/tasks.md).",
    )
    top_k: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        default=5, description="The k of metric top_k_accuracy."
    )
    label_smoothing: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = Field(
        default=0.0,
        description="Label smoothing of the cross-entropy losses that take it.",
    )
    class_weight: Annotated[
        Literal["balanced"] | list[float] | None,
        BeforeValidator(_balanced_or_weights),
    ] = Field(
        default=None,
        description="Weigh each sample's loss by its class: balanced (the "
        "inverse of each class's share of the training data) or one weight per "
        "class. Tasks classification and binary.",
    )
    validation: Annotated[Literal["test"] | float, BeforeValidator(_test_or_share)] = (
        Field(
            default=0.1,
            description="What training validates on: a seeded share of the training "
            "split, never trained on, or test (the article's way, which picks "
            "settings on the data it then reports).",
        )
    )
    epochs: Annotated[int, Field(gt=0, le=100_000)]
    early_stopping: EarlyStoppingSpec | None = Field(
        default=None,
        description="Stop when the validation split's score stops improving.",
    )
    batch_size: Annotated[int, Field(gt=0, le=1_000_000)]
    initial_weights: DataPath | None = Field(
        default=None,
        description="A weights file (.weights.h5) the model starts from, as "
        "`l2compile import --weights-from-model` writes it: build_model() loads "
        "it. It must hold a weight of each shape the plan has.",
    )
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = Field(
        default=0,
        description="Seeds the initial weights, dropout and each epoch's data "
        "order (and the data split, unless split_seed is set).",
    )
    split_seed: Annotated[int, Field(ge=0, le=2**32 - 1)] | None = Field(
        default=None,
        description="Seeds the data split: which samples test (test_split) and "
        "which validate (validation). Default: seed. A sweep keeps it fixed, so "
        "that every trial trains, validates and tests on the same samples.",
    )
    batchnorm_statistics: Literal["recompute", "keep"] = Field(
        default="recompute",
        description="recompute: after training, set the moving mean and "
        "variance of each batch normalization layer that trained to their "
        "average over the training data under the final weights, before "
        "the model is scored and exported (they trail the changing weights "
        "while it trains); keep: leave them as training left them.",
    )
    require_learning: bool = Field(
        default=False,
        description="Fail the build (exit 3, its epochs kept for --resume) when "
        "the model does not beat the trivial baseline on the validation data "
        "(build --require-learning).",
    )
    backend: BackendChoice = Field(
        default=DEFAULT_BACKEND,
        description="The Keras backend the build trains on (build --backend "
        "overrides it). auto, the default, picks TensorFlow for a model with "
        "convolutions or a backbone on a CPU, or for distribute and "
        "deterministic_ops, and JAX otherwise; the build says which and why. "
        "The export always runs on TensorFlow. torch needs PyTorch installed.",
    )
    steps_per_execution: Annotated[int, Field(gt=0, le=100_000)] = Field(
        default=64,
        description="Training steps per compiled call: the same math with less "
        "per-step overhead.",
    )
    distribute: Literal["none", "mirrored", "multi_worker", "data_parallel"] = Field(
        default="none",
        description="mirrored: one replica per local GPU (per logical CPU device "
        "where there is no GPU); multi_worker: MultiWorkerMirroredStrategy, "
        "configured by TF_CONFIG (both TensorFlow); data_parallel: Keras' "
        "DataParallel on JAX over every device of every process (build "
        "--coordinator/--num-processes/--process-id join processes). "
        "batch_size is the global batch.",
    )
    jit_compile: Annotated[
        bool | Literal["auto"], BeforeValidator(_true_false_or_auto)
    ] = Field(
        default="auto",
        description="Compile the training step with XLA. auto: as Keras "
        "chooses (always on JAX, where false is much slower; on TensorFlow, "
        "only where there is a GPU).",
    )
    deterministic_ops: bool = Field(
        default=False,
        description="Use only TensorFlow's deterministic kernels "
        "(tf.config.experimental.enable_op_determinism): the same results run "
        "after run on GPUs too. CPU builds are deterministic without it.",
    )

    @property
    def seeds_split(self) -> int:
        """The seed of the data split: split_seed, else seed."""
        return self.seed if self.split_seed is None else self.split_seed

    @model_validator(mode="after")
    def _recipe_fields(self) -> TrainSpec:
        """Each field a source does not take is refused, as the sources
        declare (l2compile.sources: `fields` and `needs`)."""
        recipe = self.recipe
        kind = SOURCES[recipe]
        if self.num_classes is not None and "num_classes" not in kind.fields:
            raise PydanticCustomError(
                "recipe_classes",
                _only_for("num_classes", "num_classes is")
                + "; '{recipe}' knows its classes",
                {"recipe": recipe},
            )
        if self.data is not None and "data" not in kind.fields:
            raise PydanticCustomError(
                "labels_count",
                _only_for("data", "data is")
                + "; '{recipe}' is found as docs/data.md says, or with --data",
                {"recipe": recipe},
            )
        if isinstance(self.data, SplitFiles) and "data_files" not in kind.fields:
            raise PydanticCustomError(
                "recipe_field",
                _only_for("data_files", "data with train and test files is")
                + "; '{recipe}' reads one path",
                {"recipe": recipe, "field": "data"},
            )
        if self.labels is not None and "labels" not in kind.fields:
            raise PydanticCustomError(
                "labels_count",
                _only_for("labels", "labels are") + "; '{recipe}' names its classes",
                {"recipe": recipe},
            )
        for field in ("label", "features", "missing", "columns"):
            if getattr(self, field) is not None and "columns" not in kind.fields:
                raise PydanticCustomError(
                    "recipe_field",
                    _only_for("columns", "{field} is"),
                    {"field": field},
                )
        if "columns" in kind.needs and self.label is None:
            raise PydanticCustomError(
                "labels_count",
                "the {recipe} recipe needs label: the column (or columns) to predict",
                {"recipe": recipe},
            )
        if self.text is not None and "text" not in kind.fields:
            raise PydanticCustomError(
                "recipe_field",
                _only_for("text", "text is"),
                {"field": "text"},
            )
        if self.test_split is not None and "test_split" not in kind.fields:
            raise PydanticCustomError(
                "recipe_field",
                _only_for("test_split", "test_split is"),
                {"field": "test_split"},
            )
        if self.test_split is not None and isinstance(self.data, SplitFiles):
            raise PydanticCustomError(
                "recipe_field",
                "test_split splits one file; data names a test file already",
                {"field": "test_split"},
            )
        labels = self.label_columns
        both = [f for f in self.features or () if f in labels]
        if both:
            raise PydanticCustomError(
                "recipe_field",
                "column '{column}' is both a label and a feature",
                {"column": both[0], "field": "features"},
            )
        return self

    @model_validator(mode="after")
    def _column_types(self) -> TrainSpec:
        """train.columns types feature columns, and an ignored one is not a
        feature."""
        labels = self.label_columns
        types = self.columns or {}
        typed = [name for name in types if name in labels]
        if typed:
            raise PydanticCustomError(
                "recipe_field",
                "column '{column}' is a label; train.columns gives feature "
                "columns a type (a label's is the task's)",
                {"column": typed[0], "field": "columns"},
            )
        ignored = [f for f in self.features or () if types.get(f) == "ignore"]
        if ignored:
            raise PydanticCustomError(
                "recipe_field",
                "column '{column}' is a feature and ignored (train.columns); "
                "keep it in one of them",
                {"column": ignored[0], "field": "features"},
            )
        _check_text_column(self)
        return self

    @property
    def label_columns(self) -> tuple[str, ...]:
        """The csv recipe's label columns (none for other recipes)."""
        if self.label is None:
            return ()
        return (self.label,) if isinstance(self.label, str) else tuple(self.label)


def _check_text_column(train: TrainSpec) -> None:
    """A csv's text column is the model's one input: MediaPipe's
    TextClassifier feeds one tensor of token ids."""
    texts = [name for name, kind in (train.columns or {}).items() if kind == "text"]
    source = SOURCES[train.recipe]
    if texts and not source.reads_text(["text"]):
        readers = [
            name
            for name, kind in SOURCES.items()
            if "columns" in kind.fields and kind.reads_text(["text"])
        ]
        raise PydanticCustomError(
            "recipe_field",
            "a text column is only for the {recipes} recipe (a folder of "
            "documents: recipe text_folder)",
            {"recipes": spoken_list(readers), "field": "columns"},
        )
    if len(texts) > 1:
        raise PydanticCustomError(
            "recipe_field",
            "columns '{first}' and '{second}' are both text; a text model "
            "reads one text column (MediaPipe's TextClassifier feeds one)",
            {"first": texts[0], "second": texts[1], "field": "columns"},
        )
    if texts and train.features is not None and train.features != texts:
        raise PydanticCustomError(
            "recipe_field",
            "column '{column}' is text, so it is the model's only input: "
            "features must be [{column}] alone, or left out",
            {"column": texts[0], "field": "features"},
        )
    if train.text is not None and not texts and not source.reads_text([]):
        raise PydanticCustomError(
            "recipe_field",
            "text sets how a text column is tokenized, and no column is "
            "text: give one the type text in train.columns",
            {"field": "text"},
        )


if TYPE_CHECKING:
    ExportFormat = str
else:
    ExportFormat = Literal[FORMAT_NAMES]


class _Formats(StrictModel):
    formats: Annotated[list[ExportFormat], AfterValidator(_unique)] = list(  # noqa: RUF012
        DEFAULT_FORMATS
    )


if TYPE_CHECKING:
    ExportSpec = _Formats
else:
    # `formats`, then each format's own options, by its name: the registry's.
    ExportSpec = create_model(
        "ExportSpec",
        __base__=_Formats,
        __module__=__name__,
        **{
            f.name: (f.options, f.options())
            for f in FORMATS.values()
            if f.options is not None
        },
    )


class Spec(StrictModel):
    """A model spec: input, layers, regularization, training and export."""

    name: ModuleName
    description: Annotated[str, Field(max_length=2000)] = ""
    task: TaskName = Field(
        default="classification",
        description="What the output means: classification (one class of N), "
        "binary, multilabel or regression (docs/tasks.md).",
    )
    input: InputSpec = Field(
        default=InputSpec(),
        description="What the model reads: {shape: [...]}. Only a csv table's "
        "may be left out.",
    )
    l2: L2Coefficient = Field(
        default=0.0,
        description="L2 coefficient for the kernel of every weight-bearing layer.",
    )
    l2_bias: bool = Field(
        default=False, description="Also regularize biases with the same coefficient."
    )
    l2_norm: bool = Field(
        default=False,
        description="Also regularize normalization gamma and beta.",
    )
    layers: Annotated[list[Layer], Field(min_length=1, max_length=1000)]
    train: TrainSpec
    export: ExportSpec = ExportSpec()


@dataclass(frozen=True)
class LoadedSpec:
    """A valid spec with the source it came from (for located errors later)."""

    spec: Spec
    source: Document


SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a spec file, for editors (yaml-language-server)."""
    schema = Spec.model_json_schema(mode="validation")
    return {**schema, "$schema": SCHEMA_DIALECT, "title": "l2compile spec"}


def load_spec(
    path: Path, display: str | None = None, overrides: Sequence[Override] = ()
) -> LoadedSpec | list[SpecError]:
    """Read, parse and validate one spec file, with `overrides` (--set)
    applied; all its errors, or the spec."""
    doc = read_spec_file(path, display, tuple(Spec.model_fields))
    if isinstance(doc, list):
        return doc
    if overrides:
        doc = apply(doc, overrides)
        if isinstance(doc, list):
            return doc
    return validate_document(doc)


def validate_document(doc: Document) -> LoadedSpec | list[SpecError]:
    """Validate parsed spec data against the spec models."""
    errors = list(doc.problems)
    try:
        spec = Spec.model_validate(doc.data)
    except ValidationError as exc:
        # A value the reader already rejected (an unsupported tag) is null by
        # now; don't report it a second time.
        known = {e.path for e in doc.problems}
        for err in exc.errors():
            located = _to_spec_error(doc, err)
            if not any(located.path[: len(p)] == p for p in known if p):
                errors.append(located)
    if errors:
        return _sorted_unique(errors)
    return LoadedSpec(spec, doc)


def _sorted_unique(errors: list[SpecError]) -> list[SpecError]:
    seen: set[str] = set()
    out = []
    for err in sorted(errors, key=lambda e: (e.line or 0, e.column or 0)):
        if str(err) not in seen:
            seen.add(str(err))
            out.append(err)
    return out


# --- from pydantic's errors to located, readable ones ------------------------


def _clean_path(loc: tuple[Any, ...], data: Any) -> FieldPath:
    """Drop the discriminator tags pydantic puts in union paths."""
    path: list[str | int] = []
    for part in loc:
        if part in (_PATH, _FILES, _RATE, _SCHEDULE, _KIND, _DATE) or (
            isinstance(data, dict)
            and isinstance(part, str)
            and part not in data
            and data.get("type") == part
        ):
            continue
        path.append(part)
        if isinstance(data, dict) and isinstance(part, str):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            data = None
    return tuple(path)


def _unwrap(annotation: Any, data: Any) -> Any:
    """Strip Annotated/Optional; pick a union member by the data's `type`."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0], data)
    if origin is Union or origin is types.UnionType:
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0], data)
        if isinstance(data, dict):
            models = [
                member
                for member in (_unwrap(m, data) for m in members)
                if hasattr(member, "model_fields")
            ]
            for member in models:
                fields = member.model_fields
                if "type" in fields and data.get("type") in get_args(
                    fields["type"].annotation
                ):
                    return member
            if len(models) == 1:  # a mapping is for the one model among them
                return models[0]
            return None
        plain = [m for m in members if not hasattr(_unwrap(m, data), "model_fields")]
        if len(plain) == 1:  # a word is for the one member that is not a model
            return _unwrap(plain[0], data)
        return None
    return annotation


def _annotation_at(path: FieldPath, data: Any) -> Any:
    """The declared type of the field at `path` (None where unknown)."""
    annotation: Any = Spec
    for part in path:
        annotation = _unwrap(annotation, data)
        if isinstance(part, int):
            if get_origin(annotation) is not list:
                return None
            annotation = get_args(annotation)[0]
            data = data[part] if isinstance(data, list) and part < len(data) else None
        elif get_origin(annotation) is dict:  # train.columns: any name
            annotation = get_args(annotation)[1]
            data = data.get(part) if isinstance(data, dict) else None
        else:
            fields = getattr(annotation, "model_fields", None)
            if fields is None or part not in fields:
                return None
            annotation = fields[part].annotation
            data = data.get(part) if isinstance(data, dict) else None
    return _unwrap(annotation, data)


def _choices(annotation: Any) -> tuple[str, ...]:
    if annotation is SourceName:
        return tuple(SOURCES)
    if get_origin(annotation) is Literal:
        return tuple(str(a) for a in get_args(annotation))
    return ()


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, str) and len(value) > 60:
        return f"{value[:40]!r}... ({len(value):,} characters)"
    return repr(value)


def _length_message(kind: str, value: Any, ctx: dict[str, Any]) -> str:
    bound, limit = (
        ("at least", ctx.get("min_length"))
        if kind.endswith("too_short")
        else ("at most", ctx.get("max_length"))
    )
    count = len(value) if hasattr(value, "__len__") else "?"
    noun = "characters" if isinstance(value, str) else "items"
    return f"must have {bound} {limit} {noun}, got {count}"


def _to_spec_error(doc: Document, err: ErrorDetails) -> SpecError:
    path = _clean_path(tuple(err["loc"]), doc.data)
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx", {})

    if kind == "missing":
        return doc.error(path, "required field is missing")
    if kind == "extra_forbidden":
        parent = getattr(_annotation_at(path[:-1], doc.data), "model_fields", {})
        name = path[-1]
        return doc.error(
            path,
            f"unknown field {name!r}",
            key=True,
            suggestion=closest(name, parent),
        )
    if kind == "union_tag_not_found":
        return doc.error(path, "a layer needs a 'type'", expected=LAYER_TYPES)
    if kind == "union_tag_invalid":
        tag = ctx.get("tag")
        return doc.error(
            (*path, "type"),
            f"unknown layer type {tag!r}",
            suggestion=closest(tag, LAYER_TYPES),
            expected=LAYER_TYPES,
        )
    if kind == "literal_error":
        annotation = _annotation_at(path, doc.data)
        choices = _choices(annotation)
        if isinstance(value, str) and get_origin(annotation) is Literal:
            quoted = [a for a in get_args(annotation) if not isinstance(a, str)]
            if any(str(a) == value for a in quoted):
                return doc.error(
                    path,
                    f"{value!r} is a string here; write it without quotes: {value}",
                )
        return doc.error(
            path,
            f"unknown value {_describe(value)}",
            suggestion=closest(value, choices),
            expected=choices,
        )
    if kind == "model_type" or kind == "dict_type":
        return doc.error(path, f"must be a mapping of fields, got {_describe(value)}")
    if kind == "bool_type":
        words = ("yes", "no", "on", "off", "y", "n")
        if isinstance(value, str) and value.lower() in words:
            return doc.error(
                path,
                f"must be true or false, got {value!r} (specs are read as "
                "YAML 1.2, where only true and false are booleans)",
            )
        return doc.error(path, f"must be true or false, got {_describe(value)}")
    if kind == "list_type":
        # Only where the bracketed text is what to write: one plain name.
        one = is_identifier(value)
        hint = f" (a list of one: [{value}])" if one else ""
        return doc.error(path, f"must be a list, got {_describe(value)}{hint}")
    if kind == "class_weights" and "i" in ctx:
        i = int(ctx["i"])
        item = value[i] if isinstance(value, list) and i < len(value) else None
        return doc.error((*path, i), f"must be a number above 0, got {_describe(item)}")
    if kind in ("recipe_classes", "labels_count"):
        return doc.error(path, err["msg"])
    if kind == "recipe_field":
        return doc.error((*path, ctx["field"]), err["msg"])
    if kind == "int8_samples":
        return doc.error((*path, "representative_samples"), err["msg"])
    if kind == "value_error":
        message = str(ctx.get("error", err["msg"]))
        return doc.error(path, message)

    if kind in ("too_short", "too_long", "string_too_short", "string_too_long"):
        return doc.error(path, _length_message(kind, value, ctx))
    message = err["msg"]
    for subject in ("Input should", "String should", "List should", "Value should"):
        if message.startswith(subject):
            message = "must" + message[len(subject) :]
    return doc.error(path, f"{message}, got {_describe(value)}")
