"""Task `binary`: two classes, one sigmoid output."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from l2compile.layers.base import Shape
from l2compile.sources.base import Report
from l2compile.sources.base import Source as Recipe
from l2compile.tasks.base import (
    SpecOptions,
    Task,
    number_text,
    register,
    zero_one,
)

if TYPE_CHECKING:
    import numpy.typing as npt


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
    why_no_num_classes: ClassVar[str] = ", which has two classes (0 and 1)"
    bool_labels: ClassVar[bool] = True

    @classmethod
    def planned_outputs(
        cls, spec: SpecOptions, recipe: Recipe, output: Shape | None, report: Report
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
        return zero_one(key, y, self.labels_text)

    def parity_score(
        self, outputs: npt.NDArray[Any], targets: npt.NDArray[Any]
    ) -> float:
        from l2compile import scoring

        return scoring.binary_accuracy(outputs, targets)

    def predictions(self, outputs: npt.NDArray[Any]) -> npt.NDArray[Any]:
        from l2compile import scoring

        return scoring.positives(outputs).reshape(-1)

    def prediction_table(
        self, outputs: npt.NDArray[Any], names: Sequence[str]
    ) -> tuple[list[str], list[list[str]]]:
        """The class predicted (the positive one at 0.5 or more), then each
        class's probability: the negative's is 1 less the output."""
        header = ["predicted", *(f"probability_{name}" for name in names)]
        positive = outputs.reshape(-1)
        rows = [
            [names[k], number_text(1 - p), number_text(p)]
            for k, p in zip(self.predictions(outputs), positive, strict=True)
        ]
        return header, rows

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
