"""The plan: a spec resolved into everything the generated code needs.

This module is the compiler's intermediate model; reading it explains the
compiler. A `ModelPlan` is the whole tree:

    ModelPlan                     one generated module
    ├── constants: Constant       named hyperparameters at the top of the module
    ├── layers: LayerPlan         one Keras layer each, in order
    │   ├── args                  its constructor arguments, as Python source
    │   ├── output_shape          inferred without TensorFlow
    │   └── weights: WeightPlan   each weight with its shape and L2 coefficient
    ├── optimizer, loss, metrics  compile() arguments, as Python source
    └── recipe: Recipe            where the data comes from and its shape

Everything a template prints is decided here, as a ready string: names are
validated identifiers, numbers are `repr` of Python numbers, and text goes
through `py_str`. A spec's text never reaches the code any other way.

`plan_spec` also checks what depends on several fields at once (shapes,
the recipe's classes, names) and returns every problem, placed in the spec.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from l2compile.datasets import RECIPES, Recipe
from l2compile.errors import FieldPath, SpecError
from l2compile.spec import (
    DenseLayer,
    DropoutLayer,
    FlattenLayer,
    LoadedSpec,
    ReshapeLayer,
)

Shape = tuple[int, ...]

_OPTIMIZERS = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop"}


def py_str(text: str) -> str:
    """A double-quoted Python literal for `text` (which may hold anything)."""
    literal = repr(text)
    if literal.startswith("'") and '"' not in text:
        literal = '"' + literal[1:-1].replace("\\'", "'") + '"'
    return literal


@dataclass(frozen=True)
class WeightPlan:
    """One weight variable of a layer, and the L2 coefficient it gets."""

    name: str
    shape: Shape
    l2: float

    @property
    def params(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class LayerPlan:
    """One Keras layer: its class, its arguments as source, its shapes."""

    index: int
    name: str
    type: str
    keras_class: str
    args: tuple[str, ...]
    output_shape: Shape
    weights: tuple[WeightPlan, ...] = ()

    @property
    def params(self) -> int:
        return sum(w.params for w in self.weights)


@dataclass(frozen=True)
class Constant:
    """A named module-level constant: `NAME = value  # comment`."""

    name: str
    value: str
    comment: str = ""


@dataclass(frozen=True)
class ModelPlan:
    """Everything needed to render and build one spec."""

    name: str
    description: str
    source_file: str
    spec_sha256: str
    input_shape: Shape
    l2: float
    l2_bias: bool
    layers: tuple[LayerPlan, ...]
    optimizer: str
    loss: str
    metrics: str
    recipe: Recipe
    epochs: int
    batch_size: int
    seed: int
    export_formats: tuple[str, ...]
    constants: tuple[Constant, ...] = field(default=())

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def regularized_params(self) -> int:
        return sum(w.params for layer in self.layers for w in layer.weights if w.l2 > 0)

    @property
    def output_shape(self) -> Shape:
        return self.layers[-1].output_shape


def _shape_text(shape: Shape) -> str:
    return (
        "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
    )


def _regularizer(coefficient: float, global_l2: float) -> str:
    # The global coefficient is written as the module's L2 constant, so a
    # reader changes it in one place; an override is written as its number.
    value = "L2" if coefficient == global_l2 else repr(coefficient)
    return f"regularizers.L2({value})"


class _Planner:
    def __init__(self, loaded: LoadedSpec) -> None:
        self.spec = loaded.spec
        self.source = loaded.source
        self.errors: list[SpecError] = []

    def error(self, path: FieldPath, message: str) -> None:
        self.errors.append(self.source.error(path, message))

    def names(self) -> list[str]:
        """Each layer's name: the spec's, else `<type>_<n>` counted per type."""
        taken = {layer.name for layer in self.spec.layers if layer.name}
        taken.add("input")
        counts: dict[str, int] = {}
        seen: dict[str, int] = {}
        names = []
        for i, layer in enumerate(self.spec.layers):
            if layer.name:
                if layer.name in seen or layer.name == "input":
                    first = (
                        f"layers[{seen[layer.name]}]"
                        if layer.name in seen
                        else "the input"
                    )
                    self.error(
                        ("layers", i, "name"),
                        f"layer name {layer.name!r} is already used by {first}",
                    )
                seen.setdefault(layer.name, i)
                names.append(layer.name)
                continue
            while True:
                counts[layer.type] = counts.get(layer.type, 0) + 1
                candidate = f"{layer.type}_{counts[layer.type]}"
                if candidate not in taken:
                    break
            taken.add(candidate)
            names.append(candidate)
        return names

    def layer(self, i: int, layer: object, name: str, shape: Shape) -> LayerPlan | None:
        spec = self.spec
        path: FieldPath = ("layers", i)
        name_arg = f"name={py_str(name)}"
        if isinstance(layer, DenseLayer):
            kernel_l2 = spec.l2 if layer.l2 is None else layer.l2
            bias_l2 = kernel_l2 if spec.l2_bias and layer.use_bias else 0.0
            args = [repr(layer.units)]
            if layer.activation != "linear":
                args.append(f"activation={py_str(layer.activation)}")
            if not layer.use_bias:
                args.append("use_bias=False")
            if kernel_l2 > 0:
                args.append(f"kernel_regularizer={_regularizer(kernel_l2, spec.l2)}")
            if bias_l2 > 0:
                args.append(f"bias_regularizer={_regularizer(bias_l2, spec.l2)}")
            weights = [WeightPlan("kernel", (shape[-1], layer.units), kernel_l2)]
            if layer.use_bias:
                weights.append(WeightPlan("bias", (layer.units,), bias_l2))
            return LayerPlan(
                i,
                name,
                "dense",
                "Dense",
                (*args, name_arg),
                (*shape[:-1], layer.units),
                tuple(weights),
            )
        if isinstance(layer, DropoutLayer):
            return LayerPlan(
                i, name, "dropout", "Dropout", (repr(layer.rate), name_arg), shape
            )
        if isinstance(layer, FlattenLayer):
            return LayerPlan(
                i, name, "flatten", "Flatten", (name_arg,), (math.prod(shape),)
            )
        if isinstance(layer, ReshapeLayer):
            target = self.reshape(path, layer.target_shape, shape)
            if target is None:
                return None
            return LayerPlan(
                i,
                name,
                "reshape",
                "Reshape",
                (_shape_text(tuple(layer.target_shape)), name_arg),
                target,
            )
        raise AssertionError(f"unplanned layer type: {layer!r}")

    def reshape(self, path: FieldPath, target: list[int], shape: Shape) -> Shape | None:
        where = (*path, "target_shape")
        size = math.prod(shape)
        if any(d == 0 for d in target) or target.count(-1) > 1:
            self.error(where, "sizes must be positive, with at most one -1 (inferred)")
            return None
        known = math.prod(d for d in target if d != -1)
        if -1 in target:
            if size % known:
                self.error(
                    where,
                    f"cannot reshape {_shape_text(shape)} ({size} values) to {target}: "
                    f"{size} is not a multiple of {known}",
                )
                return None
            return tuple(size // known if d == -1 else d for d in target)
        if known != size:
            self.error(
                where,
                f"cannot reshape {_shape_text(shape)} ({size} values) to {target} "
                f"({known} values)",
            )
            return None
        return tuple(target)

    def check_recipe(self, recipe: Recipe, layers: list[LayerPlan]) -> None:
        spec = self.spec
        size = math.prod(spec.input.shape)
        if size != recipe.input_size:
            image = "x".join(str(d) for d in recipe.image_shape)
            self.error(
                ("input", "shape"),
                f"recipe {recipe.name!r} gives {image} images ({recipe.input_size} "
                f"values each), but this shape holds {size}",
            )
        if not layers or len(layers) != len(spec.layers):
            return  # an earlier layer failed; its error says why
        last = layers[-1]
        if last.output_shape != (recipe.num_classes,):
            self.error(
                ("layers", last.index),
                f"the model's output shape is {_shape_text(last.output_shape)}, but "
                f"recipe {recipe.name!r} has {recipe.num_classes} classes: the last "
                f"layer must output ({recipe.num_classes},)",
            )
        dense = [
            (i, lay) for i, lay in enumerate(spec.layers) if isinstance(lay, DenseLayer)
        ]
        if dense and dense[-1][1].activation != "softmax":
            i = dense[-1][0]
            self.error(
                ("layers", i, "activation"),
                f"the last dense layer must use activation 'softmax': loss "
                f"{spec.train.loss!r} expects class probabilities",
            )

    def plan(self) -> ModelPlan | list[SpecError]:
        spec = self.spec
        recipe = RECIPES[spec.train.recipe]
        names = self.names()
        shape: Shape = tuple(spec.input.shape)
        layers: list[LayerPlan] = []
        for i, (layer, name) in enumerate(zip(spec.layers, names, strict=True)):
            planned = self.layer(i, layer, name, shape)
            if planned is None:
                break  # later shapes are unknown; don't report knock-on errors
            layers.append(planned)
            shape = planned.output_shape
        self.check_recipe(recipe, layers)
        if self.errors:
            return self.errors

        opt = spec.train.optimizer
        constants = (
            Constant("INPUT_SHAPE", _shape_text(tuple(spec.input.shape))),
            Constant("L2", repr(spec.l2), _l2_comment(spec.l2, spec.l2_bias)),
            Constant("LEARNING_RATE", repr(opt.learning_rate)),
            Constant("EPOCHS", repr(spec.train.epochs)),
            Constant("BATCH_SIZE", repr(spec.train.batch_size)),
            Constant("SEED", repr(spec.train.seed)),
        )
        return ModelPlan(
            name=spec.name,
            description=spec.description,
            source_file=self.source.file,
            spec_sha256=self.source.sha256,
            input_shape=tuple(spec.input.shape),
            l2=spec.l2,
            l2_bias=spec.l2_bias,
            layers=tuple(layers),
            optimizer=f"keras.optimizers.{_OPTIMIZERS[opt.type]}(learning_rate=LEARNING_RATE)",
            loss=py_str(spec.train.loss),
            metrics="[" + ", ".join(py_str(m) for m in spec.train.metrics) + "]",
            recipe=recipe,
            epochs=spec.train.epochs,
            batch_size=spec.train.batch_size,
            seed=spec.train.seed,
            export_formats=tuple(spec.export.formats),
            constants=constants,
        )


def _l2_comment(l2: float, l2_bias: bool) -> str:
    if l2 == 0:
        return "no global L2 penalty"
    if l2_bias:
        return "L2 coefficient of every kernel and bias"
    return "L2 coefficient of every kernel (biases are not regularized)"


def plan_spec(loaded: LoadedSpec) -> ModelPlan | list[SpecError]:
    """Resolve a valid spec into a plan, or every cross-field error in it."""
    return _Planner(loaded).plan()
