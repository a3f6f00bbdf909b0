"""The plan's types: the tree a spec compiles to, and nothing else.

This module is the compiler's intermediate model; reading it explains the
compiler. `l2compile.plan` makes a `ModelPlan` from a spec (its planners check
the spec and decide everything), `l2compile.render` lays it out as Python
source, and the build runs it. Like a code generator's model module (as
betterproto keeps its tree in `plugin/models.py`), it imports nothing of the
stages around it: not the spec, the planners, the templates or the build; the
kinds it holds (a data source, a task, a layer kind) are their own modules.

    ModelPlan                     one generated module
    ├── constants: Constant       named hyperparameters at the top of the module
    ├── layers: LayerPlan         one Keras layer each, in spec order: a graph
    │   ├── inputs                the layers whose outputs it takes, all earlier
    │   │                         (`input`: the model's input)
    │   ├── args                  its constructor arguments, as Python source
    │   ├── output_shape          inferred without TensorFlow
    │   ├── final_activation      what its output ends with, for the task's check
    │   ├── kind                  its class in l2compile.layers, and the flags it
    │   │                         states (passthrough, reads_ids, TFLite limits)
    │   └── weights: WeightPlan   each weight: shape, role, L2 coefficient, decay
    ├── optimizer                 compile()'s optimizer, as Python source
    ├── schedule: SchedulePlan    the learning rate's schedule, if any
    ├── backbone: BackbonePlan    a pretrained backbone, if any
    ├── task: Task                what the output means (l2compile.tasks): the
    │                             loss and metrics as source, the history keys,
    │                             the output's shape and name, its check against
    │                             the model, and how a prediction is scored
    ├── recipe: Source            the data (l2compile.sources): where it comes
    │                             from, its shape and classes, and the template
    │                             fragment that reads it
    ├── data_path: SpecPath       the spec's data file, resolved against its folder
    └── export_plans              what each export format plans of its options
                                  (l2compile.formats: TFLitePlan, the TFLite files)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from l2compile.errors import SpecError
from l2compile.layers import KINDS, LayerSpec
from l2compile.layers.base import INPUT, Shape, WeightPlan
from l2compile.recipes import ModelInput, SpecPath
from l2compile.sources.base import Source as Recipe
from l2compile.tasks import Task

__all__ = [
    "BackbonePlan",
    "Constant",
    "LayerPlan",
    "ModelPlan",
    "SchedulePlan",
    "layers_stack",
    "scope_name",
]

_Kind = type[LayerSpec]  # (LayerPlan.type shadows `type` in its class body)


@dataclass(frozen=True)
class SchedulePlan:
    """The generated learning_rate(): its constants, docstring and return."""

    kind: str  #: cosine or step
    constants: tuple[tuple[str, str, str], ...]  #: (name, value, comment)
    docstring: str
    cls: str  #: the class in keras.optimizers.schedules
    args: tuple[str, ...]  #: its arguments, as source
    warmup_epochs: int = 0  #: epochs the rate rises over (cosine)


@dataclass(frozen=True)
class LayerPlan:
    """One Keras layer: its class, its arguments as source, its shapes.

    `args` holds the arguments decided by the layer's own fields; the
    regularizer arguments, decided by the l2 pass, come after them in
    `all_args`. `inputs` names the layers whose outputs it takes (`input`:
    the model's input), all of them earlier in the plan.
    """

    index: int
    name: str
    type: str
    keras_class: str
    args: tuple[str, ...]
    output_shape: Shape
    weights: tuple[WeightPlan, ...] = ()
    regularizers: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    final_activation: str | None = None  #: see LayerSpec.final_activation
    #: What builds it, where that is not `layers.<keras_class>(args)` (a
    #: backbone: the generated `backbone()`).
    constructor: str | None = None

    @property
    def kind(self) -> _Kind:
        """Its kind's class, for what the kind states of all its layers."""
        return KINDS[self.type]

    @property
    def passthrough(self) -> bool:
        return self.kind.passthrough

    @property
    def augments(self) -> bool:
        """It augments the training images in the input pipeline: it is no
        layer of the model (LayerSpec.augments)."""
        return self.kind.augments

    @property
    def reads_ids(self) -> bool:
        return self.kind.reads_ids

    @property
    def all_args(self) -> tuple[str, ...]:
        *own, name = self.args
        return (*own, *self.regularizers, name)

    @property
    def params(self) -> int:
        return sum(w.params for w in self.weights)


@dataclass(frozen=True)
class BackbonePlan:
    """A pretrained backbone, as the generated `backbone()` builds it."""

    layer: str  #: its layer's name in the model
    model: str  #: its name in a spec (mobilenet_v3_small)
    keras_class: str  #: its class in keras.applications
    input_shape: Shape
    #: Its weights: `imagenet` (Keras' own), `none` (random) or `file`.
    weights: str
    weights_path: SpecPath | None  #: the file, resolved against the spec
    rescaling: str  #: the layer that scales [0, 1] to what it reads
    reads: str  #: the pixel range it reads
    own_preprocessing: str
    #: Its L2 coefficient as source (None: no penalty), and the names of the
    #: variables the l2 rules reach.
    l2: str | None
    regularized: tuple[str, ...]
    trained_from: int | None  #: the first layer it trains (None: frozen)


@dataclass(frozen=True)
class Constant:
    """A named module-level constant: `NAME = value  # comment`."""

    name: str
    value: str
    comment: str = ""


#: The train.distribute values that are tf.distribute strategies (TensorFlow
#: only); data_parallel is Keras' own distribution, on JAX.
TF_DISTRIBUTE = ("mirrored", "multi_worker")
#: The kinds of tracking (train.tracking), and the package each needs.
TRACKED = {"mlflow": "mlflow", "tensorboard": "tensorboard"}


@dataclass(frozen=True)
class Tracking:
    """What a build tracks (train.tracking, with build --track added)."""

    mlflow: bool = False
    tensorboard: bool = False

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(kind for kind in TRACKED if getattr(self, kind))


@dataclass(frozen=True)
class ModelPlan:
    """Everything needed to render and build one spec."""

    name: str
    description: str
    source_file: str
    spec_sha256: str
    #: The spec file's text as it was read (the report shows it).
    spec_text: str
    #: `--set FIELD=VALUE` applied to the spec file's fields, as written.
    overrides: tuple[str, ...]
    input_shape: Shape
    l2: float
    l2_bias: bool
    layers: tuple[LayerPlan, ...]
    optimizer: str
    optimizer_args: tuple[str, ...]
    task: Task
    recipe: Recipe
    epochs: int
    batch_size: int
    seed: int
    export_formats: tuple[str, ...]
    #: Seeds the data split (train.split_seed, else train.seed).
    split_seed: int = 0
    #: input.shape was left out: input_shape is a placeholder until the build
    #: derives the shape from the data (a csv table's width after encoding).
    derived_input: bool = False
    #: The spec file's absolute path, where input.shape is derived: the
    #: build plans it again from any working folder (a Ray worker's too).
    spec_path: str = ""
    #: Fail a build whose model does not beat the trivial baseline.
    require_learning: bool = False
    #: What in the spec is valid but likely not what it means.
    warnings: tuple[SpecError, ...] = ()
    constants: tuple[Constant, ...] = field(default=())
    #: What each format in `export_formats` plans of its own options, by
    #: name (None: nothing; `ExportFormat.plan`).
    export_plans: dict[str, Any] = field(default_factory=dict)
    distribute: str = "none"
    deterministic_ops: bool = False
    #: The Keras backend the build trains on (train.backend or build
    #: --backend, `auto` picked for this machine).
    backend: str = "jax"
    #: Why `auto` picked it (None: the spec or build --backend named it).
    backend_reason: str | None = None
    #: The backend the generated module sets unless KERAS_BACKEND names one
    #: (train.backend; for `auto`, JAX; build --backend leaves the code as
    #: it is).
    module_backend: str = "jax"
    #: Recompute the trained batch normalization layers' statistics after
    #: training (train.batchnorm_statistics, where some layer's trained).
    batchnorm_statistics: bool = False
    #: Some layer holds batch normalization that trains.
    trains_batch_norm: bool = False
    weight_decay: float = 0.0
    #: Trainable weights that weight decay must leave alone (Keras paths).
    no_weight_decay: tuple[str, ...] = ()
    #: The share of the training split held out for validation (None: the
    #: test split validates, the article's way).
    validation: float | None = 0.1
    data: str | None = None  #: train.data as written (the module's DATA)
    #: train.data resolved against the spec's folder, where the build reads it.
    data_path: SpecPath | None = None
    #: A csv's separate test file (data: {train: ..., test: ...}), resolved.
    test_path: SpecPath | None = None
    backbone: BackbonePlan | None = None
    #: train.initial_weights: the weights file build_model() loads.
    initial_weights: SpecPath | None = None
    #: The learning rate's schedule (None: the constant LEARNING_RATE).
    schedule: SchedulePlan | None = None
    #: keras.callbacks.EarlyStopping's arguments, as source (None: none).
    early_stopping: tuple[str, ...] | None = None
    #: What the build records besides its folder (train.tracking).
    tracking: Tracking = field(default_factory=Tracking)
    #: The spec's fields as validated (defaults included), as JSON values:
    #: a tracked build's parameters.
    spec_fields: dict[str, Any] = field(default_factory=dict)

    @property
    def warmup_epochs(self) -> int:
        """The epochs the learning rate's schedule warms up over."""
        return self.schedule.warmup_epochs if self.schedule else 0

    @property
    def tensorflow_only(self) -> bool:
        """Whether the generated module needs Keras' TensorFlow backend."""
        return self.distribute in TF_DISTRIBUTE or self.deterministic_ops

    @property
    def imports_tensorflow(self) -> bool:
        """Whether the generated module imports TensorFlow (on any backend):
        for a TensorFlow-only feature, for the image ops that read an image
        folder, or to run augmentation as a TensorFlow graph."""
        return self.tensorflow_only or self.recipe.tensorflow or bool(self.augmentation)

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def is_stack(self) -> bool:
        """Whether each layer takes the one before it: a `keras.Sequential`."""
        return layers_stack(self.layers, self.recipe)

    @property
    def variable_scope(self) -> str | None:
        """What Keras puts before each layer's variable paths."""
        return scope_name(self.name, self.layers, self.recipe)

    def weight_path(self, layer: LayerPlan, weight: WeightPlan) -> str:
        """The Keras variable path of a weight of this model."""
        return weight.path(self.variable_scope, layer.name)

    @property
    def normed_weights(self) -> frozenset[str]:
        """The weights whose L2 norm a build reports: every regularized
        weight, and every trained kernel with or without a penalty (so that
        builds with and without one, a sweep's trials, compare)."""
        return frozenset(
            self.weight_path(layer, w)
            for layer in self.layers
            for w in layer.weights
            if w.l2 > 0 or w.weight_decay > 0 or (w.role == "kernel" and w.trainable)
        )

    @property
    def augmentation(self) -> tuple[LayerPlan, ...]:
        """The layers that augment the training images (the first ones: the
        planner refuses any other place), built apart from the model."""
        return tuple(layer for layer in self.layers if layer.augments)

    @property
    def model_layers(self) -> tuple[LayerPlan, ...]:
        """The layers of the model itself: all but the augmentation."""
        return tuple(layer for layer in self.layers if not layer.augments)

    @property
    def adapted(self) -> tuple[str, ...]:
        """The layers that learn the training data's statistics before training."""
        return tuple(layer.name for layer in self.layers if layer.kind.adapted)

    @property
    def optional_members(self) -> tuple[str, ...]:
        """What the generated module has beyond what every module has
        (l2compile.contract), for this plan."""
        return (
            *(("validation_split",) if self.validation is not None else ()),
            *(("adapt",) if self.adapted else ()),
            *(("class_weights",) if self.task.class_weight == "balanced" else ()),
            *(("early_stopping",) if self.early_stopping else ()),
            *(("recompute_batchnorm_statistics",) if self.batchnorm_statistics else ()),
        )

    @property
    def integer_input(self) -> bool:
        """Whether the model reads integer ids (an embedding reads its input)."""
        return any(layer.reads_ids for layer in self.layers)

    @property
    def model_input(self) -> ModelInput:
        """What the model reads, for checking the data against it: the sample
        shape, and the number of ids (the smallest input_dim) where embeddings
        read it."""
        tables = [lay.weights[0].shape[0] for lay in self.layers if lay.reads_ids]
        return ModelInput(
            self.input_shape,
            min(tables) if tables else None,
            self.task,
            derived=self.derived_input,
        )

    @property
    def regularized_params(self) -> int:
        return sum(w.params for layer in self.layers for w in layer.weights if w.l2 > 0)

    @property
    def decayed_params(self) -> int:
        return sum(
            w.params
            for layer in self.layers
            for w in layer.weights
            if w.weight_decay > 0
        )

    @property
    def output_shape(self) -> Shape:
        return self.layers[-1].output_shape


def layers_stack(
    layers: tuple[LayerPlan, ...] | list[LayerPlan], recipe: Recipe
) -> bool:
    """Whether each layer takes the one before it (the first: the input), and
    nothing comes before them (a recipe that encodes the input needs a graph)."""
    if recipe.encodes:
        return False
    before = (INPUT, *(layer.name for layer in layers))
    return all(layer.inputs == (before[i],) for i, layer in enumerate(layers))


def scope_name(
    name: str, layers: tuple[LayerPlan, ...] | list[LayerPlan], recipe: Recipe
) -> str | None:
    """A Sequential model builds its layers under its own name; a functional
    one builds them as they are called, outside any model's scope."""
    return name if layers_stack(layers, recipe) else None
