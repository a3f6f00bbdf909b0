"""Task `regression`: real-valued targets, linear outputs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
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
)

if TYPE_CHECKING:
    import numpy.typing as npt


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
    why_no_num_classes: ClassVar[str] = (
        "; the last layer's units are the number of targets"
    )
    has_units: ClassVar[bool] = True

    units: tuple[str, ...] = ()

    @classmethod
    def planned_outputs(
        cls, spec: SpecOptions, recipe: Recipe, output: Shape | None, report: Report
    ) -> int:
        outputs = output_units(output)
        count_names(spec, outputs, "targets", report, "the last layer's units")
        return outputs

    @classmethod
    def plan(
        cls, spec: SpecOptions, recipe: Recipe, output: Shape | None, report: Report
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
        from l2compile.arrays import not_finite

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

    def prediction_table(
        self, outputs: npt.NDArray[Any], names: Sequence[str]
    ) -> tuple[list[str], list[list[str]]]:
        """One column per target, named as it."""
        rows = [
            list(map(number_text, row)) for row in outputs.reshape(len(outputs), -1)
        ]
        return list(names), rows

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
