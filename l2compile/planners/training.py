"""The training planner: the data, the optimizer and how the model trains."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from l2compile import backends
from l2compile.backends import Backend, Choice, Pick
from l2compile.errors import closest
from l2compile.layers.base import (
    INPUT,
    py_float,
    py_str,
)
from l2compile.nodes import (
    TF_DISTRIBUTE,
    LayerPlan,
    SchedulePlan,
    scope_name,
)
from l2compile.planners.context import Planner
from l2compile.recipes import SpecPath
from l2compile.schedules import plan_schedule
from l2compile.sources import source_for
from l2compile.sources.base import ColumnType, Missing
from l2compile.sources.base import Source as Recipe
from l2compile.spec import MissingSpec, ScheduleSpec, SplitFiles
from l2compile.tasks import Task
from l2compile.text import TextSettings
from l2compile.weightfiles import check_weights

_OPTIMIZERS = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop"}


def _held_out(validation: float | str) -> float | None:
    """The share of the training split held out; None: validation: test."""
    return None if isinstance(validation, str) else validation


@dataclass(frozen=True)
class _Optimizer:
    cls: str
    args: tuple[str, ...]
    no_decay: tuple[str, ...]


class TrainingPlanner(Planner):
    """What trains the model: the data source, the task's fit with the model
    and the data, the optimizer and its schedule, early stopping, the backend
    and how training is distributed."""

    def check_data(self, recipe: Recipe, task: Task, layers: list[LayerPlan]) -> None:
        """The model against its data and its task: the input must hold the
        recipe's samples, and the output be the task's."""
        spec = self.spec
        if spec.input.shape is None and not recipe.encodes:
            self.error(
                ("input", "shape"),
                f"needed: recipe {recipe.name!r} does not derive it "
                "from its data (only csv does)",
            )
            return
        recipe.check_input(spec.input.planned, self.error)
        if not layers or len(layers) != len(spec.layers):
            return  # an earlier layer failed; its error says why
        task.check_output(layers, recipe, self.error)
        recipe.check_layers(layers, self.error)
        for layer in layers:
            if layer.kind.adapted and INPUT not in layer.inputs:
                self.error(
                    ("layers", layer.index, "type"),
                    f"a {layer.type} layer learns the mean and variance of the "
                    "training data before training, so it must read the model's "
                    "input (as the first layer of a stack, or with inputs: [input])",
                )

    def check_multi_worker(self, recipe: Recipe, task: Task) -> None:
        """multi_worker's custom loop (see the template) trains and scores
        integer-label classification alone, on arrays in memory."""
        train = self.spec.train
        if train.distribute != "multi_worker":
            return
        if recipe.streamed or recipe.encodes:
            self.error(
                ("train", "distribute"),
                f"multi_worker's custom training loop reads arrays in memory, not "
                f"recipe {train.recipe!r}; use distribute: mirrored or none",
            )
        elif not task.fits_custom_loop:
            self.error(
                ("train", "distribute"),
                "multi_worker's custom training loop trains task 'classification' "
                "with loss sparse_categorical_crossentropy and metric accuracy "
                "alone, without class_weight; use distribute: mirrored or none",
            )

    def steps_per_execution(self) -> int:
        """The spec's, except under MirroredStrategy, where Keras 3's multi-step
        loop fails ('You must feed a value for placeholder tensor',
        keras-team/keras issue 19246): there it is 1."""
        train = self.spec.train
        if train.distribute not in TF_DISTRIBUTE:
            return train.steps_per_execution
        if "steps_per_execution" in train.model_fields_set and (
            train.steps_per_execution > 1
        ):
            self.error(
                ("train", "steps_per_execution"),
                f"distribute: {train.distribute} needs steps_per_execution: 1; Keras "
                "3's multi-step loop fails under tf.distribute (keras-team/keras "
                "issue 19246)",
            )
        return 1

    def backend(self, layers: list[LayerPlan]) -> tuple[Pick, Backend]:
        """The backend to train on (`auto` picked by backends.pick for this
        device), and the one the generated module sets (for `auto`, JAX: the
        one a repository with only keras and jax installed runs, whatever
        machine made the code); TensorFlow-only settings refused on the
        others."""
        train = self.spec.train
        asked: Choice = self.backend_option or train.backend
        needs = self._tensorflow_only()
        convolves = next(
            (f"a {layer.type} layer" for layer in layers if layer.kind.convolves),
            None,
        )
        if asked == "auto" and train.distribute == "data_parallel" and not needs:
            chosen = Pick("jax", "distribute: data_parallel, which needs JAX")
        elif asked == "auto":
            chosen = backends.pick(convolves, needs, self.device)
        else:
            chosen = Pick(asked)
        module: Backend = "jax" if train.backend == "auto" else train.backend
        if chosen.backend != "tensorflow":
            self._refuse_tensorflow_only(asked)
        if train.distribute == "data_parallel" and chosen.backend != "jax":
            where = f"--backend {asked}" if self.backend_option else f"{asked}"
            self.error(
                ("train", "distribute"),
                "data_parallel is Keras' JAX distribution (keras.distribution."
                f"DataParallel), but the build trains on {where}: set "
                "train.backend: jax, or use distribute: mirrored on TensorFlow",
            )
        return chosen, "tensorflow" if needs else module

    def trains_batch_norm(self) -> bool:
        """Whether some layer holds batch normalization that trains."""
        return any(layer.trains_batch_norm() for layer in self.spec.layers)

    def batchnorm_statistics(self) -> bool:
        """Whether the build recomputes the batch normalization statistics
        after training: asked for (the default), and some layer's trained."""
        train = self.spec.train
        if train.batchnorm_statistics == "keep" or not self.trains_batch_norm():
            return False
        if train.distribute in TF_DISTRIBUTE:
            self.warn(
                ("train", "distribute"),
                f"batch normalization keeps the statistics training left under "
                f"distribute: {train.distribute} (train.batchnorm_statistics "
                "recomputes them on one device only)",
            )
            return False
        return True

    def _tensorflow_only(self) -> str | None:
        """The first setting that only TensorFlow has, as the spec says it."""
        train = self.spec.train
        if train.distribute in TF_DISTRIBUTE:
            return f"distribute: {train.distribute}"
        if train.deterministic_ops:
            return "deterministic_ops: true"
        return None

    def _refuse_tensorflow_only(self, backend: str) -> None:
        train = self.spec.train
        fix = "set train.backend: tensorflow"
        if self.backend_option:
            asked = f"build --backend {backend} trains on {backend}"
            fix = "build with --backend tensorflow"
        else:
            asked = f"train.backend is {backend}"
        settings = []
        if train.distribute in TF_DISTRIBUTE:
            settings.append(("distribute", f"{train.distribute} is tf.distribute"))
        if train.deterministic_ops:
            settings.append(
                (
                    "deterministic_ops",
                    "true makes TensorFlow's kernels deterministic",
                )
            )
        for name, what in settings:
            self.error(
                ("train", name),
                f"{what}, which only Keras' TensorFlow backend has, but {asked}: {fix}",
            )

    def initial_weights(self, layers: list[LayerPlan]) -> SpecPath | None:
        """train.initial_weights, resolved: a weights file holding a weight
        of each shape the model has (an error where it does not)."""
        path = self.context.spec_path(
            "train.initial_weights", self.spec.train.initial_weights
        )
        if path is None:
            return None
        wanted = Counter(w.shape for lay in layers for w in lay.weights if w.shape)
        problem = check_weights(path.path, wanted)
        if problem is not None:
            self.error(("train", "initial_weights"), problem)
        return path

    def check_weight_decay(self, layers: list[LayerPlan]) -> None:
        opt = self.spec.train.optimizer
        if opt.weight_decay == 0 or opt.weight_decay_with_l2:
            return
        both = [
            w.path(None, lay.name)
            for lay in layers
            for w in lay.weights
            if w.l2 > 0 and w.weight_decay > 0
        ]
        if both:
            shown = ", ".join(both[:3]) + (
                f" and {len(both) - 3} more" if len(both) > 3 else ""
            )
            self.error(
                ("train", "optimizer", "weight_decay"),
                f"weight decay and an L2 penalty would both reach {shown}; use one "
                "(set l2: 0), or set weight_decay_with_l2: true to use both",
            )

    def recipe(self, split: SplitFiles | None) -> Recipe:
        """The data node: the spec's recipe and its fields."""
        train = self.spec.train
        return source_for(
            train.recipe,
            train.num_classes,
            data=split.train if split else train.data,
            test_data=split.test if split else None,
            label=train.label_columns,
            features=tuple(train.features) if train.features is not None else None,
            test_split=train.test_split,
            missing=_missing(train.missing),
            types=tuple(
                ColumnType(name, kind)
                if isinstance(kind, str)
                else ColumnType(name, kind.type, kind.format)
                for name, kind in (train.columns or {}).items()
            ),
            text=TextSettings(**train.text.model_dump())
            if train.text is not None
            else None,
        )

    def schedule(self) -> SchedulePlan | None:
        rate = self.spec.train.optimizer.learning_rate
        return plan_schedule(rate) if isinstance(rate, ScheduleSpec) else None

    def check_schedule(self) -> None:
        """A warmup leaves epochs to decay over."""
        rate = self.spec.train.optimizer.learning_rate
        epochs = self.spec.train.epochs
        if isinstance(rate, ScheduleSpec) and rate.warmup_epochs >= epochs:
            self.error(
                ("train", "optimizer", "learning_rate", "warmup_epochs"),
                f"the warmup takes {rate.warmup_epochs} of the {epochs} epochs; "
                "it must leave at least one to decay over",
            )

    def early_stopping(self) -> tuple[str, ...] | None:
        """EarlyStopping's arguments, where the spec stops early."""
        stop = self.spec.train.early_stopping
        if stop is None:
            return None
        return (
            f"monitor={py_str(stop.monitor)}",
            "patience=PATIENCE",
            *([f"min_delta={py_float(stop.min_delta)}"] if stop.min_delta else []),
            f"restore_best_weights={stop.restore_best_weights!r}",
        )

    def check_early_stopping(self, task: Task) -> None:
        """Early stopping watches the validation split, on a loop that stops."""
        train = self.spec.train
        stop = train.early_stopping
        if stop is None:
            return
        where = ("train", "early_stopping")
        if train.validation == "test":
            self.error(
                where,
                "early stopping watches the validation split, and validation: "
                "test would pick the epoch by the test data it then reports; "
                "hold out a share instead (validation: 0.1)",
            )
        elif train.distribute == "multi_worker":
            self.error(
                where,
                "distribute multi_worker trains in its own loop, which does not "
                "stop early; use mirrored or none",
            )
        watched = [key for key in task.history_keys if key.startswith("val_")]
        if stop.monitor not in watched:
            self.error(
                (*where, "monitor"),
                f"{stop.monitor!r} is not a validation score this task logs "
                f"({', '.join(watched)})",
                suggestion=closest(stop.monitor, watched),
            )

    def optimizer(self, layers: list[LayerPlan], recipe: Recipe) -> _Optimizer:
        """The optimizer, and the weights its decoupled weight decay skips."""
        opt = self.spec.train.optimizer
        cls = f"keras.optimizers.{_OPTIMIZERS[opt.type]}"
        if self.schedule() is not None:
            rate = "learning_rate=learning_rate(steps_per_epoch, epochs)"
        else:
            rate = "learning_rate=LEARNING_RATE"
        if opt.weight_decay == 0:
            return _Optimizer(cls, (rate,), ())
        if opt.type == "adam":
            cls = "keras.optimizers.AdamW"
        scope = scope_name(self.spec.name, layers, recipe)
        no_decay = tuple(
            w.path(scope, lay.name)
            for lay in layers
            for w in lay.weights
            if w.role != "statistic" and w.trainable and w.weight_decay == 0
        )
        args = (rate, "weight_decay=WEIGHT_DECAY")
        return _Optimizer(cls, args, no_decay)


def _missing(spec: MissingSpec | None) -> Missing:
    """The missing-value policy train.missing gives (None: the defaults)."""
    if spec is None:
        return Missing()
    return Missing(
        spec.numeric, spec.categorical, spec.indicator, tuple(spec.columns.items())
    )
