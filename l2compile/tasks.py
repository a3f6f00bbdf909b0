"""The task node of the plan: what the model's output means.

A task kind is one class that states, in one place:

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
the spec's `task` names. The kinds are `Classification`, `Binary`,
`Multilabel` and `Regression`.

This is plan-stage code: numpy is imported (through `l2compile.scoring`) only
inside the functions that score or check data, which only the build and
`eval` call.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from l2compile.layers.base import Shape, py_str, shape_text
from l2compile.sources.base import Report
from l2compile.sources.base import Source as Recipe

if TYPE_CHECKING:
    import numpy.typing as npt

    from l2compile.plan import LayerPlan
    from l2compile.spec import Spec

__all__ = [
    "LOSSES",
    "METRICS",
    "TASKS",
    "Binary",
    "Classification",
    "Multilabel",
    "Regression",
    "Task",
    "plan_task",
    "register",
]


@dataclass(frozen=True)
class Loss:
    """A loss a spec can name: its Keras class (compile() gets the class where
    an option is set), and whether it takes label smoothing (Keras' sparse
    cross-entropy has none). `l2compile.scoring.data_loss` computes each."""

    keras_class: str
    smoothed: bool = False


#: Every loss a spec can name.
LOSSES = {
    "sparse_categorical_crossentropy": Loss("SparseCategoricalCrossentropy"),
    "categorical_crossentropy": Loss("CategoricalCrossentropy", smoothed=True),
    "binary_crossentropy": Loss("BinaryCrossentropy", smoothed=True),
    "binary_focal_crossentropy": Loss("BinaryFocalCrossentropy", smoothed=True),
    "mse": Loss("MeanSquaredError"),
    "mae": Loss("MeanAbsoluteError"),
    "huber": Loss("Huber"),
}
_SMOOTHED = tuple(name for name, loss in LOSSES.items() if loss.smoothed)

_Array = Any  # an array of outputs or targets (numpy is imported only to score)


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


def _scoring() -> Any:
    from l2compile import scoring

    return scoring


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


@dataclass(frozen=True)
class Task(ABC):
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
    #: Whether train.num_classes may say how many outputs it has.
    counts_classes: ClassVar[bool] = True
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
        cls, spec: Spec, recipe: Recipe, output: Shape | None, report: Report
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
            class_weight=tuple(weight) if isinstance(weight, list) else weight,
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
        cls, spec: Spec, recipe: Recipe, output: Shape | None, report: Report
    ) -> int:
        """How many values the model outputs per sample (0 where unknown),
        reporting what in the spec contradicts it."""

    @classmethod
    def default_names(cls, outputs: int) -> tuple[str, ...]:
        return tuple(str(i) for i in range(outputs))

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

    # --- the model's output -------------------------------------------------------

    @property
    def output_shape(self) -> Shape:
        """The shape of the model's output for one sample."""
        return (self.outputs,)

    @abstractmethod
    def output_origin(self, recipe: Recipe) -> str:
        """What decides `output_shape`, for messages: `recipe 'mnist' has ...`."""

    def check_output(
        self, layers: Sequence[LayerPlan], recipe: Recipe, report: Report
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

    # --- scoring ----------------------------------------------------------------

    def targets(self, y: Any) -> npt.NDArray[Any]:
        """The preprocessed labels as scoring compares outputs with them."""
        import numpy as np

        return np.asarray(y)

    def data_loss(self, outputs: npt.NDArray[Any], targets: npt.NDArray[Any]) -> float:
        """The loss without any penalty, as `loss` computes it."""
        from l2compile import scoring

        return scoring.data_loss(self.loss_name, outputs, targets, self.label_smoothing)

    def scores(
        self, outputs: npt.NDArray[Any], targets: npt.NDArray[Any]
    ) -> dict[str, float]:
        """Every metric of the task, computed as Keras' (auc: exactly)."""
        return {
            m: METRIC_KINDS[m].score(self, outputs, targets) for m in self.metric_names
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


def plan_task(spec: Spec, recipe: Recipe, output: Shape | None, report: Report) -> Task:
    """The task the spec names, planned against its data and model output."""
    kind = TASKS[spec.task]
    if kind is not Classification and not recipe.any_task:
        report(
            ("task",),
            f"recipe {recipe.name!r} gives class labels, which only task "
            "'classification' reads; a binary, multilabel or regression task "
            "needs its own data (train.recipe: npz or csv)",
        )
    if spec.train.target_units is not None and kind is not Regression:
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
            f"num_classes is not for task {spec.task!r}"
            + (
                ", which has two classes (0 and 1)"
                if kind is Binary
                else "; the last layer's units are the number of targets"
            ),
        )
    return kind.plan(spec, recipe, output, report)


def _count_names(
    spec: Spec, outputs: int, what: str, report: Report, origin: str
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


@register
@dataclass(frozen=True)
class Classification(Task):
    """One class per sample: a softmax over the classes, trained with
    (sparse) categorical cross-entropy."""

    table_labels: ClassVar[str] = 'y[:, 0].astype("int64")'
    name: ClassVar[str] = "classification"
    losses: ClassVar[tuple[str, ...]] = (
        "sparse_categorical_crossentropy",
        "categorical_crossentropy",
    )
    default_metrics: ClassVar[tuple[str, ...]] = ("accuracy",)
    allowed_metrics: ClassVar[tuple[str, ...]] = ("accuracy", "top_k_accuracy", "auc")
    activation: ClassVar[str] = "softmax"
    expects: ClassVar[str] = "class probabilities"
    output_name: ClassVar[str] = "probabilities"
    scores_classes: ClassVar[bool] = True

    @classmethod
    def planned_outputs(
        cls, spec: Spec, recipe: Recipe, output: Shape | None, report: Report
    ) -> int:
        train = spec.train
        if recipe.num_classes is None and recipe.classes_from_data:
            # The data's classes are counted when it is read; the build checks
            # them against the last layer.
            recipe = replace(recipe, num_classes=_units(output) if output else 0)
            if not recipe.num_classes:
                return 0
        if recipe.num_classes is None:
            report(
                ("train",),
                "the npz recipe needs num_classes for task 'classification'",
            )
            return 0
        if "auc" in (train.metrics or ()) and (
            (train.loss or cls.losses[0]) == "sparse_categorical_crossentropy"
        ):
            report(
                ("train", "metrics", (train.metrics or []).index("auc")),
                "metric 'auc' compares one-hot targets with the probabilities: "
                "use loss categorical_crossentropy, which one-hot encodes the labels",
            )
        top_k = "top_k_accuracy" in (train.metrics or ())
        if top_k and train.top_k >= recipe.num_classes:
            report(
                ("train", "top_k"),
                f"top_k is {train.top_k}"
                + ("" if "top_k" in train.model_fields_set else " (the default)")
                + f", but there are {recipe.num_classes} classes: every label is "
                "always among the top k; set top_k below the number of classes",
            )
        if recipe.num_classes < 2:
            report(
                ("train", "num_classes"),
                "task 'classification' needs at least 2 classes; for one yes/no "
                "output, use task: binary",
            )
        if train.labels is not None and len(train.labels) != recipe.num_classes:
            report(
                ("train", "labels"),
                f"labels lists {len(train.labels)} names for "
                f"{recipe.num_classes} classes ({recipe.classes_origin})",
            )
        weight = train.class_weight
        if isinstance(weight, list) and len(weight) != recipe.num_classes:
            report(
                ("train", "class_weight"),
                f"class_weight lists {len(weight)} weights for "
                f"{recipe.num_classes} classes ({recipe.classes_origin})",
            )
        return recipe.num_classes

    @classmethod
    def plan(
        cls, spec: Spec, recipe: Recipe, output: Shape | None, report: Report
    ) -> Task:
        task = super().plan(spec, recipe, output, report)
        assert isinstance(task, Classification)
        return replace(task, names=tuple(recipe.labels or task.names))

    def output_origin(self, recipe: Recipe) -> str:
        return recipe.classes_origin

    @property
    def why(self) -> str:
        return f"loss {self.loss_name!r} expects {self.expects}"

    @property
    def one_hot(self) -> bool:
        return self.loss_name == "categorical_crossentropy"

    @property
    def label_source(self) -> str:
        if self.one_hot:
            return "keras.utils.to_categorical(y, NUM_CLASSES)"
        return "y"

    @property
    def labels_text(self) -> str:
        return f"integer class labels 0 to {self.outputs - 1}"

    def check_label_header(
        self, key: str, shape: tuple[int, ...], rows: int
    ) -> list[str]:

        if len(shape) == 1 and shape[0] == rows:
            return []
        hint = (
            ": integer class labels, which the generated module one-hot encodes"
            if self.one_hot
            else ""
        )
        return [f"{key} has shape {shape}; expected ({rows},){hint}"]

    def check_label_values(self, key: str, y: npt.NDArray[Any]) -> list[str]:
        if y.dtype.kind == "f":
            from l2compile.datasets import not_finite

            return [
                f"{key} has dtype {y.dtype}; expected integer labels",
                *not_finite(key, y),
            ]
        if y.dtype.kind in "iu" and y.size:
            low, high = int(y.min()), int(y.max())
            if low < 0 or high >= self.outputs:
                return [
                    f"{key} has labels from {low} to {high}; "
                    f"expected 0 to {self.outputs - 1}"
                ]
        return []

    def targets(self, y: Any) -> npt.NDArray[Any]:
        from l2compile import scoring

        return scoring.labels_of(y) if not self.one_hot else super().targets(y)

    def predictions(self, outputs: npt.NDArray[Any]) -> npt.NDArray[Any]:
        from l2compile import scoring

        return scoring.classes(outputs)

    def output_json(self) -> dict[str, Any]:
        return {
            "meaning": "one probability per class; the class names, in order, "
            "are the lines of labels.txt",
            "labels": "labels.txt",
        }


@register
@dataclass(frozen=True)
class Binary(Task):
    """Two classes: one sigmoid output, the probability of the positive class."""

    table_labels: ClassVar[str] = 'y[:, 0].astype("int64")'
    name: ClassVar[str] = "binary"
    losses: ClassVar[tuple[str, ...]] = (
        "binary_crossentropy",
        "binary_focal_crossentropy",
    )
    default_metrics: ClassVar[tuple[str, ...]] = ("accuracy", "auc")
    allowed_metrics: ClassVar[tuple[str, ...]] = (
        "accuracy",
        "auc",
        "precision",
        "recall",
    )
    activation: ClassVar[str] = "sigmoid"
    expects: ClassVar[str] = "the probability of the positive class"
    output_name: ClassVar[str] = "probability"
    counts_classes: ClassVar[bool] = False
    bool_labels: ClassVar[bool] = True

    @classmethod
    def planned_outputs(
        cls, spec: Spec, recipe: Recipe, output: Shape | None, report: Report
    ) -> int:
        train = spec.train
        if isinstance(train.class_weight, list) and len(train.class_weight) != 2:
            report(
                ("train", "class_weight"),
                f"class_weight lists {len(train.class_weight)} weights; task "
                "'binary' has two classes (0 and 1)",
            )
        if train.labels is not None and len(train.labels) != 2:
            report(
                ("train", "labels"),
                f"labels lists {len(train.labels)} names; task 'binary' has two "
                "classes: the negative (0), then the positive (1)",
            )
        return 1

    @classmethod
    def default_names(cls, outputs: int) -> tuple[str, ...]:
        return ("0", "1")

    @property
    def class_count(self) -> int:
        return 2

    def output_origin(self, recipe: Recipe) -> str:
        return "task 'binary' outputs one probability"

    @property
    def label_source(self) -> str:
        return 'y.reshape(len(y), 1).astype("float32")'

    @property
    def labels_text(self) -> str:
        return "labels 0 or 1"

    def check_label_values(self, key: str, y: npt.NDArray[Any]) -> list[str]:
        return _zero_one(key, y, self.labels_text)

    def parity_score(
        self, outputs: npt.NDArray[Any], targets: npt.NDArray[Any]
    ) -> float:
        from l2compile import scoring

        return scoring.binary_accuracy(outputs, targets)

    def predictions(self, outputs: npt.NDArray[Any]) -> npt.NDArray[Any]:
        from l2compile import scoring

        return scoring.positives(outputs).reshape(-1)

    def trivial(
        self, train_targets: npt.NDArray[Any], names: Sequence[str]
    ) -> tuple[npt.NDArray[Any], str]:
        import numpy as np

        from l2compile import scoring

        share = float(np.mean(scoring.rows(train_targets) > scoring.THRESHOLD))
        top = int(share > scoring.THRESHOLD)
        return np.array([share]), (
            f"the training split's share of positives ({share:.4f}) for every "
            f"sample: always {names[top]!r}"
        )

    def confusion(
        self, outputs: npt.NDArray[Any], targets: npt.NDArray[Any]
    ) -> npt.NDArray[Any]:
        from l2compile import scoring

        return scoring.two_by_two(targets, outputs)

    def output_json(self) -> dict[str, Any]:
        return {
            "meaning": "the probability that the sample is of the positive "
            f"class ({self.names[1]!r}, label 1; {self.names[0]!r} is label 0); "
            "positive where it is above 0.5",
            "labels": "labels.txt",
        }


@register
@dataclass(frozen=True)
class Multilabel(Task):
    """Any number of labels per sample: one sigmoid output per label."""

    output_per_column: ClassVar[bool] = True
    name: ClassVar[str] = "multilabel"
    losses: ClassVar[tuple[str, ...]] = Binary.losses
    default_metrics: ClassVar[tuple[str, ...]] = ("binary_accuracy", "auc")
    allowed_metrics: ClassVar[tuple[str, ...]] = (
        "binary_accuracy",
        "auc",
        "precision",
        "recall",
    )
    activation: ClassVar[str] = "sigmoid"
    expects: ClassVar[str] = "one probability per label"
    output_name: ClassVar[str] = "probabilities"
    parity_metric: ClassVar[str | None] = "binary_accuracy"
    per: ClassVar[str] = "label"
    weighs_classes: ClassVar[bool] = False
    bool_labels: ClassVar[bool] = True
    auc_per_label: ClassVar[bool] = True

    @classmethod
    def planned_outputs(
        cls, spec: Spec, recipe: Recipe, output: Shape | None, report: Report
    ) -> int:
        outputs = spec.train.num_classes or _units(output)
        origin = (
            f"train.num_classes is {outputs}"
            if spec.train.num_classes
            else "the last layer's units"
        )
        _count_names(spec, outputs, "labels", report, origin)
        return outputs

    def output_origin(self, recipe: Recipe) -> str:
        return f"train.num_classes is {self.outputs}"

    @property
    def label_source(self) -> str:
        return 'y.reshape(len(y), -1).astype("float32")'

    @property
    def labels_text(self) -> str:
        return f"{self.outputs} columns of 0 or 1, one per label"

    def check_label_values(self, key: str, y: npt.NDArray[Any]) -> list[str]:
        return _zero_one(key, y, "labels 0 or 1")

    def parity_score(
        self, outputs: npt.NDArray[Any], targets: npt.NDArray[Any]
    ) -> float:
        from l2compile import scoring

        return scoring.binary_accuracy(outputs, targets)

    def compare(
        self,
        keras_outputs: npt.NDArray[Any],
        lite_outputs: npt.NDArray[Any],
        targets: npt.NDArray[Any],
    ) -> Parity:
        """Per-label agreement: the share of (sample, label) decisions, present
        or not at 0.5, on which the file and the Keras model differ."""
        import numpy as np

        from l2compile import scoring

        differ = scoring.positives(keras_outputs) != scoring.positives(lite_outputs)
        return Parity(
            "label_disagreement",
            self.parity_score(keras_outputs, targets),
            self.parity_score(lite_outputs, targets),
            float(np.mean(differ)),
        )

    def predictions(self, outputs: npt.NDArray[Any]) -> npt.NDArray[Any]:
        from l2compile import scoring

        return scoring.positives(outputs)

    def trivial(
        self, train_targets: npt.NDArray[Any], names: Sequence[str]
    ) -> tuple[npt.NDArray[Any], str]:
        import numpy as np

        from l2compile import scoring

        shares = np.mean(scoring.rows(train_targets) > scoring.THRESHOLD, axis=0)
        return shares, (
            "each label's share of the training split for every sample: each "
            "label always as it mostly is"
        )

    def breakdown(
        self,
        outputs: npt.NDArray[Any],
        targets: npt.NDArray[Any],
        names: Sequence[str],
    ) -> dict[str, Any]:
        """Each label on its own: its 2x2 confusion matrix ([[tn, fp], [fn,
        tp]]) and scores; the summaries are their means."""
        import numpy as np

        from l2compile import scoring

        p, y = scoring.rows(outputs), scoring.rows(targets)
        counts = [scoring.two_by_two(y[:, j], p[:, j]) for j in range(p.shape[1])]
        per_label = [scoring.per_class(c) for c in counts]
        return {
            "per_class": {
                name: {
                    "precision": float(stats["precision"][1]),
                    "recall": float(stats["recall"][1]),
                    "f1": float(stats["f1"][1]),
                    "support": int(stats["support"][1]),
                }
                for name, stats in zip(names, per_label, strict=True)
            },
            "confusion": {
                "labels": list(names),
                "per_label": True,
                "counts": [c.tolist() for c in counts],
            },
            "balanced_accuracy": float(
                np.mean([scoring.balanced_accuracy(c) for c in counts])
            ),
            "macro_f1": float(np.mean([stats["f1"][1] for stats in per_label])),
        }

    def output_json(self) -> dict[str, Any]:
        return {
            "meaning": "one probability per label, each on its own (a sample "
            "may have any number of labels); a label is present where its "
            "probability is above 0.5. The label names, in order, are the "
            "lines of labels.txt",
            "labels": "labels.txt",
        }


@register
@dataclass(frozen=True)
class Regression(Task):
    """Real-valued targets: N linear outputs."""

    table_labels: ClassVar[str] = "y[:, 0] if y.shape[1] == 1 else y"
    output_per_column: ClassVar[bool] = True
    name: ClassVar[str] = "regression"
    losses: ClassVar[tuple[str, ...]] = ("mse", "mae", "huber")
    default_metrics: ClassVar[tuple[str, ...]] = ("mae", "rmse")
    allowed_metrics: ClassVar[tuple[str, ...]] = ("mae", "rmse", "mse")
    activation: ClassVar[str] = "linear"
    expects: ClassVar[str] = "raw values"
    output_name: ClassVar[str] = "values"
    parity_metric: ClassVar[str | None] = None
    per: ClassVar[str] = "target"
    weighs_classes: ClassVar[bool] = False
    counts_classes: ClassVar[bool] = False

    units: tuple[str, ...] = ()

    @classmethod
    def planned_outputs(
        cls, spec: Spec, recipe: Recipe, output: Shape | None, report: Report
    ) -> int:
        outputs = _units(output)
        _count_names(spec, outputs, "targets", report, "the last layer's units")
        return outputs

    @classmethod
    def plan(
        cls, spec: Spec, recipe: Recipe, output: Shape | None, report: Report
    ) -> Task:
        task = super().plan(spec, recipe, output, report)
        assert isinstance(task, Regression)
        return replace(task, units=tuple(spec.train.target_units or ()))

    @classmethod
    def default_names(cls, outputs: int) -> tuple[str, ...]:
        return tuple(f"target_{i}" for i in range(outputs))

    def output_origin(self, recipe: Recipe) -> str:
        return "the targets' columns"

    @property
    def label_source(self) -> str:
        return 'y.reshape(len(y), -1).astype("float32")'

    @property
    def labels_text(self) -> str:
        n = self.outputs
        return "float targets" + (f", {n} columns" if n > 1 else "")

    def check_label_values(self, key: str, y: npt.NDArray[Any]) -> list[str]:
        from l2compile.datasets import not_finite

        if y.dtype.kind not in "iuf":
            return [f"{key} has dtype {y.dtype}; expected numbers"]
        return not_finite(key, y) if y.dtype.kind == "f" else []

    def parity_score(
        self, outputs: npt.NDArray[Any], targets: npt.NDArray[Any]
    ) -> float:
        raise TypeError("regression compares outputs, not a score")

    def compare(
        self,
        keras_outputs: npt.NDArray[Any],
        lite_outputs: npt.NDArray[Any],
        targets: npt.NDArray[Any],
    ) -> Parity:
        """The largest difference between the outputs, in units of each
        target's standard deviation on the test split (1 where it is 0)."""
        from l2compile import scoring

        spread = scoring.rows(targets).std(axis=0)
        spread[spread == 0] = 1.0
        gap = abs(scoring.rows(lite_outputs) - scoring.rows(keras_outputs)) / spread
        return Parity("relative_max_difference", None, None, float(gap.max()))

    def predictions(self, outputs: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return outputs

    summary_names: ClassVar[tuple[str, ...]] = ()
    #: The most (true, predicted) pairs per target metrics.json keeps for the
    #: report's residual plot.
    residual_points: ClassVar[int] = 2000

    def trivial(
        self, train_targets: npt.NDArray[Any], names: Sequence[str]
    ) -> tuple[npt.NDArray[Any], str]:
        from l2compile import scoring

        return scoring.rows(train_targets).mean(axis=0), (
            "the training split's mean of each target for every sample (its "
            "median, for mae)"
        )

    def baseline(
        self,
        train_targets: npt.NDArray[Any],
        targets: npt.NDArray[Any],
        names: Sequence[str],
    ) -> dict[str, float]:
        import numpy as np

        from l2compile import scoring

        found = super().baseline(train_targets, targets, names)
        # The median is the constant with the least absolute error.
        median = np.median(scoring.rows(train_targets), axis=0)
        error = scoring.mean_absolute_error(np.tile(median, (len(targets), 1)), targets)
        if "mae" in found:
            found["mae"] = error
        if self.loss_name == "mae":
            found["loss"] = error
        return found

    def breakdown(
        self,
        outputs: npt.NDArray[Any],
        targets: npt.NDArray[Any],
        names: Sequence[str],
    ) -> dict[str, Any]:
        """Each target's MAE and RMSE, and up to `residual_points` of its
        (true, predicted) pairs, evenly spaced, for the residual plot."""
        import numpy as np

        from l2compile import scoring

        p, y = scoring.rows(outputs), scoring.rows(targets)
        kept = np.unique(
            np.linspace(0, len(y) - 1, min(len(y), self.residual_points)).astype(int)
        )
        return {
            "per_target": {
                name: {
                    "mae": scoring.mean_absolute_error(p[:, j], y[:, j]),
                    "rmse": scoring.rmse(p[:, j], y[:, j]),
                }
                for j, name in enumerate(names)
            },
            "residuals": {
                name: {
                    "true": [float(v) for v in y[kept, j]],
                    "predicted": [float(v) for v in p[kept, j]],
                }
                for j, name in enumerate(names)
            },
        }

    def summary(
        self, outputs: npt.NDArray[Any], targets: npt.NDArray[Any]
    ) -> dict[str, float]:
        return {}

    def output_json(self) -> dict[str, Any]:
        targets = [
            {"name": name, **({"unit": self.units[i]} if self.units else {})}
            for i, name in enumerate(self.names)
        ]
        return {
            "meaning": "raw regression values, one per target, in the units of "
            "the training targets (the model does not scale them)",
            "targets": targets,
        }

    def output_files(self, recipe: Recipe) -> dict[str, str]:
        return {}


def _units(output: Shape | None) -> int:
    """The outputs of a model whose output is one vector (0: unknown, or not
    a vector, which check_output reports)."""
    return output[0] if output is not None and len(output) == 1 else 0


def _zero_one(key: str, y: npt.NDArray[Any], what: str) -> list[str]:
    """0/1 labels, as integers or floats."""
    import numpy as np

    from l2compile.datasets import not_finite

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
