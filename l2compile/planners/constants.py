"""The generated module's constants: every hyperparameter, named once at its top."""

from __future__ import annotations

from l2compile.layers.base import (
    py_float,
    py_str,
    shape_text,
)
from l2compile.nodes import (
    BackbonePlan,
    Constant,
    LayerPlan,
)
from l2compile.planners.training import _held_out, _Optimizer
from l2compile.schedules import plan_schedule
from l2compile.sources.base import Source as Recipe
from l2compile.spec import ScheduleSpec, Spec
from l2compile.tasks import Task


def module_constants(
    spec: Spec,
    recipe: Recipe,
    layers: list[LayerPlan],
    optimizer: _Optimizer,
    steps_per_execution: int,
    task: Task,
    backbone: BackbonePlan | None,
) -> tuple[Constant, ...]:
    """The module's named hyperparameters, in the order they are printed."""
    opt = spec.train.optimizer
    jit = spec.train.jit_compile
    constants = [
        _input_shape(spec),
        *(Constant(*constant) for constant in recipe.constants()),
        Constant("L2", py_float(spec.l2), _l2_comment(spec, layers)),
        *_backbone_constants(backbone),
        *(
            [
                Constant(
                    "INITIAL_WEIGHTS",
                    py_str(spec.train.initial_weights),
                    "the weights the model starts from",
                )
            ]
            if spec.train.initial_weights
            else []
        ),
        *_rate_constants(opt.learning_rate),
    ]
    if opt.weight_decay > 0:
        constants.append(
            Constant(
                "WEIGHT_DECAY",
                py_float(opt.weight_decay),
                "decoupled weight decay (Loshchilov & Hutter)",
            )
        )
    if optimizer.no_decay:
        paths = "".join(f"    {py_str(p)},\n" for p in optimizer.no_decay)
        constants.append(
            Constant(
                "NO_WEIGHT_DECAY",
                "(\n" + paths + ")",
                "trainable weights that weight decay leaves alone",
            )
        )
    constants += task_constants(spec, task)
    constants += [
        Constant("EPOCHS", repr(spec.train.epochs)),
        *(
            [
                Constant(
                    "PATIENCE",
                    repr(spec.train.early_stopping.patience),
                    "epochs without improvement before training stops",
                )
            ]
            if spec.train.early_stopping
            else []
        ),
        Constant("BATCH_SIZE", repr(spec.train.batch_size)),
        Constant("SEED", repr(spec.train.seed)),
        *_split_seed_constant(spec, recipe),
        Constant(
            "STEPS_PER_EXECUTION",
            repr(steps_per_execution),
            "steps per compiled call: same math, less overhead",
        ),
        Constant(
            "JIT_COMPILE",
            py_str(jit) if isinstance(jit, str) else repr(jit),
            "compile the training step with XLA"
            + (" (auto: as Keras chooses)" if jit == "auto" else ""),
        ),
        Constant("OUT", py_str(f"{spec.name}.keras"), "where main() saves the model"),
    ]
    return tuple(constants)


def _split_seed_constant(spec: Spec, recipe: Recipe) -> list[Constant]:
    """SPLIT_SEED, where the module splits its data (a test share or a
    validation share): SEED unless train.split_seed sets its own."""
    if _held_out(spec.train.validation) is None and recipe.test_split is None:
        return []
    seed = spec.train.split_seed
    return [
        Constant(
            "SPLIT_SEED",
            "SEED" if seed is None else repr(seed),
            "which samples test and validate",
        )
    ]


def _rate_constants(rate: float | ScheduleSpec) -> list[Constant]:
    """LEARNING_RATE, and its schedule's constants."""
    if not isinstance(rate, ScheduleSpec):
        return [Constant("LEARNING_RATE", py_float(rate))]
    schedule = plan_schedule(rate)
    first = "the learning rate after warmup" if rate.warmup_epochs else ""
    return [
        Constant("LEARNING_RATE", py_float(rate.initial), first),
        *(Constant(*c) for c in (schedule.constants if schedule else ())),
    ]


def _backbone_constants(backbone: BackbonePlan | None) -> list[Constant]:
    """The constants of the generated backbone()."""
    if backbone is None:
        return []
    constants = []
    if backbone.weights_path is not None:
        constants.append(
            Constant(
                "BACKBONE_WEIGHTS",
                py_str(backbone.weights_path.written),
                f"{backbone.model}'s weights file, without its top",
            )
        )
    if backbone.l2 is not None:
        names = ", ".join(py_str(name) for name in backbone.regularized)
        constants.append(
            Constant(
                "REGULARIZED",
                f"({names},)" if len(backbone.regularized) == 1 else f"({names})",
                "the backbone's weights the l2 rules reach, by variable name",
            )
        )
    if backbone.trained_from:
        constants.append(
            Constant(
                "FINE_TUNE_FROM",
                repr(backbone.trained_from),
                "the backbone trains its layers from this index on",
            )
        )
    return constants


def task_constants(spec: Spec, task: Task) -> list[Constant]:
    """The constants the task's options and the validation split add."""
    constants = []
    if task.one_hot:
        constants.append(
            Constant("NUM_CLASSES", repr(task.outputs), "labels are one-hot encoded")
        )
    if task.label_smoothing:
        constants.append(Constant("LABEL_SMOOTHING", py_float(task.label_smoothing)))
    if isinstance(task.class_weight, tuple):
        weights = ", ".join(
            f"{i}: {py_float(w)}" for i, w in enumerate(task.class_weight)
        )
        constants.append(
            Constant(
                "CLASS_WEIGHT",
                "{" + weights + "}",
                "each class's weight in the training loss",
            )
        )
    validation = spec.train.validation
    if validation != "test":
        constants.append(
            Constant(
                "VALIDATION",
                py_float(float(validation)),
                "share of the training data held out to validate, never trained on",
            )
        )
    return constants


def _l2_comment(spec: Spec, layers: list[LayerPlan]) -> str:
    if spec.l2 == 0:
        return "no global L2 penalty"
    roles = {w.role for lay in layers for w in lay.weights}
    reached: list[str] = ["kernel"]
    left_out: list[str] = []
    for role, flag, what in (
        ("bias", spec.l2_bias, "bias"),
        ("norm", spec.l2_norm, "normalization"),
    ):
        if role in roles:
            (reached if flag else left_out).append(what)
    text = "L2 coefficient of every " + " and ".join(reached)
    if left_out:
        text += f" ({' and '.join(w + 'es' if w == 'bias' else w for w in left_out)}"
        text += " not regularized)"
    return text


def _input_shape(spec: Spec) -> Constant:
    """INPUT_SHAPE; None where the build derives it from the data (a table's
    width after encoding: build_model takes the inputs load_data gives)."""
    if spec.input.shape is None:
        return Constant(
            "INPUT_SHAPE: tuple[int, ...] | None",
            "None",
            "derived from the data when it builds",
        )
    return Constant("INPUT_SHAPE", shape_text(tuple(spec.input.shape)))
