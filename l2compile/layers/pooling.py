"""Pooling: windows over sequences and 2-D maps, and global pooling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field

from l2compile.fields import Padding, Pair, PositiveInt
from l2compile.layers.base import (
    LayerSpec,
    Place,
    Shape,
    pair_text,
    py_str,
    register,
    window,
)


class _Pooling(LayerSpec):
    """A pooling window's strides default to its size, as Keras' do."""

    @classmethod
    def from_keras(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        found = super().from_keras(config)
        if found.get("strides") == found.get("pool_size"):
            found.pop("strides", None)
        return found


class _Pooling2D(_Pooling):
    input_rank: ClassVar[int | None] = 3
    pool_size: Pair = (2, 2)
    strides: Pair | None = Field(default=None, description="Defaults to pool_size.")
    padding: Padding = "valid"

    def arguments(self) -> list[str]:
        args = [pair_text(self.pool_size)]  # AveragePooling2D requires it
        if self.strides is not None and self.strides != self.pool_size:
            args.append(f"strides={pair_text(self.strides)}")
        if self.padding != "valid":
            args.append(f"padding={py_str(self.padding)}")
        return args

    def output_shape(self, shape: Shape, place: Place) -> Shape | None:
        strides = self.strides or self.pool_size
        hw = window(place, "pool_size", shape, self.pool_size, strides, self.padding)
        return None if hw is None else (*hw, shape[-1])


@register
class MaxPooling2DLayer(_Pooling2D):
    """The maximum over each pool_size window."""

    keras_class: ClassVar[str] = "MaxPooling2D"
    type: Literal["max_pooling2d"]
    # Measured with jax2onnx 0.17 and ONNX Runtime 1.32.
    onnx_refused: ClassVar[dict[str, str]] = {
        "jax": "jax2onnx writes a MaxPool node that ONNX Runtime refuses "
        "(Unsupported pooling size)"
    }


@register
class AveragePooling2DLayer(_Pooling2D):
    """The mean over each pool_size window."""

    keras_class: ClassVar[str] = "AveragePooling2D"
    type: Literal["average_pooling2d"]


class _GlobalPooling(LayerSpec):
    """Pools over every axis but the channels: (..., c) -> (c,)."""

    def output_shape(self, shape: Shape, place: Place) -> Shape | None:
        return (shape[-1],)


@register
class GlobalAveragePooling2DLayer(_GlobalPooling):
    """The mean over height and width: (h, w, c) -> (c,)."""

    keras_class: ClassVar[str] = "GlobalAveragePooling2D"
    input_rank: ClassVar[int | None] = 3
    type: Literal["global_average_pooling2d"]


@register
class GlobalMaxPooling2DLayer(_GlobalPooling):
    """The maximum over height and width: (h, w, c) -> (c,)."""

    keras_class: ClassVar[str] = "GlobalMaxPooling2D"
    input_rank: ClassVar[int | None] = 3
    type: Literal["global_max_pooling2d"]


@register
class GlobalAveragePooling1DLayer(_GlobalPooling):
    """The mean over the steps: (steps, features) -> (features,)."""

    keras_class: ClassVar[str] = "GlobalAveragePooling1D"
    input_rank: ClassVar[int | None] = 2
    type: Literal["global_average_pooling1d"]


@register
class MaxPooling1DLayer(_Pooling):
    """The maximum over each window of pool_size steps."""

    keras_class: ClassVar[str] = "MaxPooling1D"
    input_rank: ClassVar[int | None] = 2
    keras_one_d: ClassVar[tuple[str, ...]] = ("pool_size", "strides")
    type: Literal["max_pooling1d"]
    pool_size: PositiveInt = 2
    strides: PositiveInt | None = Field(
        default=None, description="Defaults to pool_size."
    )
    padding: Padding = "valid"

    def arguments(self) -> list[str]:
        args = [repr(self.pool_size)]
        if self.strides is not None and self.strides != self.pool_size:
            args.append(f"strides={self.strides!r}")
        if self.padding != "valid":
            args.append(f"padding={py_str(self.padding)}")
        return args

    def output_shape(self, shape: Shape, place: Place) -> Shape | None:
        stride = self.strides or self.pool_size
        steps = window(
            place, "pool_size", shape, (self.pool_size,), (stride,), self.padding
        )
        return None if steps is None else (*steps, shape[-1])
