"""What a layer kind is: the protocol every kind follows, and the registry.

A layer kind is one pydantic class, registered with `@register`. The class is
both the spec model (its fields are what a user writes) and the kind's plan
(like Keras' own `Dense`, it knows its arguments, its output shape and its
weights). The spec's union of layers and the planner's dispatch are both made
from the registry, so adding a kind is one class in one family module.

A kind states:

- `type`: its name in a spec (a one-value `Literal`);
- `keras_class`: the class in `keras.layers` the generated code uses;
- `input_rank`: the rank of input it needs (None: any rank), checked for it;
- `arguments()`: its constructor arguments as Python source (without `name`);
- `output_shape(shape, place)`: its output shape, or None after reporting
  through `place` why its input does not fit;
- `weights(shape)`: its weights, each with the role that the l2 rules read.

- `final_activation()`: the activation its output ends with, where it ends
  with one the output can be read by (dense, convolutions, activation);
- flags the other checks read: `passthrough`, `reads_ids`, and what TFLite's
  converter refuses;
- `augments`: it augments the training images, drawing random numbers from
  a `seed` argument that the planner adds (a kind does not know its place in
  the spec); it runs in the input pipeline, not in the model.
- `from_keras(config)`: its fields read back from a Keras layer's config, for
  `l2compile import` (by default each field Keras names the same way).

A merge kind (a `MergeSpec`) takes two or more inputs, each named by the layer
it comes from, and states `merged_shape(inputs, place)` instead of
`output_shape`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, TypeVar, get_args

from pydantic import Field

from l2compile.fields import Activation, Identifier, L2Coefficient, StrictModel

Shape = tuple[int, ...]

#: What a weight is, for the l2 rules: kernels (every weight matrix, filter and
#: embedding table), biases, normalization scales and offsets (gamma, beta),
#: and statistics that are not trained (moving mean and variance).
Role = Literal["kernel", "bias", "norm", "statistic"]

#: The most inputs one merge layer takes.
MAX_INPUTS = 64
#: The name by which layers take the model's input.
INPUT = "input"


def py_str(text: str) -> str:
    """A double-quoted Python literal for `text` (which may hold anything)."""
    literal = repr(text)
    if literal.startswith("'") and '"' not in text:
        literal = '"' + literal[1:-1].replace("\\'", "'") + '"'
    return literal


def py_float(value: float) -> str:
    """A float literal as ruff formats it: `1e20`, not repr's `1e+20`."""
    return repr(value).replace("e+", "e")


def shape_text(shape: Shape) -> str:
    """A shape as Python writes a tuple: `(10,)`, `(28, 28, 1)`."""
    return (
        "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
    )


def pair_text(pair: tuple[int, int]) -> str:
    """A 2-D size as Keras' shorthand: `3` for (3, 3), else `(3, 5)`."""
    return repr(pair[0]) if pair[0] == pair[1] else shape_text(pair)


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
    #: `name` is the whole path (a pretrained backbone's weights keep the
    #: paths their application gave them).
    absolute: bool = False
    #: Whether training changes it (a frozen backbone's weights do not).
    trainable: bool = True

    @property
    def params(self) -> int:
        return math.prod(self.shape)

    def path(self, scope: str | None, layer: str) -> str:
        """Keras' variable path: `[scope/]layer[/cell]/name`. A Sequential model
        builds its layers under its own name; a functional one does not."""
        if self.absolute:
            return self.name
        parts = [*([scope] if scope else []), layer]
        parts += [*([self.cell] if self.cell else []), self.name]
        return "/".join(parts)


@dataclass(frozen=True)
class Pretrained:
    """What a pretrained model (a backbone) tells the planner of itself."""

    model: str  #: its name in a spec
    keras_class: str  #: its class in keras.applications
    weights: str  #: imagenet, none, or file
    weights_file: str | None  #: the file, as the spec writes it
    #: Why a file does not hold its weights (None: it does).
    check_file: Callable[[Path], str | None]
    rescaling: str  #: the layer that scales [0, 1] to what it reads
    reads: str  #: the pixel range it reads
    own_preprocessing: str
    trained_from: int | None  #: the first layer it trains (None: frozen)


class Place(Protocol):
    """Where a layer reports what is wrong: `field` names one of its fields
    (None: the layer as a whole)."""

    def error(self, field: str | None, message: str) -> None: ...


class LayerSpec(StrictModel):
    """The fields every layer has, and the protocol of a layer kind."""

    keras_class: ClassVar[str]
    input_rank: ClassVar[int | None] = None
    #: At inference it passes its input on unchanged or only rearranged
    #: (dropout, noise, flatten, reshape): it may follow the model's softmax.
    passthrough: ClassVar[bool] = False
    #: It looks up integer ids, so it must read the model's input, unscaled.
    reads_ids: ClassVar[bool] = False
    #: It learns statistics of the training data before training (its
    #: `adapt`), so it must read the model's input.
    adapted: ClassVar[bool] = False
    #: It augments the training images: it is planned into the generated
    #: build_augmentation(), which the training batches go through in the
    #: input pipeline, and not into the model (so no training step holds it,
    #: and no saved or exported file). The planner gives it `seed=seed +
    #: <its index>` (the generated Augmenter restarts it there from each
    #: epoch's seed), so that a build is reproducible and no two layers draw
    #: the same numbers.
    augments: ClassVar[bool] = False
    #: What TFLite's converter is known to refuse for this kind: a dynamic
    #: batch, and (the reason, where it does) full-integer quantization.
    tflite_dynamic_batch: ClassVar[bool] = True
    tflite_int8_refused: ClassVar[str | None] = None
    #: The ONNX export routes that fail for this kind, each with the reason:
    #: "tensorflow" (Keras' export through tf2onnx) and "jax" (through
    #: jax2onnx); l2compile.formats.onnx takes a route no layer refuses.
    onnx_refused: ClassVar[dict[str, str]] = {}
    #: It is a whole Keras model inside the model (a keras.applications
    #: backbone): `l2compile import` reads a nested model's config with its
    #: from_keras, which raises ValueError saying why where it cannot.
    keras_model: ClassVar[bool] = False
    #: Its fields that Keras' config keeps as a tuple of one (`(3,)`), where
    #: the spec writes the number (a 1-D kernel or pool size, its strides).
    keras_one_d: ClassVar[tuple[str, ...]] = ()
    #: It convolves: on a CPU, `train.backend: auto` trains it on TensorFlow
    #: (l2compile.backends.pick).
    convolves: ClassVar[bool] = False

    name: Identifier | None = Field(
        default=None, description="Layer name; defaults to <type>_<n>."
    )
    inputs: list[Identifier] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_INPUTS,
        description="The layers whose outputs this one takes, by name ('input' "
        "is the model's input); defaults to the layer before it.",
    )

    @property
    def kind(self) -> str:
        return str(getattr(self, "type"))  # noqa: B009 (each kind declares it)

    def arguments(self) -> list[str]:
        """Its constructor arguments as Python source, without `name`."""
        return []

    def output_shape(self, shape: Shape, place: Place) -> Shape | None:
        """Its output shape for an input of `shape` (checked to have
        `input_rank`), or None once `place` has been told why not."""
        return shape

    def weights(self, shape: Shape) -> list[WeightPlan]:
        """Its weights for an input of `shape`, in Keras' order."""
        return []

    def final_activation(self) -> str | None:
        """The activation its output ends with (None: not one a task can rely
        on, e.g. a recurrent layer's, or none at all)."""
        return None

    def trains_batch_norm(self) -> bool:
        """Whether it holds batch normalization whose statistics training
        moves (train.batchnorm_statistics recomputes them after)."""
        return False

    def pretrained(self) -> Pretrained | None:
        """What the module builds for it in a function of its own, where it is
        a pretrained model (None: a Keras layer)."""
        return None

    @classmethod
    def from_keras(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Its fields as a Keras layer's config (`get_config()`) gives them,
        for `l2compile import`: by default, each field that Keras names the
        same way. A value the spec cannot hold is left for validation to
        refuse; an argument the spec lacks is found by comparing configs."""
        own = set(cls.model_fields) - {"type", "name", "inputs", "l2"}
        found = {
            field: config[field]
            for field in cls.model_fields
            if field in own and field in config
        }
        for field in cls.keras_one_d:  # Keras keeps a 1-D size as (3,)
            value = found.get(field)
            if isinstance(value, list) and len(value) == 1:
                found[field] = value[0]
        return found

    def sized(self, vocabulary: int | None) -> LayerSpec | str:
        """The layer with the sizes it leaves to the data: `vocabulary` is a
        text recipe's vocabulary size (None: it has none). A message where
        it needs one and there is none."""
        return self


class WeightedSpec(LayerSpec):
    """A layer with weights: its `l2` overrides the spec's global `l2`."""

    l2: L2Coefficient | None = Field(
        default=None,
        description="Overrides the global l2 for this layer; 0 turns it off.",
    )


class MergeSpec(LayerSpec):
    """A layer that joins the outputs of several layers into one."""

    max_inputs: ClassVar[int] = MAX_INPUTS

    def merged_shape(
        self, inputs: list[tuple[str, Shape]], place: Place
    ) -> Shape | None:
        """Its output shape for its inputs (at least two), each given by the
        name of the layer it comes from and its shape."""
        raise NotImplementedError


# --- helpers the kinds share -------------------------------------------------


def activation_args(activation: Activation, default: str = "linear") -> list[str]:
    """`activation=...` where it is not the class's default."""
    return [] if activation == default else [f"activation={py_str(activation)}"]


def bias(
    use_bias: bool, size: int | Shape, cell: str | None = None
) -> list[WeightPlan]:
    """The bias weight, where the layer has one."""
    if not use_bias:
        return []
    shape = size if isinstance(size, tuple) else (size,)
    return [WeightPlan("bias", shape, "bias", "bias_regularizer", cell)]


def _conv_length(size: int, kernel: int, stride: int, padding: str) -> int:
    if padding == "same":
        return -(-size // stride)
    return (size - kernel) // stride + 1


def window(
    place: Place,
    field: str,
    shape: Shape,
    size: tuple[int, ...],
    strides: tuple[int, ...],
    padding: str,
) -> Shape | None:
    """Output sizes of a sliding window (a convolution or a pool) over `shape`."""
    sizes = shape[: len(size)]
    if padding == "valid" and any(k > n for k, n in zip(size, sizes, strict=True)):
        place.error(
            field,
            f"{shape_text(size)} is larger than the input "
            f"{shape_text(sizes)} with padding 'valid'",
        )
        return None
    return tuple(
        _conv_length(n, k, s, padding)
        for n, k, s in zip(sizes, size, strides, strict=True)
    )


_NEEDS = {
    1: "(sequence_length,)",
    2: "(timesteps, features)",
    3: "(height, width, channels)",
}
_HINTS = {
    3: "; add a reshape layer before it, e.g. target_shape: [28, 28, 1]",
    2: "; add a reshape layer before it, e.g. target_shape: [28, 28]",
}


def rank_error(kind: str, shape: Shape, rank: int, source: str = "its input") -> str:
    """What to say when a kind that needs input of `rank` gets `shape` (from
    `source`)."""
    return (
        f"{kind} needs input of shape {_NEEDS[rank]}, but {source} is "
        f"{shape_text(shape)}{_HINTS.get(rank, '')}"
    )


# --- the registry -------------------------------------------------------------

#: Every layer kind by its `type`, in the order the family modules register them.
KINDS: dict[str, type[LayerSpec]] = {}

K = TypeVar("K", bound=type[LayerSpec])


def register(kind: K) -> K:
    """Make a layer kind part of the spec and the planner."""
    fields: dict[str, Any] = kind.__pydantic_fields__
    (name,) = get_args(fields["type"].annotation)
    assert name not in KINDS, f"layer type {name!r} registered twice"
    assert kind.input_rank is None or kind.input_rank in _NEEDS, name
    KINDS[name] = kind
    return kind


_Kind = type[LayerSpec]  # (PlannedLayer.type shadows `type` in its class body)


class PlannedLayer(Protocol):
    """A layer as the plan holds it (`plan.LayerPlan`), as data sources and
    tasks check it. It is named here, below the plan, so that they need not
    import the plan that holds them."""

    @property
    def index(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def output_shape(self) -> Shape: ...
    @property
    def inputs(self) -> tuple[str, ...]: ...
    @property
    def final_activation(self) -> str | None: ...
    @property
    def kind(self) -> _Kind: ...
    @property
    def passthrough(self) -> bool: ...
    @property
    def reads_ids(self) -> bool: ...
