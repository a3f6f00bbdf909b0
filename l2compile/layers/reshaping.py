"""Layers that rearrange values: flatten, reshape, and padding and resizing
2-D maps."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema

from l2compile.fields import Pair, pair
from l2compile.layers.base import (
    LayerSpec,
    Place,
    Shape,
    pair_text,
    py_str,
    register,
    shape_text,
)

_SIZE = {"type": "integer", "minimum": 0}


#: `1` means `(1, 1)`, as for kernel sizes, but 0 is a size here.
Margins = Annotated[
    tuple[
        Annotated[int, Field(ge=0, le=2**31 - 1)],
        Annotated[int, Field(ge=0, le=2**31 - 1)],
    ],
    BeforeValidator(pair),
    WithJsonSchema(
        {
            "anyOf": [
                _SIZE,
                {"type": "array", "items": _SIZE, "minItems": 2, "maxItems": 2},
            ]
        }
    ),
]


@register
class FlattenLayer(LayerSpec):
    """Flattens everything but the batch dimension."""

    keras_class: ClassVar[str] = "Flatten"
    passthrough: ClassVar[bool] = True
    type: Literal["flatten"]

    def output_shape(self, shape: Shape, place: Place) -> Shape | None:
        return (math.prod(shape),)


@register
class ReshapeLayer(LayerSpec):
    """Reshapes everything but the batch dimension."""

    keras_class: ClassVar[str] = "Reshape"
    passthrough: ClassVar[bool] = True
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


@register
class ZeroPadding2DLayer(LayerSpec):
    """Adds `padding` rows of zeros above and below, and columns left and right."""

    keras_class: ClassVar[str] = "ZeroPadding2D"
    input_rank: ClassVar[int | None] = 3
    type: Literal["zero_padding2d"]
    padding: Margins = Field(
        default=(1, 1), description="Rows (top and bottom) and columns (each side)."
    )

    def arguments(self) -> list[str]:
        return [] if self.padding == (1, 1) else [pair_text(self.padding)]

    @classmethod
    def from_keras(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Keras keeps ((top, bottom), (left, right)); the spec pads evenly."""
        found = super().from_keras(config)
        margins = found.get("padding")
        if (
            isinstance(margins, list)
            and len(margins) == 2
            and all(isinstance(m, list) and len(m) == 2 for m in margins)
            and margins[0][0] == margins[0][1]
            and margins[1][0] == margins[1][1]
        ):
            found["padding"] = [margins[0][0], margins[1][0]]
        return found

    def output_shape(self, shape: Shape, place: Place) -> Shape | None:
        rows, columns = self.padding
        return (shape[0] + 2 * rows, shape[1] + 2 * columns, shape[2])


@register
class UpSampling2DLayer(LayerSpec):
    """Repeats rows and columns `size` times (or interpolates between them)."""

    keras_class: ClassVar[str] = "UpSampling2D"
    input_rank: ClassVar[int | None] = 3
    type: Literal["up_sampling2d"]
    # Measured with jax2onnx 0.17.
    onnx_refused: ClassVar[dict[str, str]] = {
        "jax": "jax2onnx cannot export its resize with a free batch dimension"
    }
    size: Pair = (2, 2)
    interpolation: Literal["nearest", "bilinear"] = "nearest"

    def arguments(self) -> list[str]:
        args = [] if self.size == (2, 2) else [pair_text(self.size)]
        if self.interpolation != "nearest":
            args.append(f"interpolation={py_str(self.interpolation)}")
        return args

    def output_shape(self, shape: Shape, place: Place) -> Shape | None:
        rows, columns = self.size
        return (shape[0] * rows, shape[1] * columns, shape[2])
