"""Layers that only act while training: dropout, spatial dropout and noise."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from l2compile.fields import Rate
from l2compile.layers.base import LayerSpec, py_float, register


@register
class DropoutLayer(LayerSpec):
    """Randomly zeroes a fraction of its inputs while training."""

    keras_class: ClassVar[str] = "Dropout"
    passthrough: ClassVar[bool] = True
    type: Literal["dropout"]
    rate: Rate

    def arguments(self) -> list[str]:
        return [py_float(self.rate)]


@register
class SpatialDropout2DLayer(LayerSpec):
    """Drops whole feature maps (channels) while training, not single values."""

    keras_class: ClassVar[str] = "SpatialDropout2D"
    passthrough: ClassVar[bool] = True
    input_rank: ClassVar[int | None] = 3
    type: Literal["spatial_dropout2d"]
    rate: Rate

    def arguments(self) -> list[str]:
        return [py_float(self.rate)]


@register
class GaussianNoiseLayer(LayerSpec):
    """Adds zero-mean Gaussian noise while training (a regularizer, as L2 is)."""

    keras_class: ClassVar[str] = "GaussianNoise"
    passthrough: ClassVar[bool] = True
    type: Literal["gaussian_noise"]
    # Keras refuses a standard deviation above 1.
    stddev: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]

    def arguments(self) -> list[str]:
        return [py_float(self.stddev)]
