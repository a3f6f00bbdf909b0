"""Task `multilabel`: any number of labels per sample, one sigmoid output
each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from l2compile.layers.base import Shape
from l2compile.sources.base import Report
from l2compile.sources.base import Source as Recipe
from l2compile.tasks.base import (
    Parity,
    SpecOptions,
    Task,
    count_names,
    number_text,
    output_units,
    register,
    zero_one,
)
from l2compile.tasks.binary import Binary

if TYPE_CHECKING:
    import numpy.typing as npt


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
        cls, spec: SpecOptions, recipe: Recipe, output: Shape | None, report: Report
    ) -> int:
        outputs = spec.train.num_classes or output_units(output)
        origin = (
            f"train.num_classes is {outputs}"
            if spec.train.num_classes
            else "the last layer's units"
        )
        count_names(spec, outputs, "labels", report, origin)
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
        return zero_one(key, y, "labels 0 or 1")

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

    def prediction_table(
        self, outputs: npt.NDArray[Any], names: Sequence[str]
    ) -> tuple[list[str], list[list[str]]]:
        """The labels predicted (each at 0.5 or more), joined by ";", then
        each label's probability."""
        header = ["predicted", *(f"probability_{name}" for name in names)]
        rows = [
            [
                ";".join(name for name, on in zip(names, flags, strict=True) if on),
                *map(number_text, row),
            ]
            for flags, row in zip(self.predictions(outputs), outputs, strict=True)
        ]
        return header, rows

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
