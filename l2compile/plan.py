"""The plan: a spec resolved into everything the generated code needs.

A `ModelPlan` is the whole tree; its types, and a drawing of it, are in
`l2compile.nodes`. The planners in `l2compile.planners` each decide one part
(the graph, the backbone, training, the constants, the exports) and report
into one shared context; this module runs them.

How the layers are planned (`GraphPlanner.layers`): `names` gives each layer its
name (the spec's, else `<type>_<n>` for the n-th of its type); `wire` resolves
each layer's `inputs` (default: the layer before it) to earlier layers, and
with `check_arity` and `check_used` refuses unknown or later names, a wrong
number of inputs and dead branches; then each layer is planned in order from
its inputs' shapes by its kind, and `_assign_l2` gives its weights their L2.
Where each layer takes the one before it (`is_stack`), the module builds a
`keras.Sequential`, else a functional model. Each layer kind is one class in
`l2compile.layers`, the task one class in `l2compile.tasks`, the data one
source in `l2compile.sources`: a new kind of any of them is one class, not
edits here.

Everything a template prints is decided here, as a ready string: names are
validated identifiers, numbers are Python literals (`py_float` writes floats
as ruff does), and text goes through `py_str`. A spec's text never reaches the
code any other way.

`plan_spec` also checks what depends on several fields at once (the wiring,
shapes, the model's output against its task and data, names, TFLite limits)
and returns every problem, placed in the spec, in file order.

Which weights the global `l2` (and decoupled weight decay) reach is decided in
one place, `reached_by_l2`; `_assign_l2` applies it to every weight.
"""

from __future__ import annotations

from pathlib import Path

from l2compile.backends import Choice, Device
from l2compile.errors import SpecError
from l2compile.formats.tflite import TFLitePlan
from l2compile.layers.base import (
    INPUT,
    Role,
    Shape,
    WeightPlan,
    py_str,
    shape_text,
)
from l2compile.nodes import (
    Constant,
    LayerPlan,
    ModelPlan,
    Tracking,
)
from l2compile.planners.backbone import BackbonePlanner
from l2compile.planners.constants import module_constants, task_constants
from l2compile.planners.context import Context
from l2compile.planners.export import ExportPlanner
from l2compile.planners.graph import MAX_PARAMS, GraphPlanner, reached_by_l2
from l2compile.planners.training import TrainingPlanner, _held_out
from l2compile.spec import LoadedSpec, SplitFiles
from l2compile.tasks import plan_task

__all__ = [
    "INPUT",
    "MAX_PARAMS",
    "Constant",
    "LayerPlan",
    "ModelPlan",
    "Role",
    "Shape",
    "TFLitePlan",
    "WeightPlan",
    "plan_spec",
    "py_str",
    "reached_by_l2",
    "shape_text",
    "task_constants",
]


class _SpecPlanner:
    """Runs the planners over one spec, then makes its plan from what they
    decided (or returns every problem they found)."""

    def __init__(
        self,
        loaded: LoadedSpec,
        folder: Path | None,
        backend: Choice | None = None,
        device: Device | None = None,
    ) -> None:
        self.context = Context(loaded, folder, backend, device)
        self.spec = loaded.spec
        self.graph = GraphPlanner(self.context)
        self.backbones = BackbonePlanner(self.context)
        self.training = TrainingPlanner(self.context)
        self.exports = ExportPlanner(self.context)

    def plan(self) -> ModelPlan | list[SpecError]:
        spec = self.spec
        train = spec.train
        split = train.data if isinstance(train.data, SplitFiles) else None
        recipe = self.training.recipe(split)
        layers = self.graph.layers()
        complete = bool(layers) and len(layers) == len(spec.layers)
        output = layers[-1].output_shape if complete else None
        task = plan_task(spec, recipe, output, self.context.error)
        self.training.check_multi_worker(recipe, task)
        self.graph.check_size(layers)
        self.graph.check_augmentation(layers)
        self.training.check_data(recipe, task, layers)
        self.training.check_weight_decay(layers)
        self.exports.check_exports(layers)
        self.training.check_schedule()
        self.training.check_early_stopping(task)
        backbone = self.backbones.backbone(layers, recipe)
        initial_weights = self.training.initial_weights(layers)
        steps_per_execution = self.training.steps_per_execution()
        backend, module_backend = self.training.backend(layers)
        if self.context.errors:  # in the order of the file, as a reader reads it
            return sorted(
                self.context.errors, key=lambda e: (e.line or 0, e.column or 0)
            )
        optimizer = self.training.optimizer(layers, recipe)
        return ModelPlan(
            name=spec.name,
            description=spec.description,
            source_file=self.context.source.file,
            spec_sha256=self.context.source.sha256,
            spec_text=self.context.source.text,
            overrides=self.context.source.overrides,
            input_shape=spec.input.planned,
            derived_input=spec.input.shape is None,
            l2=spec.l2,
            l2_bias=spec.l2_bias,
            layers=tuple(layers),
            optimizer=optimizer.cls,
            optimizer_args=optimizer.args,
            task=task,
            recipe=recipe,
            epochs=spec.train.epochs,
            batch_size=spec.train.batch_size,
            seed=spec.train.seed,
            split_seed=spec.train.seeds_split,
            require_learning=spec.train.require_learning,
            export_formats=tuple(spec.export.formats),
            constants=module_constants(
                spec, recipe, layers, optimizer, steps_per_execution, task, backbone
            ),
            export_plans=self.exports.plans(layers),
            distribute=spec.train.distribute,
            deterministic_ops=spec.train.deterministic_ops,
            backend=backend.backend,
            backend_reason=backend.reason,
            batchnorm_statistics=self.training.batchnorm_statistics(),
            trains_batch_norm=self.training.trains_batch_norm(),
            module_backend=module_backend,
            weight_decay=spec.train.optimizer.weight_decay,
            no_weight_decay=optimizer.no_decay,
            validation=_held_out(spec.train.validation),
            data=recipe.data,
            data_path=self.context.spec_path(
                "train.data.train" if split else "train.data", recipe.data
            ),
            test_path=self.context.spec_path(
                "train.data.test", split.test if split else None
            ),
            backbone=backbone,
            initial_weights=initial_weights,
            schedule=self.training.schedule(),
            early_stopping=self.training.early_stopping(),
            tracking=Tracking(
                mlflow=spec.train.tracking.mlflow,
                tensorboard=spec.train.tracking.tensorboard,
            ),
            spec_fields=spec.model_dump(mode="json", warnings=False),
            warnings=tuple(self.context.warnings),
        )


def plan_spec(
    loaded: LoadedSpec,
    folder: Path | None = None,
    *,
    backend: Choice | None = None,
    device: Device | None = None,
) -> ModelPlan | list[SpecError]:
    """Resolve a valid spec into a plan, or every cross-field error in it.

    `folder` is the spec file's folder, which paths in the spec are relative
    to; by default the folder of the spec's display name, from the working
    folder. `backend` (build --backend) overrides train.backend; `device`
    (by default this machine's) is what `auto` picks a backend for.
    """
    return _SpecPlanner(loaded, folder, backend, device).plan()
