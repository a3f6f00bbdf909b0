"""The plan: a spec resolved into everything the generated code needs.

This module is the compiler's intermediate model; reading it explains the
compiler. A `ModelPlan` is the whole tree:

    ModelPlan                     one generated module
    ├── constants: Constant       named hyperparameters at the top of the module
    ├── layers: LayerPlan         one Keras layer each, in order
    │   ├── args                  its constructor arguments, as Python source
    │   ├── output_shape          inferred without TensorFlow
    │   └── weights: WeightPlan   each weight: shape, role, L2 coefficient, decay
    ├── optimizer, loss, metrics  compile() arguments, as Python source
    ├── recipe: Recipe            where the data comes from and its shape
    └── data_path: SpecPath       the spec's data file, resolved against its folder

Everything a template prints is decided here, as a ready string: names are
validated identifiers, numbers are `repr` of Python numbers, and text goes
through `py_str`. A spec's text never reaches the code any other way.

`plan_spec` also checks what depends on several fields at once (shapes,
the recipe's classes, names) and returns every problem, placed in the spec.

Which weights the global `l2` (and decoupled weight decay) reach is decided in
one place, `reached_by_l2`; `_assign_l2` applies it to every weight.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from l2compile.datasets import ModelInput, Recipe, SpecPath, recipe_for
from l2compile.errors import FieldPath, SpecError
from l2compile.spec import (
    ActivationLayer,
    AveragePooling2DLayer,
    BatchNormalizationLayer,
    Conv1DLayer,
    Conv2DLayer,
    DenseLayer,
    DepthwiseConv2DLayer,
    DropoutLayer,
    EmbeddingLayer,
    FlattenLayer,
    GlobalAveragePooling2DLayer,
    GRULayer,
    LayerNormalizationLayer,
    LoadedSpec,
    LSTMLayer,
    MaxPooling2DLayer,
    RescalingLayer,
    ReshapeLayer,
    SeparableConv2DLayer,
    SimpleRNNLayer,
    Spec,
)

Shape = tuple[int, ...]

#: What a weight is, for the l2 rules: kernels (every weight matrix, filter and
#: embedding table), biases, normalization scales and offsets (gamma, beta),
#: and statistics that are not trained (moving mean and variance).
Role = Literal["kernel", "bias", "norm", "statistic"]

_OPTIMIZERS = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop"}
_RECURRENT = ("lstm", "gru", "simple_rnn")
#: Models larger than this are refused (4 GiB of float32 weights).
MAX_PARAMS = 2**30


def py_str(text: str) -> str:
    """A double-quoted Python literal for `text` (which may hold anything)."""
    literal = repr(text)
    if literal.startswith("'") and '"' not in text:
        literal = '"' + literal[1:-1].replace("\\'", "'") + '"'
    return literal


@dataclass(frozen=True)
class WeightPlan:
    """One weight variable of a layer, and what regularizes it.

    `name` is Keras' variable name; `regularizer` the layer argument that
    regularizes it (`kernel_regularizer`, `recurrent_regularizer`, ...).
    """

    name: str
    shape: Shape
    role: Role
    regularizer: str | None = None
    cell: str | None = None  # recurrent layers keep their weights in a cell
    l2: float = 0.0
    weight_decay: float = 0.0

    @property
    def params(self) -> int:
        return math.prod(self.shape)

    def path(self, model: str, layer: str) -> str:
        """Keras' variable path: `model/layer[/cell]/name`."""
        parts = [model, layer, *([self.cell] if self.cell else []), self.name]
        return "/".join(parts)


@dataclass(frozen=True)
class LayerPlan:
    """One Keras layer: its class, its arguments as source, its shapes.

    `args` holds the arguments decided by the layer's own fields; the
    regularizer arguments, decided by the l2 pass, come after them in
    `all_args`.
    """

    index: int
    name: str
    type: str
    keras_class: str
    args: tuple[str, ...]
    output_shape: Shape
    weights: tuple[WeightPlan, ...] = ()
    regularizers: tuple[str, ...] = ()

    @property
    def all_args(self) -> tuple[str, ...]:
        *own, name = self.args
        return (*own, *self.regularizers, name)

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
class TFLitePlan:
    """Which TFLite files to make and how to check them."""

    quantize: tuple[str, ...]
    int8_io: bool
    representative_samples: int
    max_accuracy_drop: float
    batch: int | None  # None: a dynamic batch dimension


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
    optimizer_args: tuple[str, ...]
    loss: str
    metrics: str
    recipe: Recipe
    epochs: int
    batch_size: int
    seed: int
    export_formats: tuple[str, ...]
    constants: tuple[Constant, ...] = field(default=())
    tflite: TFLitePlan | None = None
    distribute: str = "none"
    weight_decay: float = 0.0
    #: Trainable weights that weight decay must leave alone (Keras paths).
    no_weight_decay: tuple[str, ...] = ()
    data: str | None = None  #: train.data as written (the module's DATA)
    #: train.data resolved against the spec's folder, where the build reads it.
    data_path: SpecPath | None = None
    #: What training logs each epoch: the loss and each metric, for the
    #: training data and (val_) the validation data.
    history_keys: tuple[str, ...] = ()

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def integer_input(self) -> bool:
        """Whether the model reads integer ids (it starts with an embedding)."""
        return self.layers[0].type == "embedding"

    @property
    def model_input(self) -> ModelInput:
        """What the model reads, for checking the data against it: the sample
        shape, and the number of ids (input_dim) where it starts with an
        embedding."""
        first = self.layers[0]
        ids = first.weights[0].shape[0] if self.integer_input else None
        return ModelInput(self.input_shape, ids)

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


def shape_text(shape: Shape) -> str:
    return (
        "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
    )


def _regularizer(coefficient: float, global_l2: float) -> str:
    # The global coefficient is written as the module's L2 constant, so a
    # reader changes it in one place; an override is written as its number.
    value = "L2" if coefficient == global_l2 else repr(coefficient)
    return f"regularizers.L2({value})"


# --- the l2 pass ----------------------------------------------------------------


def reached_by_l2(role: Role, spec: Spec) -> bool:
    """Whether the global `l2` (and weight decay) reach a weight of this role.

    Every kernel: dense and conv kernels, depthwise and pointwise kernels,
    embeddings, and the kernel and recurrent kernel of recurrent layers.
    Biases only with `l2_bias: true`, normalization gamma and beta only with
    `l2_norm: true` ("no bias decay" is the usual practice), and never the
    moving statistics, which are not trained.
    """
    if role == "kernel":
        return True
    if role == "bias":
        return spec.l2_bias
    if role == "norm":
        return spec.l2_norm
    return False


def _assign_l2(layer: LayerPlan, layer_l2: float | None, spec: Spec) -> LayerPlan:
    """Give each weight its L2 coefficient and weight decay; write the arguments."""
    coefficient = spec.l2 if layer_l2 is None else layer_l2
    decay = spec.train.optimizer.weight_decay
    weights = []
    args: dict[str, str] = {}
    for weight in layer.weights:
        reached = reached_by_l2(weight.role, spec)
        l2 = coefficient if reached else 0.0
        weights.append(replace(weight, l2=l2, weight_decay=decay if reached else 0.0))
        if l2 > 0 and weight.regularizer:
            args[weight.regularizer] = (
                f"{weight.regularizer}={_regularizer(l2, spec.l2)}"
            )
    return replace(layer, weights=tuple(weights), regularizers=tuple(args.values()))


# --- shapes -----------------------------------------------------------------------


def _conv_length(size: int, kernel: int, stride: int, padding: str) -> int:
    if padding == "same":
        return -(-size // stride)
    return (size - kernel) // stride + 1


def _act(activation: str) -> list[str]:
    return [] if activation == "linear" else [f"activation={py_str(activation)}"]


def _pair_text(pair: tuple[int, int]) -> str:
    return repr(pair[0]) if pair[0] == pair[1] else shape_text(pair)


_NEEDS = {
    1: "(sequence_length,)",
    2: "(timesteps, features)",
    3: "(height, width, channels)",
}


class _Planner:
    def __init__(self, loaded: LoadedSpec, folder: Path | None) -> None:
        self.spec = loaded.spec
        self.source = loaded.source
        # Paths in a spec are relative to its folder. Without one given, the
        # folder of the name the spec was loaded under, from the working folder
        # (generate.display_path names it so).
        self.folder = os.path.abspath(
            folder if folder is not None else Path(loaded.source.file).parent
        )
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

    def rank(self, i: int, kind: str, shape: Shape, rank: int) -> bool:
        """Check a layer's input rank; say what it needs where it is wrong."""
        if len(shape) == rank:
            return True
        hint = {
            3: "; add a reshape layer before it, e.g. target_shape: [28, 28, 1]",
            2: "; add a reshape layer before it, e.g. target_shape: [28, 28]",
        }.get(rank, "")
        self.error(
            ("layers", i, "type"),
            f"{kind} needs input of shape {_NEEDS[rank]}, but its input is "
            f"{shape_text(shape)}{hint}",
        )
        return False

    def window(
        self,
        i: int,
        what: str,
        shape: Shape,
        window: tuple[int, ...],
        strides: tuple[int, ...],
        padding: str,
    ) -> Shape | None:
        """Output sizes of a sliding window (conv or pool) over `shape`."""
        sizes = shape[: len(window)]
        if padding == "valid" and any(
            k > n for k, n in zip(window, sizes, strict=True)
        ):
            self.error(
                ("layers", i, what),
                f"{shape_text(window)} is larger than the input "
                f"{shape_text(sizes)} with padding 'valid'",
            )
            return None
        return tuple(
            _conv_length(n, k, s, padding)
            for n, k, s in zip(sizes, window, strides, strict=True)
        )

    def layer(self, i: int, layer: Any, name: str, shape: Shape) -> LayerPlan | None:
        """Plan one layer from its input shape, or report why it cannot be."""
        name_arg = f"name={py_str(name)}"

        def plan(
            cls: str,
            args: list[str],
            out: Shape,
            weights: list[WeightPlan] | None = None,
        ) -> LayerPlan:
            return LayerPlan(
                i, name, layer.type, cls, (*args, name_arg), out, tuple(weights or ())
            )

        def bias(size: int | Shape, cell: str | None = None) -> list[WeightPlan]:
            if not layer.use_bias:
                return []
            shape_ = size if isinstance(size, tuple) else (size,)
            return [WeightPlan("bias", shape_, "bias", "bias_regularizer", cell)]

        def common(args: list[str]) -> list[str]:
            return [
                *args,
                *_act(layer.activation),
                *([] if layer.use_bias else ["use_bias=False"]),
            ]

        if isinstance(layer, DenseLayer):
            return plan(
                "Dense",
                common([repr(layer.units)]),
                (*shape[:-1], layer.units),
                [
                    WeightPlan(
                        "kernel",
                        (shape[-1], layer.units),
                        "kernel",
                        "kernel_regularizer",
                    ),
                    *bias(layer.units),
                ],
            )
        if isinstance(layer, Conv1DLayer):
            if not self.rank(i, "conv1d", shape, 2):
                return None
            steps = self.window(
                i,
                "kernel_size",
                shape,
                (layer.kernel_size,),
                (layer.strides,),
                layer.padding,
            )
            if steps is None:
                return None
            args = [repr(layer.filters), repr(layer.kernel_size)]
            args += [f"strides={layer.strides!r}"] if layer.strides != 1 else []
            args += (
                [f"padding={py_str(layer.padding)}"] if layer.padding != "valid" else []
            )
            kernel = (layer.kernel_size, shape[-1], layer.filters)
            return plan(
                "Conv1D",
                common(args),
                (*steps, layer.filters),
                [
                    WeightPlan("kernel", kernel, "kernel", "kernel_regularizer"),
                    *bias(layer.filters),
                ],
            )
        if isinstance(layer, (Conv2DLayer, DepthwiseConv2DLayer, SeparableConv2DLayer)):
            if not self.rank(i, layer.type, shape, 3):
                return None
            hw = self.window(
                i, "kernel_size", shape, layer.kernel_size, layer.strides, layer.padding
            )
            if hw is None:
                return None
            channels = shape[-1]
            args = []
            if not isinstance(layer, DepthwiseConv2DLayer):
                args.append(repr(layer.filters))
            args.append(_pair_text(layer.kernel_size))
            if layer.strides != (1, 1):
                args.append(f"strides={_pair_text(layer.strides)}")
            if layer.padding != "valid":
                args.append(f"padding={py_str(layer.padding)}")
            if not isinstance(layer, Conv2DLayer) and layer.depth_multiplier != 1:
                args.append(f"depth_multiplier={layer.depth_multiplier!r}")
            kh, kw = layer.kernel_size
            if isinstance(layer, Conv2DLayer):
                weights = [
                    WeightPlan(
                        "kernel",
                        (kh, kw, channels, layer.filters),
                        "kernel",
                        "kernel_regularizer",
                    ),
                    *bias(layer.filters),
                ]
                return plan("Conv2D", common(args), (*hw, layer.filters), weights)
            depth = channels * layer.depth_multiplier
            if isinstance(layer, DepthwiseConv2DLayer):
                weights = [
                    WeightPlan(
                        "kernel",
                        (kh, kw, channels, layer.depth_multiplier),
                        "kernel",
                        "depthwise_regularizer",
                    ),
                    *bias(depth),
                ]
                return plan("DepthwiseConv2D", common(args), (*hw, depth), weights)
            weights = [
                WeightPlan(
                    "depthwise_kernel",
                    (kh, kw, channels, layer.depth_multiplier),
                    "kernel",
                    "depthwise_regularizer",
                ),
                WeightPlan(
                    "pointwise_kernel",
                    (1, 1, depth, layer.filters),
                    "kernel",
                    "pointwise_regularizer",
                ),
                *bias(layer.filters),
            ]
            return plan("SeparableConv2D", common(args), (*hw, layer.filters), weights)
        if isinstance(layer, (MaxPooling2DLayer, AveragePooling2DLayer)):
            if not self.rank(i, layer.type, shape, 3):
                return None
            strides = layer.strides or layer.pool_size
            hw = self.window(
                i, "pool_size", shape, layer.pool_size, strides, layer.padding
            )
            if hw is None:
                return None
            args = [_pair_text(layer.pool_size)]  # AveragePooling2D requires it
            if layer.strides is not None and layer.strides != layer.pool_size:
                args.append(f"strides={_pair_text(layer.strides)}")
            if layer.padding != "valid":
                args.append(f"padding={py_str(layer.padding)}")
            cls = (
                "MaxPooling2D"
                if isinstance(layer, MaxPooling2DLayer)
                else "AveragePooling2D"
            )
            return plan(cls, args, (*hw, shape[-1]))
        if isinstance(layer, GlobalAveragePooling2DLayer):
            if not self.rank(i, layer.type, shape, 3):
                return None
            return plan("GlobalAveragePooling2D", [], (shape[-1],))
        if isinstance(layer, (BatchNormalizationLayer, LayerNormalizationLayer)):
            args = []
            if isinstance(layer, BatchNormalizationLayer) and layer.momentum != 0.99:
                args.append(f"momentum={layer.momentum!r}")
            if layer.epsilon != 0.001:
                args.append(f"epsilon={layer.epsilon!r}")
            size = (shape[-1],)
            weights = [
                WeightPlan("gamma", size, "norm", "gamma_regularizer"),
                WeightPlan("beta", size, "norm", "beta_regularizer"),
            ]
            if isinstance(layer, BatchNormalizationLayer):
                weights += [
                    WeightPlan("moving_mean", size, "statistic"),
                    WeightPlan("moving_variance", size, "statistic"),
                ]
                return plan("BatchNormalization", args, shape, weights)
            return plan("LayerNormalization", args, shape, weights)
        if isinstance(layer, EmbeddingLayer):
            if not self.rank(i, "embedding", shape, 1):
                return None
            return plan(
                "Embedding",
                [repr(layer.input_dim), repr(layer.output_dim)],
                (*shape, layer.output_dim),
                [
                    WeightPlan(
                        "embeddings",
                        (layer.input_dim, layer.output_dim),
                        "kernel",
                        "embeddings_regularizer",
                    )
                ],
            )
        if isinstance(layer, (LSTMLayer, GRULayer, SimpleRNNLayer)):
            if not self.rank(i, layer.type, shape, 2):
                return None
            gates = {"lstm": 4, "gru": 3, "simple_rnn": 1}[layer.type]
            cls = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "SimpleRNN"}[layer.type]
            cell = f"{layer.type}_cell"
            u = layer.units
            args = [repr(u)]
            if layer.activation != "tanh":
                args.append(f"activation={py_str(layer.activation)}")
            if not layer.use_bias:
                args.append("use_bias=False")
            if layer.return_sequences:
                args.append("return_sequences=True")
            if layer.dropout:
                args.append(f"dropout={layer.dropout!r}")
            if layer.recurrent_dropout:
                args.append(f"recurrent_dropout={layer.recurrent_dropout!r}")
            # Keras' GRU (reset_after=True) keeps two bias vectors.
            bias_shape = (2, gates * u) if layer.type == "gru" else (gates * u,)
            weights = [
                WeightPlan(
                    "kernel",
                    (shape[-1], gates * u),
                    "kernel",
                    "kernel_regularizer",
                    cell,
                ),
                WeightPlan(
                    "recurrent_kernel",
                    (u, gates * u),
                    "kernel",
                    "recurrent_regularizer",
                    cell,
                ),
                *bias(bias_shape, cell),
            ]
            out = (shape[0], u) if layer.return_sequences else (u,)
            return plan(cls, args, out, weights)
        if isinstance(layer, DropoutLayer):
            return plan("Dropout", [repr(layer.rate)], shape)
        if isinstance(layer, FlattenLayer):
            return plan("Flatten", [], (math.prod(shape),))
        if isinstance(layer, ReshapeLayer):
            target = self.reshape(("layers", i), layer.target_shape, shape)
            if target is None:
                return None
            return plan("Reshape", [shape_text(tuple(layer.target_shape))], target)
        if isinstance(layer, RescalingLayer):
            args = [repr(layer.scale)]
            if layer.offset:
                args.append(f"offset={layer.offset!r}")
            return plan("Rescaling", args, shape)
        if isinstance(layer, ActivationLayer):
            return plan("Activation", [py_str(layer.activation)], shape)
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
                    f"cannot reshape {shape_text(shape)} ({size} values) to {target}: "
                    f"{size} is not a multiple of {known}",
                )
                return None
            return tuple(size // known if d == -1 else d for d in target)
        if known != size:
            self.error(
                where,
                f"cannot reshape {shape_text(shape)} ({size} values) to {target} "
                f"({known} values)",
            )
            return None
        return tuple(target)

    def check_recipe(self, recipe: Recipe, layers: list[LayerPlan]) -> None:
        spec = self.spec
        size = math.prod(spec.input.shape)
        if recipe.image_shape is not None and size != recipe.input_size:
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
                f"the model's output shape is {shape_text(last.output_shape)}, but "
                f"recipe {recipe.name!r} has {recipe.num_classes} classes: the last "
                f"layer must output ({recipe.num_classes},)",
            )
        # The model's last transformation must be a softmax: layers that only
        # move values around (dropout, flatten, reshape) may follow it.
        final = [
            (i, lay)
            for i, lay in enumerate(spec.layers)
            if not isinstance(lay, (DropoutLayer, FlattenLayer, ReshapeLayer))
        ]
        if final:
            i, lay = final[-1]
            if not isinstance(lay, (DenseLayer, ActivationLayer)):
                self.error(
                    ("layers", i),
                    f"the model ends with a {lay.type} layer, but loss "
                    f"{spec.train.loss!r} expects class probabilities: end with a "
                    "dense or activation layer with activation 'softmax'",
                )
            elif lay.activation != "softmax":
                self.error(
                    ("layers", i, "activation"),
                    f"the last {lay.type} layer must use activation 'softmax': loss "
                    f"{spec.train.loss!r} expects class probabilities",
                )
        # Embeddings look up integer ids: they must see the data unscaled.
        for i, embedding in enumerate(spec.layers):
            if isinstance(embedding, EmbeddingLayer) and (i > 0 or recipe.image_shape):
                self.error(
                    ("layers", i, "type"),
                    "an embedding looks up integer ids, so it must be the first "
                    "layer and read an npz recipe's integers"
                    + (
                        f"; recipe {recipe.name!r} gives scaled pixels"
                        if recipe.image_shape
                        else ""
                    ),
                )

    def tflite_plan(self, layers: list[LayerPlan]) -> TFLitePlan | None:
        export = self.spec.export
        if "tflite" not in export.formats:
            return None
        t = export.tflite
        quantize = tuple(t.quantize)
        if "quantize" not in t.model_fields_set and any(
            lay.type in _RECURRENT for lay in layers
        ):
            quantize = tuple(m for m in quantize if m != "int8")  # see check_tflite
        return TFLitePlan(
            quantize=quantize,
            int8_io=t.int8_io,
            representative_samples=t.representative_samples,
            max_accuracy_drop=t.max_accuracy_drop,
            batch=None if t.batch == "dynamic" else t.batch,
        )

    def check_tflite(self, layers: list[LayerPlan]) -> None:
        """What the TFLite converter is known to refuse, before any training."""
        export = self.spec.export
        if "tflite" not in export.formats:
            if "tflite" in export.model_fields_set:
                self.error(
                    ("export", "tflite"),
                    "TFLite options are set, but export.formats leaves tflite out, "
                    "so no TFLite file would be made; add tflite to formats, or "
                    "remove these options",
                )
            return
        recurrent = [lay for lay in layers if lay.type in _RECURRENT]
        if recurrent and export.tflite.batch == "dynamic":
            self.error(
                ("export", "tflite", "batch"),
                f"layers[{recurrent[0].index}] ({recurrent[0].type}) converts to "
                "TFLite only with a static batch; use batch: 1",
            )
        if (
            recurrent
            and "int8" in export.tflite.quantize
            and "quantize" in export.tflite.model_fields_set
        ):
            self.error(
                ("export", "tflite", "quantize"),
                f"int8 cannot quantize layers[{recurrent[0].index}] "
                f"({recurrent[0].type}): full-integer conversion of recurrent "
                "layers crashes the TFLite converter; use none, float16 or dynamic",
            )

    def steps_per_execution(self) -> int:
        """The spec's, except under MirroredStrategy, where Keras 3's multi-step
        loop fails ('You must feed a value for placeholder tensor',
        keras-team/keras issue 19246): there it is 1."""
        train = self.spec.train
        if train.distribute == "none":
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

    def check_size(self, layers: list[LayerPlan]) -> None:
        """A model too large to build is a spec error, not a memory error."""
        total = 0
        for layer in layers:
            total += layer.params
            if total > MAX_PARAMS:
                self.error(
                    ("layers", layer.index),
                    f"the model is too large: {total:,} parameters up to this layer "
                    f"({total * 4 / 2**30:,.1f} GiB of float32 weights); l2compile "
                    f"builds at most {MAX_PARAMS:,}",
                )
                return

    def check_weight_decay(self, layers: list[LayerPlan]) -> None:
        opt = self.spec.train.optimizer
        if opt.weight_decay == 0 or opt.weight_decay_with_l2:
            return
        both = [
            f"{lay.name}/{w.name}"
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

    def plan(self) -> ModelPlan | list[SpecError]:
        spec = self.spec
        recipe = recipe_for(
            spec.train.recipe, spec.train.num_classes, spec.train.labels
        )
        names = self.names()
        shape: Shape = tuple(spec.input.shape)
        layers: list[LayerPlan] = []
        for i, (layer, name) in enumerate(zip(spec.layers, names, strict=True)):
            planned = self.layer(i, layer, name, shape)
            if planned is None:
                break  # later shapes are unknown; don't report knock-on errors
            layers.append(_assign_l2(planned, getattr(layer, "l2", None), spec))
            shape = planned.output_shape
        self.check_size(layers)
        self.check_recipe(recipe, layers)
        self.check_weight_decay(layers)
        self.check_tflite(layers)
        steps_per_execution = self.steps_per_execution()
        if self.errors:
            return self.errors

        opt = spec.train.optimizer
        constants = [
            Constant("INPUT_SHAPE", shape_text(tuple(spec.input.shape))),
            *(
                [Constant("DATA", py_str(spec.train.data), "the data file")]
                if spec.train.data
                else []
            ),
            Constant("L2", repr(spec.l2), _l2_comment(spec, layers)),
            Constant("LEARNING_RATE", repr(opt.learning_rate)),
        ]
        optimizer = f"keras.optimizers.{_OPTIMIZERS[opt.type]}"
        optimizer_args: tuple[str, ...] = ("learning_rate=LEARNING_RATE",)
        no_decay: tuple[str, ...] = ()
        if opt.weight_decay > 0:
            constants.append(
                Constant(
                    "WEIGHT_DECAY",
                    repr(opt.weight_decay),
                    "decoupled weight decay (Loshchilov & Hutter)",
                )
            )
            if opt.type == "adam":
                optimizer = "keras.optimizers.AdamW"
            optimizer_args = (*optimizer_args, "weight_decay=WEIGHT_DECAY")
            no_decay = tuple(
                w.path(spec.name, lay.name)
                for lay in layers
                for w in lay.weights
                if w.role != "statistic" and w.weight_decay == 0
            )
            if no_decay:
                constants.append(
                    Constant(
                        "NO_WEIGHT_DECAY",
                        "(\n" + "".join(f"    {py_str(p)},\n" for p in no_decay) + ")",
                        "trainable weights that weight decay leaves alone",
                    )
                )
        constants += [
            Constant("EPOCHS", repr(spec.train.epochs)),
            Constant("BATCH_SIZE", repr(spec.train.batch_size)),
            Constant("SEED", repr(spec.train.seed)),
            Constant(
                "STEPS_PER_EXECUTION",
                repr(steps_per_execution),
                "steps per call into TensorFlow: same math, less overhead",
            ),
            Constant(
                "JIT_COMPILE",
                repr(spec.train.jit_compile),
                "compile the training step with XLA",
            ),
            Constant(
                "DETERMINISTIC_OPS",
                repr(spec.train.deterministic_ops),
                "only TensorFlow's deterministic kernels",
            ),
            Constant(
                "OUT", py_str(f"{spec.name}.keras"), "where main() saves the model"
            ),
        ]
        return ModelPlan(
            name=spec.name,
            description=spec.description,
            source_file=self.source.file,
            spec_sha256=self.source.sha256,
            input_shape=tuple(spec.input.shape),
            l2=spec.l2,
            l2_bias=spec.l2_bias,
            layers=tuple(layers),
            optimizer=optimizer,
            optimizer_args=optimizer_args,
            loss=py_str(spec.train.loss),
            metrics="[" + ", ".join(py_str(m) for m in spec.train.metrics) + "]",
            recipe=recipe,
            epochs=spec.train.epochs,
            batch_size=spec.train.batch_size,
            seed=spec.train.seed,
            export_formats=tuple(spec.export.formats),
            constants=tuple(constants),
            tflite=self.tflite_plan(layers),
            distribute=spec.train.distribute,
            weight_decay=opt.weight_decay,
            no_weight_decay=no_decay,
            data=spec.train.data,
            history_keys=tuple(
                prefix + name
                for prefix in ("", "val_")
                for name in ("loss", *spec.train.metrics)
            ),
            data_path=(
                SpecPath("train.data", self.source.file, spec.train.data, self.folder)
                if spec.train.data is not None
                else None
            ),
        )


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


def plan_spec(
    loaded: LoadedSpec, folder: Path | None = None
) -> ModelPlan | list[SpecError]:
    """Resolve a valid spec into a plan, or every cross-field error in it.

    `folder` is the spec file's folder, which paths in the spec are relative
    to; by default the folder of the spec's display name, from the working
    folder.
    """
    return _Planner(loaded, folder).plan()
