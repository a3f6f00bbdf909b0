"""Core layers: dense, embedding, activation and rescaling."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from l2compile.fields import Activation, PositiveInt
from l2compile.layers.base import (
    LayerSpec,
    Place,
    Shape,
    WeightedSpec,
    WeightPlan,
    activation_args,
    bias,
    py_float,
    py_str,
    register,
)


@register
class DenseLayer(WeightedSpec):
    """A fully connected layer (`keras.layers.Dense`)."""

    keras_class: ClassVar[str] = "Dense"
    type: Literal["dense"]
    units: PositiveInt
    activation: Activation = "linear"
    use_bias: bool = True

    def arguments(self) -> list[str]:
        return [
            repr(self.units),
            *activation_args(self.activation),
            *([] if self.use_bias else ["use_bias=False"]),
        ]

    def output_shape(self, shape: Shape, place: Place) -> Shape | None:
        return (*shape[:-1], self.units)

    def final_activation(self) -> str | None:
        return self.activation

    def weights(self, shape: Shape) -> list[WeightPlan]:
        kernel = (shape[-1], self.units)
        return [
            WeightPlan("kernel", kernel, "kernel", "kernel_regularizer"),
            *bias(self.use_bias, self.units),
        ]


@register
class EmbeddingLayer(WeightedSpec):
    """Integer ids -> vectors: (length,) -> (length, output_dim)."""

    keras_class: ClassVar[str] = "Embedding"
    input_rank: ClassVar[int | None] = 1
    reads_ids: ClassVar[bool] = True
    type: Literal["embedding"]
    input_dim: PositiveInt | None = Field(
        default=None,
        description="How many ids it looks up. A text recipe's may be left out: "
        "its vocabulary's size, max_tokens + 3 (the special tokens).",
    )
    output_dim: PositiveInt

    def arguments(self) -> list[str]:
        return [repr(self.input_dim), repr(self.output_dim)]

    def sized(self, vocabulary: int | None) -> LayerSpec | str:
        """The layer with input_dim, where it left it out, from a text
        recipe's vocabulary size (None: the recipe has none)."""
        if self.input_dim is not None:
            return self
        if vocabulary is None:
            return (
                "input_dim: needed; only a text recipe's vocabulary gives it "
                "(text_folder)"
            )
        return self.model_copy(update={"input_dim": vocabulary})

    def output_shape(self, shape: Shape, place: Place) -> Shape | None:
        return (*shape, self.output_dim)

    def weights(self, shape: Shape) -> list[WeightPlan]:
        assert self.input_dim is not None, "sized() first"
        table = (self.input_dim, self.output_dim)
        return [WeightPlan("embeddings", table, "kernel", "embeddings_regularizer")]


@register
class RescalingLayer(LayerSpec):
    """Multiplies by `scale`, then adds `offset`."""

    keras_class: ClassVar[str] = "Rescaling"
    type: Literal["rescaling"]
    scale: Annotated[float, Field(allow_inf_nan=False)]
    offset: Annotated[float, Field(allow_inf_nan=False)] = 0.0

    def arguments(self) -> list[str]:
        offset = [f"offset={py_float(self.offset)}"] if self.offset else []
        return [py_float(self.scale), *offset]


@register
class ActivationLayer(LayerSpec):
    """Applies an activation function on its own."""

    keras_class: ClassVar[str] = "Activation"
    type: Literal["activation"]
    activation: Activation

    def arguments(self) -> list[str]:
        return [py_str(self.activation)]

    def final_activation(self) -> str | None:
        return self.activation
