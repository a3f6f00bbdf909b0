"""What an export format is: the protocol every format follows, and the registry.

An export format is one class, registered with `@register`, named as a spec
writes it in `export.formats`. It states, for its own kind of file:

- `name`: its value in `export.formats`;
- `options`: the spec model of its own options, read from `export.<name>`
  (None: it has none), checked by `check` and planned by `plan`;
- `exported`: whether the export stage writes it (on TensorFlow, from the
  trained `.keras` file); the Keras format's file is the one training saves;
- `files(plan)`: the files and folders it writes into a build folder;
- `export(job, model, generated, log)`: writes them, with its parity check
  against the Keras model, and returns what metrics.json says of them;
- `recognizes(path)` and `open(path, plan)`: how `l2compile eval` knows one
  and loads it to predict;
- `report(found)`: its section of the build's report page, from what its
  `export` returned;
- `packages`: the packages whose versions manifest.json records for it;
- `missing()`: what to install first, where those are optional (asked before
  training); `default`: whether a spec that leaves `formats` out gets it.

The spec's `export` field and the planner's checks are made from the
registry, so the next format is one module in this package.

Only light modules are imported here and by each format at import: the spec
imports the registry, and validating a spec imports no numpy or TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    import numpy.typing as npt

    from l2compile.contract import GeneratedModule
    from l2compile.datasets import Dataset
    from l2compile.fields import StrictModel
    from l2compile.nodes import LayerPlan, ModelPlan
    from l2compile.sections import Section


@dataclass(frozen=True)
class ExportJob:
    """What the export stage needs; it pickles, for a child process."""

    plan: ModelPlan
    module: Path  #: the generated module
    dataset: Dataset  #: as formats.calibration trims it
    model_file: Path  #: the trained model, as the training stage saved it
    dest: Path  #: the artifacts folder


#: The trained model as the training stage saves it, Keras' own format: the
#: export stage reads it, and the keras format publishes it as it is.
HANDOFF = "model.keras"

#: A tensor's shape; None where a dimension (or the whole shape) is not fixed.
TensorShape = tuple[int | None, ...] | None

#: Where a format reports a spec error: the field's path, and the message.
Error = Callable[[tuple[str | int, ...], str], None]


@dataclass(frozen=True)
class Scores:
    """What scoring an artifact on the preprocessed test split found."""

    scores: dict[str, float]
    loss: float
    loss_note: str
    mean_latency_ms: float
    batch: int
    outputs: npt.NDArray[Any]  #: the artifact's output for each sample


#: Scores an opened artifact on preprocessed samples and their targets.
Scorer = Callable[[Any, "npt.NDArray[Any]"], Scores]
#: An opened artifact's outputs for preprocessed samples (predict).
Predictor = Callable[[Any], "npt.NDArray[Any]"]


@dataclass(frozen=True)
class Opened:
    """An artifact loaded for eval and predict: its input and output shapes,
    checked against the spec before any data is read (`inputs` None: not
    known, so not checked), how it scores, and its outputs for samples."""

    inputs: Sequence[TensorShape] | None
    outputs: Sequence[TensorShape]
    score: Scorer
    predict: Predictor


class ExportFormat:
    """One export format; each registered class has one instance."""

    name: ClassVar[str]
    #: How eval's messages name a file of it ("a .keras file").
    artifact: ClassVar[str]
    #: How `build --help` names what it writes ("model.keras").
    writes: ClassVar[str]
    #: How its options' errors name it ("TFLite").
    title: ClassVar[str]
    options: ClassVar[type[StrictModel] | None] = None
    exported: ClassVar[bool] = True
    packages: ClassVar[tuple[str, ...]] = ()
    #: Whether a spec that leaves export.formats out gets it.
    default: ClassVar[bool] = True

    def chosen(self, export: Any) -> bool:
        """Whether the spec's `export` lists it in `formats`."""
        return self.name in export.formats

    def options_of(self, export: Any) -> Any:
        """Its options, as the spec's `export` gives them."""
        return getattr(export, self.name)

    def check(self, export: Any, layers: list[LayerPlan], error: Error) -> None:
        """Report through `error` what in the spec this format cannot make,
        before any training. Its options, set while `formats` leaves it
        out, would make nothing."""
        if self.options is None or self.chosen(export):
            return
        if self.name in export.model_fields_set:
            error(
                ("export", self.name),
                f"{self.title} options are set, but export.formats leaves "
                f"{self.name} out, so no {self.title} file would be made; add "
                f"{self.name} to formats, or remove these options",
            )

    def plan(self, export: Any, layers: list[LayerPlan]) -> Any:
        """What the build needs of its options (None: nothing); only for a
        format the spec exports."""
        return None

    def missing(self) -> str | None:
        """What to install before a build can write it (None: nothing);
        asked before training."""
        return None

    def plan_of(self, plan: ModelPlan) -> Any:
        """What `plan` planned for it (`plan`, above)."""
        return plan.export_plans.get(self.name)

    def calibration_samples(self, plan: ModelPlan, available: int) -> int:
        """How many training samples its export needs (of `available`)."""
        return 0

    def files(self, plan: ModelPlan) -> tuple[str, ...]:
        """The files and folders it writes into a build folder."""
        raise NotImplementedError

    def export(
        self, job: ExportJob, model: Any, generated: GeneratedModule, log: Any
    ) -> Any:
        """Write its files into `job.dest` from the trained `model`, check
        them against it; what metrics.json says of them (None: nothing)."""
        raise NotImplementedError

    def recognizes(self, path: Path) -> bool:
        """Whether `path` is a file (or folder) of this format."""
        raise NotImplementedError

    def open(self, path: Path, plan: ModelPlan) -> Opened:
        """Load the artifact at `path` for eval, without calling it."""
        raise NotImplementedError

    def report(self, found: Any) -> Section | None:
        """Its section of the build's report page, from what `export`
        returned (None: it has none)."""
        return None


#: Every format, by name, in the order a spec's default lists them.
FORMATS: dict[str, ExportFormat] = {}

F = TypeVar("F", bound=type[ExportFormat])


def register(cls: F) -> F:
    """Register an export format under its `name` (one instance)."""
    assert cls.name not in FORMATS, cls.name
    FORMATS[cls.name] = cls()
    return cls
