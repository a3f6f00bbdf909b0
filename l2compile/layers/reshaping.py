"""Layers that rearrange values: flatten and reshape."""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from l2compile.layers.base import LayerSpec, Place, Shape, register, shape_text


@register
class FlattenLayer(LayerSpec):
    """Flattens everything but the batch dimension."""

    keras_class: ClassVar[str] = "Flatten"
    type: Literal["flatten"]

    def output_shape(self, shape: Shape, place: Place) -> Shape | None:
        return (math.prod(shape),)


@register
class ReshapeLayer(LayerSpec):
    """Reshapes everything but the batch dimension."""

    keras_class: ClassVar[str] = "Reshape"
    type: Literal["reshape"]
    target_shape: Annotated[
        list[Annotated[int, Field(ge=-1, le=2**31 - 1)]],
        Field(min_length=1, max_length=8),
    ]

    def arguments(self) -> list[str]:
        return [shape_text(tuple(self.target_shape))]

    def output_shape(self, shape: Shape, place: Place) -> Shape | None:
        target = self.target_shape
        size = math.prod(shape)
        if any(d == 0 for d in target) or target.count(-1) > 1:
            place.error(
                "target_shape", "sizes must be positive, with at most one -1 (inferred)"
            )
            return None
        known = math.prod(d for d in target if d != -1)
        if -1 in target:
            if size % known:
                place.error(
                    "target_shape",
                    f"cannot reshape {shape_text(shape)} ({size} values) to {target}: "
                    f"{size} is not a multiple of {known}",
                )
                return None
            return tuple(size // known if d == -1 else d for d in target)
        if known != size:
            place.error(
                "target_shape",
                f"cannot reshape {shape_text(shape)} ({size} values) to {target} "
                f"({known} values)",
            )
            return None
        return tuple(target)
