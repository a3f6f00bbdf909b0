"""The task node of the plan: what the model's output means.

A task kind is one class that states, in one place:

- the loss and metrics, as the source `compile()` gets (`loss`, `metrics`),
  and what training logs each epoch (`history_keys`);
- the output the model must give for its data (`output_shape`), checked
  against the planned layers before anything is generated (`check_output`),
  and the name apps find it by in exported files (`output_name`);
- how a prediction is scored (`targets`, `data_loss`, `accuracy`,
  `predictions`), through `l2compile.scoring`, so that the build, the TFLite
  checks and `l2compile eval` all score alike;
- what a deployed model's output means (`output_json`, `output_files`).

A kind registers itself with `@register`; `task_for` picks the kind whose
`losses` hold the spec's loss. Today there is one: `Classification`.

This is plan-stage code: numpy is imported (through `l2compile.scoring`) only
inside the functions that score, which only the build and `eval` call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from l2compile.layers.base import Shape, py_str, shape_text
from l2compile.recipes import Recipe, Report

if TYPE_CHECKING:
    import numpy.typing as npt

    from l2compile.plan import LayerPlan
    from l2compile.spec import TrainSpec

__all__ = ["TASKS", "Classification", "Task", "register", "task_for"]


@dataclass(frozen=True)
class Task(ABC):
    """What every task kind states; see the module's docstring."""

    #: The kind's name.
    name: ClassVar[str]
    #: The spec losses that mean this task.
    losses: ClassVar[tuple[str, ...]]
    #: The name of the model's output in exported signatures, which apps use.
    output_name: ClassVar[str]

    loss_name: str  #: train.loss as written
    metric_names: tuple[str, ...]  #: train.metrics as written

    @classmethod
    @abstractmethod
    def of(cls, train: TrainSpec, recipe: Recipe) -> Task:
        """The task of a spec's training on `recipe`'s data."""

    @property
    def loss(self) -> str:
        """compile()'s loss, as Python source."""
        return py_str(self.loss_name)

    @property
    def metrics(self) -> str:
        """compile()'s metrics, as Python source."""
        return "[" + ", ".join(py_str(m) for m in self.metric_names) + "]"

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
    @abstractmethod
    def output_shape(self) -> Shape:
        """The shape of the model's output for one sample."""

    @abstractmethod
    def check_output(
        self, layers: Sequence[LayerPlan], recipe: Recipe, report: Report
    ) -> None:
        """Report what in the planned model (every layer planned) cannot give
        this task's output."""

    @abstractmethod
    def output_origin(self, recipe: Recipe) -> str:
        """What decides `output_shape`, for messages: `recipe 'mnist' has ...`."""

    # --- scoring ----------------------------------------------------------------

    @abstractmethod
    def targets(self, y: Any) -> npt.NDArray[Any]:
        """The preprocessed labels as scoring compares outputs with them."""

    @abstractmethod
    def data_loss(self, outputs: npt.NDArray[Any], targets: npt.NDArray[Any]) -> float:
        """The loss without any penalty, as `loss` computes it."""

    @abstractmethod
    def accuracy(self, outputs: npt.NDArray[Any], targets: npt.NDArray[Any]) -> float:
        """The share of samples predicted right."""

    @abstractmethod
    def predictions(self, outputs: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """What the model predicts for each sample."""

    # --- deployment ------------------------------------------------------------

    @abstractmethod
    def output_json(self) -> dict[str, Any]:
        """model.json's description of the output, beside its name and shape."""

    @abstractmethod
    def output_files(self, recipe: Recipe) -> dict[str, str]:
        """Files an app needs to read the output: name -> text."""


#: Every task kind, by name.
TASKS: dict[str, type[Task]] = {}

_T = TypeVar("_T", bound=type[Task])


def register(kind: _T) -> _T:
    """Add a task kind to `TASKS`."""
    assert kind.name not in TASKS, f"two task kinds named {kind.name}"
    TASKS[kind.name] = kind
    return kind


def task_for(train: TrainSpec, recipe: Recipe) -> Task:
    """The task a spec's training means: the kind whose losses hold its loss."""
    kind = next(kind for kind in TASKS.values() if train.loss in kind.losses)
    return kind.of(train, recipe)


@register
@dataclass(frozen=True)
class Classification(Task):
    """One class per sample: a softmax over the recipe's classes, trained with
    sparse categorical cross-entropy against integer labels."""

    name: ClassVar[str] = "classification"
    losses: ClassVar[tuple[str, ...]] = ("sparse_categorical_crossentropy",)
    output_name: ClassVar[str] = "probabilities"

    num_classes: int

    @classmethod
    def of(cls, train: TrainSpec, recipe: Recipe) -> Classification:
        return cls(train.loss, tuple(train.metrics), recipe.num_classes)

    @property
    def output_shape(self) -> Shape:
        return (self.num_classes,)

    def check_output(
        self, layers: Sequence[LayerPlan], recipe: Recipe, report: Report
    ) -> None:
        """One probability per class: the last layer outputs (num_classes,),
        and the model's last transformation is a softmax."""
        last = layers[-1]
        if last.output_shape != self.output_shape:
            report(
                ("layers", last.index),
                f"the model's output shape is {shape_text(last.output_shape)}, but "
                f"{self.output_origin(recipe)}: the last layer must output "
                f"({self.num_classes},)",
            )
        # Layers that only move values around (dropout, flatten, reshape) may
        # follow the softmax.
        by_name = {lay.name: lay for lay in layers}
        while last.passthrough and last.inputs[0] in by_name:
            last = by_name[last.inputs[0]]
        if last.final_activation is None:
            report(
                ("layers", last.index),
                f"the model ends with {_a(last.type)} layer, but loss "
                f"{self.loss_name!r} expects class probabilities: end with a "
                "dense or activation layer with activation 'softmax'",
            )
        elif last.final_activation != "softmax":
            report(
                ("layers", last.index, "activation"),
                f"the last {last.type} layer must use activation 'softmax': loss "
                f"{self.loss_name!r} expects class probabilities",
            )

    def output_origin(self, recipe: Recipe) -> str:
        return recipe.classes_origin

    def targets(self, y: Any) -> npt.NDArray[Any]:
        from l2compile import scoring

        return scoring.labels_of(y)

    def data_loss(self, outputs: npt.NDArray[Any], targets: npt.NDArray[Any]) -> float:
        from l2compile import scoring

        return scoring.data_loss(outputs, targets)

    def accuracy(self, outputs: npt.NDArray[Any], targets: npt.NDArray[Any]) -> float:
        from l2compile import scoring

        return scoring.accuracy(outputs, targets)

    def predictions(self, outputs: npt.NDArray[Any]) -> npt.NDArray[Any]:
        from l2compile import scoring

        return scoring.classes(outputs)

    def output_json(self) -> dict[str, Any]:
        return {
            "meaning": "one probability per class; the class names, in order, "
            "are the lines of labels.txt",
            "labels": "labels.txt",
        }

    def output_files(self, recipe: Recipe) -> dict[str, str]:
        return {"labels.txt": "".join(f"{name}\n" for name in recipe.labels)}


def _a(word: str) -> str:
    """`a dense`, `an add`."""
    return ("an " if word[0] in "aeiou" else "a ") + word
