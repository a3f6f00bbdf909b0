"""Layers that only act while training: dropout."""

from __future__ import annotations

from typing import ClassVar, Literal

from l2compile.fields import Rate
from l2compile.layers.base import LayerSpec, register


@register
class DropoutLayer(LayerSpec):
    """Randomly zeroes a fraction of its inputs while training."""

    keras_class: ClassVar[str] = "Dropout"
    type: Literal["dropout"]
    rate: Rate

    def arguments(self) -> list[str]:
        return [repr(self.rate)]
