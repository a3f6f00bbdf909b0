"""Task `classification`: one class per sample, a softmax over the classes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from l2compile.layers.base import Shape
from l2compile.sources.base import Report
from l2compile.sources.base import Source as Recipe
from l2compile.tasks.base import (
    SpecOptions,
    Task,
    number_text,
    output_units,
    register,
)

if TYPE_CHECKING:
    import numpy.typing as npt


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
    def spec_labels(cls, outputs: int) -> dict[str, Any]:
        """An npz file's labels are class ids: num_classes says how many."""
        return {"num_classes": outputs}

    reads_class_recipes: ClassVar[bool] = True

    @classmethod
    def planned_outputs(
        cls, spec: SpecOptions, recipe: Recipe, output: Shape | None, report: Report
    ) -> int:
        train = spec.train
        if recipe.num_classes is None and recipe.classes_from_data:
            # The data's classes are counted when it is read; the build checks
            # them against the last layer.
            recipe = replace(recipe, num_classes=output_units(output) if output else 0)
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
        cls, spec: SpecOptions, recipe: Recipe, output: Shape | None, report: Report
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
    def fits_custom_loop(self) -> bool:
        return (
            self.loss_name == "sparse_categorical_crossentropy"
            and self.metric_names == ("accuracy",)
            and self.class_weight is None
        )

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
            from l2compile.arrays import not_finite

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

    def prediction_table(
        self, outputs: npt.NDArray[Any], names: Sequence[str]
    ) -> tuple[list[str], list[list[str]]]:
        """The class predicted, then each class's probability."""
        header = ["predicted", *(f"probability_{name}" for name in names)]
        rows = [
            [names[k], *map(number_text, row)]
            for k, row in zip(self.predictions(outputs), outputs, strict=True)
        ]
        return header, rows

    def output_json(self) -> dict[str, Any]:
        return {
            "meaning": "one probability per class; the class names, in order, "
            "are the lines of labels.txt",
            "labels": "labels.txt",
        }
