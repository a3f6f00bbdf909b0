"""What every task kind states, and the registry of kinds.

A task kind is one class, in a module of its own under `l2compile.tasks`,
that states in one place:

- what the spec may ask of it: its losses (the first is the default), its
  metrics (`default_metrics`, `allowed_metrics`), and the spec's task options
  it takes (label smoothing, class weights, names and units of its outputs),
  each refused with a located error where it does not apply (`plan`);
- the loss and metrics as the source `compile()` gets (`loss`, `metrics`),
  and what training logs each epoch (`history_keys`);
- the output the model must give (`outputs` values, ending with
  `activation`), checked against the planned layers before anything is
  generated (`check_output`), and the name apps find it by (`output_name`);
- how the generated module feeds the labels (`label_source`) and what the
  data's labels must be (`check_label_header`, `check_label_values`);
- how a prediction is scored (`targets`, `data_loss`, `scores`,
  `parity_score`, `predictions`), through `l2compile.scoring`, so that the
  build, the TFLite checks and `l2compile eval` all score alike;
- what a deployed model's output means (`output_json`, `output_files`).

A kind registers itself with `@register`; `plan_task` plans the kind that
the spec's `task` names. Nothing outside `l2compile.tasks` asks which kind a
task is: it asks the task.

This is plan-stage code: numpy is imported (through `l2compile.scoring` and
`l2compile.arrays`) only inside the functions that score or check data, which
only the build and `eval` call.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, cast

from l2compile.layers.base import PlannedLayer, Shape, py_str, shape_text
from l2compile.sources.base import Report
from l2compile.sources.base import Source as Recipe

if TYPE_CHECKING:
    import numpy.typing as npt


__all__ = [
    "LOSSES",
    "METRICS",
    "METRIC_KINDS",
    "TASKS",
    "Loss",
    "Metric",
    "Parity",
    "Task",
    "count_names",
    "output_units",
    "plan_task",
    "register",
    "zero_one",
]


class TrainOptions(Protocol):
    """What a task reads of a spec's train section (`spec.TrainSpec`); a
    protocol, so that the tasks, which the spec names, need not import it."""

    @property
    def loss(self) -> str | None: ...
    @property
    def metrics(self) -> Sequence[str] | None: ...
    @property
    def top_k(self) -> int: ...
    @property
    def label_smoothing(self) -> float: ...
    @property
    def class_weight(self) -> str | Sequence[float] | None: ...
    @property
    def labels(self) -> Sequence[str] | None: ...
    @property
    def num_classes(self) -> int | None: ...
    @property
    def target_units(self) -> Sequence[str] | None: ...
    @property
    def label_columns(self) -> tuple[str, ...]: ...
    @property
    def model_fields_set(self) -> set[str]: ...


class SpecOptions(Protocol):
    """What a task reads of a spec (`spec.Spec`)."""

    @property
    def task(self) -> str: ...
    @property
    def train(self) -> TrainOptions: ...


_Array = Any  # an array of outputs or targets (numpy is imported only to score)


@dataclass(frozen=True)
class Loss:
    """A loss a spec can name: its Keras class (compile() gets the class where
    an option is set), how l2compile computes it without Keras (`score`, of
    outputs, targets and label smoothing, through `l2compile.scoring`), and
    whether it takes label smoothing (Keras' sparse cross-entropy has none)."""

    keras_class: str
    score: Callable[[_Array, _Array, float], float]
    smoothed: bool = False


def _scoring() -> Any:
    from l2compile import scoring

    return scoring


#: Every loss a spec can name.
LOSSES = {
    "sparse_categorical_crossentropy": Loss(
        "SparseCategoricalCrossentropy",
        lambda o, y, s: _scoring().sparse_categorical_crossentropy(o, y),
    ),
    "categorical_crossentropy": Loss(
        "CategoricalCrossentropy",
        lambda o, y, s: _scoring().categorical_crossentropy(o, y, s),
        smoothed=True,
    ),
    "binary_crossentropy": Loss(
        "BinaryCrossentropy",
        lambda o, y, s: _scoring().binary_crossentropy(o, y, s),
        smoothed=True,
    ),
    "binary_focal_crossentropy": Loss(
        "BinaryFocalCrossentropy",
        lambda o, y, s: _scoring().binary_focal_crossentropy(o, y, s),
        smoothed=True,
    ),
    "mse": Loss(
        "MeanSquaredError", lambda o, y, s: _scoring().mean_squared_error(o, y)
    ),
    "mae": Loss(
        "MeanAbsoluteError", lambda o, y, s: _scoring().mean_absolute_error(o, y)
    ),
    "huber": Loss("Huber", lambda o, y, s: _scoring().huber(o, y)),
}
_SMOOTHED = tuple(name for name, loss in LOSSES.items() if loss.smoothed)


@dataclass(frozen=True)
class Metric:
    """A metric a spec can name, in one place: how compile() gets it (`source`:
    Python source, logged under the metric's name) and how l2compile scores
    it without Keras (`score`, through `l2compile.scoring`), each for a task."""

    source: Callable[[Task], str]
    score: Callable[[Task, _Array, _Array], float]
    #: Whether a larger score is a better model (a sweep's choice).
    higher_is_better: bool = True
    #: Why `score` may be NaN on a split: then the score is reported as
    #: undefined (null), never as the number Keras' metric gives there.
    undefined: str = ""
    #: Whether Keras' value counts what is undefined as a number (auc: as 0
    #: per label) where `score` leaves it out: then `score` is reported.
    partly_undefined: Callable[[Task, _Array], bool] | None = None

    def reported(
        self, task: Task, outputs: _Array, targets: _Array, keras_value: float
    ) -> float | None:
        """The score to report of Keras' `keras_value` on these outputs and
        targets: None where the metric is undefined there, l2compile's own
        score where Keras' counts an undefined part, else Keras' value."""
        if not self.undefined:
            return keras_value
        own = self.score(task, outputs, targets)
        if math.isnan(own):
            return None
        if self.partly_undefined is not None and self.partly_undefined(task, targets):
            return own
        return keras_value


def _top_k_source(task: Task) -> str:
    kind = "TopK" if task.one_hot else "SparseTopK"
    return (
        f"keras.metrics.{kind}CategoricalAccuracy(k={task.top_k}, "
        'name="top_k_accuracy")'
    )


def _auc_source(task: Task) -> str:
    if task.auc_per_label:  # each label's AUC, averaged
        return (
            f"keras.metrics.AUC(multi_label=True, num_labels={task.outputs}, "
            'name="auc")'
        )
    return 'keras.metrics.AUC(name="auc")'


#: Every metric a spec can name (which task takes which: its allowed_metrics).
METRIC_KINDS: dict[str, Metric] = {
    "accuracy": Metric(lambda t: '"accuracy"', lambda t, o, y: t.parity_score(o, y)),
    "top_k_accuracy": Metric(
        _top_k_source, lambda t, o, y: _scoring().top_k_accuracy(o, y, t.top_k)
    ),
    "auc": Metric(
        _auc_source,
        lambda t, o, y: _scoring().auc(o, y, per_label=t.auc_per_label),
        undefined="AUC is undefined where the split holds one class only",
        partly_undefined=lambda t, y: (
            t.auc_per_label and not _scoring().every_label_defined(y)
        ),
    ),
    "binary_accuracy": Metric(
        lambda t: '"binary_accuracy"', lambda t, o, y: _scoring().binary_accuracy(o, y)
    ),
    "precision": Metric(
        lambda t: 'keras.metrics.Precision(name="precision")',
        lambda t, o, y: _scoring().precision(o, y),
    ),
    "recall": Metric(
        lambda t: 'keras.metrics.Recall(name="recall")',
        lambda t, o, y: _scoring().recall(o, y),
    ),
    "mae": Metric(
        lambda t: '"mae"',
        lambda t, o, y: _scoring().mean_absolute_error(o, y),
        higher_is_better=False,
    ),
    "rmse": Metric(
        lambda t: 'keras.metrics.RootMeanSquaredError(name="rmse")',
        lambda t, o, y: _scoring().rmse(o, y),
        higher_is_better=False,
    ),
    "mse": Metric(
        lambda t: '"mse"',
        lambda t, o, y: _scoring().mean_squared_error(o, y),
        higher_is_better=False,
    ),
}
METRICS = tuple(METRIC_KINDS)


@dataclass(frozen=True)
class Parity:
    """A converted model against the Keras model on the test split: `key`
    names `difference` in metrics.json (`accuracy_drop`: Keras' score less
    the converted one's; `label_disagreement`: the share of per-label
    decisions on which the two differ; `relative_max_difference`: the largest
    difference between their outputs, over the targets' standard deviation)."""

    key: str
    keras: float | None  #: the Keras model's parity score (None: outputs compared)
    lite: float | None
    difference: float

    def failure(self, name: str, limit: float, note: str) -> str:
        """Why a file of this parity fails against `limit`."""
        if self.key == "label_disagreement":
            return (
                f"{name} decides {self.difference:.4f} of the test split's labels "
                "(present or not) otherwise than the Keras model, more than the "
                f"{limit} allowed{note}"
            )
        if self.keras is None:
            return (
                f"{name}'s outputs differ from the Keras model's by up to "
                f"{self.difference:.4f} of the targets' standard deviation on the "
                f"test split, more than the {limit} allowed{note}"
            )
        metric = self.key.removesuffix("_drop").replace("_", " ")
        return (
            f"{name} scores test {metric} {self.lite:.4f} against the Keras "
            f"model's {self.keras:.4f}: a drop of {self.difference:.4f}, more than "
            f"the {limit} allowed{note}"
        )


class Scored(ABC):
    """How a task scores a model's outputs against the targets, through
    `l2compile.scoring`, so that the build, the TFLite checks and `l2compile
    eval` all score alike; against a model that learned nothing; and class by
    class: the half of `Task` that only the build and `eval` call, which
    imports numpy."""

    #: What `Task` states that scoring reads.
    loss_name: str
    metric_names: tuple[str, ...]
    outputs: int
    label_smoothing: float
    parity_metric: ClassVar[str | None]

    @property
    @abstractmethod
    def class_count(self) -> int:
        """How many classes its labels take, for class weights."""

    def targets(self, y: Any) -> npt.NDArray[Any]:
        """The preprocessed labels as scoring compares outputs with them."""
        import numpy as np

        return np.asarray(y)

    def data_loss(self, outputs: npt.NDArray[Any], targets: npt.NDArray[Any]) -> float:
        """The loss without any penalty, as `loss` computes it."""
        return LOSSES[self.loss_name].score(outputs, targets, self.label_smoothing)

    def scores(
        self, outputs: npt.NDArray[Any], targets: npt.NDArray[Any]
    ) -> dict[str, float]:
        """Every metric of the task, computed as Keras' (auc: exactly)."""
        return {
            m: METRIC_KINDS[m].score(cast("Task", self), outputs, targets)
            for m in self.metric_names
        }

    def parity_score(
        self, outputs: npt.NDArray[Any], targets: npt.NDArray[Any]
    ) -> float:
        """The score TFLite files must keep (`parity_metric`)."""
        from l2compile import scoring

        return scoring.accuracy(outputs, targets)

    def compare(
        self,
        keras_outputs: npt.NDArray[Any],
        lite_outputs: npt.NDArray[Any],
        targets: npt.NDArray[Any],
    ) -> Parity:
        """How far a converted model's outputs are from the Keras model's on
        the same samples: here, the drop in `parity_metric`."""
        keras = self.parity_score(keras_outputs, targets)
        lite = self.parity_score(lite_outputs, targets)
        return Parity(f"{self.parity_metric}_drop", keras, lite, keras - lite)

    @abstractmethod
    def predictions(self, outputs: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """What the model predicts for each sample."""

    @abstractmethod
    def prediction_table(
        self, outputs: npt.NDArray[Any], names: Sequence[str]
    ) -> tuple[list[str], list[list[str]]]:
        """`l2compile predict`'s columns after the key, for the model's
        `outputs` (`names`: the classes, labels or targets): their names,
        and each sample's values as text."""

    # --- against a trivial model, and class by class ------------------------------

    #: The scores a build adds beside the metrics, on the validation and test
    #: splits (a sweep may choose by them): higher is better for each.
    summary_names: ClassVar[tuple[str, ...]] = ("balanced_accuracy", "macro_f1")

    def trivial(
        self, train_targets: npt.NDArray[Any], names: Sequence[str]
    ) -> tuple[npt.NDArray[Any], str]:
        """The output a model that learned nothing from the inputs gives every
        sample (the training split's class shares), and what it predicts."""
        import numpy as np

        from l2compile import scoring

        counts = np.bincount(
            scoring.labels_of(train_targets), minlength=self.outputs
        ).astype(np.float64)
        top = int(np.argmax(counts))
        return counts / max(counts.sum(), 1.0), (
            f"the training split's most frequent class for every sample, "
            f"{names[top]!r}, {int(counts[top]):,} of {int(counts.sum()):,} samples"
        )

    def baseline(
        self,
        train_targets: npt.NDArray[Any],
        targets: npt.NDArray[Any],
        names: Sequence[str],
    ) -> dict[str, float]:
        """The trivial model's scores on `targets`: its data loss, every
        metric and the summary scores."""
        import numpy as np

        row, _ = self.trivial(train_targets, names)
        outputs = np.tile(np.asarray(row, dtype=np.float32), (len(targets), 1))
        return {
            "loss": self.data_loss(outputs, targets),
            **self.scores(outputs, targets),
            **self.summary(outputs, targets),
        }

    def confusion(
        self, outputs: npt.NDArray[Any], targets: npt.NDArray[Any]
    ) -> npt.NDArray[Any]:
        """The confusion matrix: (true class, predicted class) counts."""
        from l2compile import scoring

        return scoring.confusion(
            scoring.labels_of(targets), scoring.classes(outputs), self.outputs
        )

    def breakdown(
        self,
        outputs: npt.NDArray[Any],
        targets: npt.NDArray[Any],
        names: Sequence[str],
    ) -> dict[str, Any]:
        """The scores class by class (`per_class`: precision, recall, F1,
        support), the confusion matrix, balanced accuracy and macro-F1."""
        from l2compile import scoring

        counts = self.confusion(outputs, targets)
        stats = scoring.per_class(counts)
        # Macro-F1 over the classes the split holds or the model predicts, as
        # scikit-learn's f1_score(average="macro") counts them.
        present = (counts.sum(axis=0) + counts.sum(axis=1)) > 0
        return {
            "per_class": {
                name: {
                    key: int(values[i]) if key == "support" else float(values[i])
                    for key, values in stats.items()
                }
                for i, name in enumerate(names)
            },
            "confusion": {"labels": list(names), "counts": counts.tolist()},
            "balanced_accuracy": scoring.balanced_accuracy(counts),
            "macro_f1": float(stats["f1"][present].mean()) if present.any() else 0.0,
        }

    def summary(
        self, outputs: npt.NDArray[Any], targets: npt.NDArray[Any]
    ) -> dict[str, float]:
        """The summary scores alone (`summary_names`)."""
        names = [str(i) for i in range(self.class_count)]
        found = self.breakdown(outputs, targets, names)
        return {name: found[name] for name in self.summary_names}


@dataclass(frozen=True)
class Task(Scored):
    """What every task kind states; see the module's docstring."""

    #: The kind's name, as `task:` writes it.
    name: ClassVar[str]
    #: The losses it allows; the first is its default.
    losses: ClassVar[tuple[str, ...]]
    default_metrics: ClassVar[tuple[str, ...]]
    allowed_metrics: ClassVar[tuple[str, ...]]
    #: The activation the model's output must end with.
    activation: ClassVar[str]
    #: What that output is, for messages: `class probabilities`.
    expects: ClassVar[str]
    #: Its output is one score per named class: on an RGB image input, what
    #: MediaPipe's ImageClassifier reads (with TFLite metadata).
    scores_classes: ClassVar[bool] = False
    #: The name of the model's output in exported signatures, which apps use.
    output_name: ClassVar[str]
    #: The metric TFLite files must keep within tolerance (None: the task
    #: compares outputs instead, `Regression`).
    parity_metric: ClassVar[str | None] = "accuracy"
    #: What each output value is for, for messages.
    per: ClassVar[str] = "class"
    #: Whether it has one class per sample, which train.class_weight weighs,
    #: and how many classes (0: as many as outputs).
    weighs_classes: ClassVar[bool] = True
    #: Whether train.num_classes may say how many outputs it has; if not,
    #: why not, after "num_classes is not for task 'binary'".
    counts_classes: ClassVar[bool] = True
    why_no_num_classes: ClassVar[str] = ""
    #: Whether it reads a built-in recipe's class labels (mnist's, ...).
    reads_class_recipes: ClassVar[bool] = False
    #: Whether train.target_units may name the units of its outputs.
    has_units: ClassVar[bool] = False
    #: Whether its labels may be bools (0/1 labels).
    bool_labels: ClassVar[bool] = False
    #: Whether metric auc is each output's AUC, averaged (else: of every
    #: output at once, as Keras' AUC over one-hot rows).
    auc_per_label: ClassVar[bool] = False

    loss_name: str  #: train.loss, or the task's default
    metric_names: tuple[str, ...]  #: train.metrics, or the task's defaults
    outputs: int  #: values the model outputs per sample
    names: tuple[str, ...]  #: a name for each class, label or target
    label_smoothing: float = 0.0
    top_k: int = 5
    #: None, "balanced", or a weight per class.
    class_weight: str | tuple[float, ...] | None = None

    # --- planning --------------------------------------------------------------

    @classmethod
    def plan(
        cls, spec: SpecOptions, recipe: Recipe, output: Shape | None, report: Report
    ) -> Task:
        """The task of `spec`, whose planned model outputs `output` (None
        where a layer failed), reporting what in the spec it cannot take."""
        train = spec.train
        loss = train.loss or cls.losses[0]
        if loss not in cls.losses:
            report(("train", "loss"), cls._refused("loss", loss, cls.losses))
        metrics = tuple(train.metrics or cls.default_metrics)
        for i, metric in enumerate(train.metrics or ()):
            if metric not in cls.allowed_metrics:
                report(
                    ("train", "metrics", i),
                    cls._refused("metric", metric, cls.allowed_metrics),
                )
        if train.label_smoothing and loss not in _SMOOTHED:
            report(
                ("train", "label_smoothing"),
                f"label smoothing is for the cross-entropies of one-hot or 0/1 "
                f"targets ({', '.join(_SMOOTHED)}), not loss {loss!r}"
                + (
                    ": use loss categorical_crossentropy, which one-hot encodes "
                    "the labels"
                    if loss == "sparse_categorical_crossentropy"
                    else ""
                ),
            )
        if "top_k" in train.model_fields_set and "top_k_accuracy" not in metrics:
            report(
                ("train", "top_k"),
                "top_k is the k of metric top_k_accuracy, which train.metrics "
                "does not list",
            )
        outputs = cls.planned_outputs(spec, recipe, output, report)
        columns = train.label_columns if cls.output_per_column else ()
        if len(columns) != outputs:
            columns = ()
        names = tuple(train.labels or columns or cls.default_names(outputs))
        weight = train.class_weight
        return cls(
            loss_name=loss,
            metric_names=metrics,
            outputs=outputs,
            names=names,
            label_smoothing=train.label_smoothing,
            top_k=train.top_k,
            class_weight=weight
            if weight is None or isinstance(weight, str)
            else tuple(weight),
        )

    @classmethod
    def _refused(cls, what: str, value: str, allowed: tuple[str, ...]) -> str:
        return (
            f"{what} {value!r} is not for task {cls.name!r}, which takes "
            + ", ".join(allowed)
        )

    @classmethod
    @abstractmethod
    def planned_outputs(
        cls, spec: SpecOptions, recipe: Recipe, output: Shape | None, report: Report
    ) -> int:
        """How many values the model outputs per sample (0 where unknown),
        reporting what in the spec contradicts it."""

    @classmethod
    def default_names(cls, outputs: int) -> tuple[str, ...]:
        return tuple(str(i) for i in range(outputs))

    @classmethod
    def spec_labels(cls, outputs: int) -> dict[str, Any]:
        """What a spec written by `l2compile import` says of the labels of a
        model with `outputs` outputs, beside its placeholder data (by
        default nothing: the data names them)."""
        return {}

    # --- what compile() gets ----------------------------------------------------

    @property
    def loss(self) -> str:
        """compile()'s loss, as Python source: its name, or its class where an
        option is set."""
        if self.label_smoothing:
            return (
                f"keras.losses.{LOSSES[self.loss_name].keras_class}"
                "(label_smoothing=LABEL_SMOOTHING)"
            )
        return py_str(self.loss_name)

    @property
    def metrics(self) -> tuple[str, ...]:
        """compile()'s metrics, one Python expression each."""
        return tuple(METRIC_KINDS[m].source(self) for m in self.metric_names)

    @property
    def history_keys(self) -> tuple[str, ...]:
        """What training logs each epoch: the loss and each metric, for the
        training data and (val_) the validation data."""
        return tuple(
            prefix + name
            for prefix in ("", "val_")
            for name in ("loss", *self.metric_names)
        )

    @property
    def one_hot(self) -> bool:
        """Whether the module one-hot encodes integer labels (NUM_CLASSES)."""
        return False

    @property
    def class_count(self) -> int:
        """How many classes its labels take, for class weights."""
        return self.outputs

    @property
    def per_sample_loss(self) -> str:
        """The loss as a custom training loop computes it, one value per
        sample (the multi-worker loop averages it over the global batch)."""
        return f'keras.losses.{LOSSES[self.loss_name].keras_class}(reduction="none")'

    @property
    def fits_custom_loop(self) -> bool:
        """Whether multi_worker's custom training loop, which trains integer
        class labels with accuracy alone and no class weights, can train it."""
        return False

    # --- the model's output -------------------------------------------------------

    @property
    def output_shape(self) -> Shape:
        """The shape of the model's output for one sample."""
        return (self.outputs,)

    @abstractmethod
    def output_origin(self, recipe: Recipe) -> str:
        """What decides `output_shape`, for messages: `recipe 'mnist' has ...`."""

    def check_output(
        self, layers: Sequence[PlannedLayer], recipe: Recipe, report: Report
    ) -> None:
        """Report what in the planned model (every layer planned) cannot give
        this task's output: `outputs` values, ending with `activation`."""
        last = layers[-1]
        if not self.outputs and len(last.output_shape) != 1:
            report(
                ("layers", last.index),
                f"the model's output shape is {shape_text(last.output_shape)}, but "
                f"task {self.name!r} needs one value per {self.per}: the last "
                "layer must output (N,), as a dense layer does",
            )
        elif self.outputs and last.output_shape != self.output_shape:
            report(
                ("layers", last.index),
                f"the model's output shape is {shape_text(last.output_shape)}, but "
                f"{self.output_origin(recipe)}: the last layer must output "
                f"{shape_text(self.output_shape)}",
            )
        # Layers that only move values around (dropout, flatten, reshape) may
        # follow the output's activation.
        by_name = {lay.name: lay for lay in layers}
        while last.passthrough and last.inputs[0] in by_name:
            last = by_name[last.inputs[0]]
        if last.final_activation is None:
            report(
                ("layers", last.index),
                f"the model ends with {_a(last.type)} layer, but {self.why}: end "
                f"with a dense or activation layer with activation "
                f"{self.activation!r}",
            )
        elif last.final_activation != self.activation:
            report(
                ("layers", last.index, "activation"),
                f"the last {last.type} layer must use activation "
                f"{self.activation!r}: {self.why}",
            )

    @property
    def why(self) -> str:
        """Why the output must be as it is, for messages."""
        return f"task {self.name!r} expects {self.expects}"

    # --- labels -----------------------------------------------------------------

    @property
    @abstractmethod
    def label_source(self) -> str:
        """How the module's preprocess() gives the labels, as Python source of `y`."""

    @property
    @abstractmethod
    def labels_text(self) -> str:
        """What the data's labels must be, for messages and the module."""

    #: How a csv module's load_data gives the labels, as Python source of `y`:
    #: from its float32 label columns (text labels as their ids) to what
    #: `l2compile.tables` reads for this task.
    table_labels: ClassVar[str] = "y"
    #: Whether each output is a csv label column of its own, named after it.
    output_per_column: ClassVar[bool] = False

    def check_label_header(
        self, key: str, shape: tuple[int, ...], rows: int
    ) -> list[str]:
        """What is wrong with a label array's shape, known from its header."""
        ok = len(shape) == 1 or (len(shape) == 2 and shape[1] == self.outputs)
        if self.outputs > 1:
            ok = len(shape) == 2 and shape[1] == self.outputs
        ok = ok and shape[0] == rows
        if ok:
            return []
        want = f"({rows},)" if self.outputs == 1 else f"({rows}, {self.outputs})"
        return [f"{key} has shape {shape}; expected {want}: {self.labels_text}"]

    @abstractmethod
    def check_label_values(self, key: str, y: npt.NDArray[Any]) -> list[str]:
        """What is wrong with a label array's values."""

    # --- deployment ------------------------------------------------------------

    @abstractmethod
    def output_json(self) -> dict[str, Any]:
        """model.json's description of the output, beside its name and shape."""

    def output_files(self, recipe: Recipe) -> dict[str, str]:
        """Files an app needs to read the output: name -> text."""
        return {"labels.txt": "".join(f"{name}\n" for name in self.names)}


#: Every task kind, by name.
TASKS: dict[str, type[Task]] = {}

_T = TypeVar("_T", bound=type[Task])


def register(kind: _T) -> _T:
    """Add a task kind to `TASKS`."""
    assert kind.name not in TASKS, f"two task kinds named {kind.name}"
    TASKS[kind.name] = kind
    return kind


def plan_task(
    spec: SpecOptions, recipe: Recipe, output: Shape | None, report: Report
) -> Task:
    """The task the spec names, planned against its data and model output."""
    kind = TASKS[spec.task]
    if not kind.reads_class_recipes and not recipe.any_task:
        report(
            ("task",),
            f"recipe {recipe.name!r} gives class labels, which only task "
            "'classification' reads; a binary, multilabel or regression task "
            "needs its own data (train.recipe: npz or csv)",
        )
    if spec.train.target_units is not None and not kind.has_units:
        report(
            ("train", "target_units"),
            f"target_units name the units of a regression's targets; task "
            f"{spec.task!r} has none",
        )
    if spec.train.class_weight is not None and not kind.weighs_classes:
        report(
            ("train", "class_weight"),
            f"class_weight weighs the samples of each class; task {spec.task!r} "
            "has no single class per sample",
        )
    if spec.train.num_classes is not None and not kind.counts_classes:
        report(
            ("train", "num_classes"),
            f"num_classes is not for task {spec.task!r}{kind.why_no_num_classes}",
        )
    return kind.plan(spec, recipe, output, report)


def count_names(
    spec: SpecOptions, outputs: int, what: str, report: Report, origin: str
) -> None:
    """train.labels (and target_units) must name each output once."""
    train = spec.train
    for field, given in (
        ("labels", train.labels),
        ("target_units", train.target_units),
    ):
        if given is not None and outputs and len(given) != outputs:
            report(
                ("train", field),
                f"{field} lists {len(given)} names for {outputs} "
                f"{what if outputs > 1 else what[:-1]} ({origin})",
            )


def output_units(output: Shape | None) -> int:
    """The outputs of a model whose output is one vector (0: unknown, or not
    a vector, which check_output reports)."""
    return output[0] if output is not None and len(output) == 1 else 0


def zero_one(key: str, y: npt.NDArray[Any], what: str) -> list[str]:
    """0/1 labels, as integers or floats."""
    import numpy as np

    from l2compile.arrays import not_finite

    if y.dtype.kind not in "iufb":
        return [f"{key} has dtype {y.dtype}; expected {what}"]
    if y.dtype.kind == "f":
        problems = not_finite(key, y)
        if problems:
            return problems
    bad = (y != 0) & (y != 1)
    if not np.any(bad):
        return []
    at = tuple(int(i) for i in np.argwhere(bad)[0])
    value = y[at].item()
    count = int(np.count_nonzero(bad))
    where = f"{key}[{', '.join(str(i) for i in at)}]"
    more = f" ({count} such values)" if count > 1 else ""
    return [f"{key} holds {value!r} at {where}{more}; expected {what}"]


def _a(word: str) -> str:
    """`a dense`, `an add`."""
    return ("an " if word[0] in "aeiou" else "a ") + word


def number_text(value: Any) -> str:
    """An output as predict writes it: the shortest text that reads back as
    the same float32."""
    import numpy as np

    return str(np.float32(value))
