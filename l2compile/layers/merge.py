"""Merge layers: join the outputs of several layers into one.

The element-wise merges take inputs of one shape; `concatenate` joins them
along an axis, where the other sizes must agree.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from l2compile.errors import spoken_list
from l2compile.layers.base import (
    MAX_INPUTS,
    MergeSpec,
    Place,
    Shape,
    register,
    shape_text,
)


def _listed(inputs: list[tuple[str, Shape]]) -> str:
    return spoken_list([f"{name} is {shape_text(shape)}" for name, shape in inputs])


class _ElementWise(MergeSpec):
    def merged_shape(
        self, inputs: list[tuple[str, Shape]], place: Place
    ) -> Shape | None:
        shapes = {shape for _, shape in inputs}
        if len(shapes) > 1:
            place.error(
                "inputs",
                f"{self.kind} needs inputs of one shape, but {_listed(inputs)}",
            )
            return None
        return inputs[0][1]


@register
class AddLayer(_ElementWise):
    """The sum of its inputs (a residual connection)."""

    keras_class: ClassVar[str] = "Add"
    type: Literal["add"]


@register
class SubtractLayer(_ElementWise):
    """The first input minus the second."""

    keras_class: ClassVar[str] = "Subtract"
    max_inputs: ClassVar[int] = 2
    type: Literal["subtract"]


@register
class MultiplyLayer(_ElementWise):
    """The element-wise product of its inputs (a gate)."""

    keras_class: ClassVar[str] = "Multiply"
    type: Literal["multiply"]


@register
class AverageLayer(_ElementWise):
    """The element-wise mean of its inputs."""

    keras_class: ClassVar[str] = "Average"
    type: Literal["average"]


@register
class MaximumLayer(_ElementWise):
    """The element-wise maximum of its inputs."""

    keras_class: ClassVar[str] = "Maximum"
    type: Literal["maximum"]


@register
class ConcatenateLayer(MergeSpec):
    """Its inputs side by side along `axis` (-1: the channels)."""

    keras_class: ClassVar[str] = "Concatenate"
    type: Literal["concatenate"]
    axis: Annotated[int, Field(ge=-MAX_INPUTS, le=MAX_INPUTS)] = Field(
        default=-1,
        description="The axis to join along, counting the batch axis as 0, as "
        "Keras does; negative counts from the last.",
    )

    def arguments(self) -> list[str]:
        return [] if self.axis == -1 else [f"axis={self.axis!r}"]

    def merged_shape(
        self, inputs: list[tuple[str, Shape]], place: Place
    ) -> Shape | None:
        ranks = {len(shape) for _, shape in inputs}
        if len(ranks) > 1:
            place.error(
                "inputs",
                f"concatenate needs inputs of one rank, but {_listed(inputs)}",
            )
            return None
        (rank,) = ranks
        # Keras counts the batch as axis 0; a sample's axes are 1..rank.
        at = self.axis - 1 if self.axis > 0 else rank + self.axis
        if not 0 <= at < rank:
            place.error(
                "axis",
                f"axis {self.axis} is "
                + ("the batch axis" if self.axis == 0 else "out of range")
                + f": inputs of shape {shape_text(inputs[0][1])} join along axis "
                f"1 to {rank} (or -1 to -{rank})",
            )
            return None
        rest = {shape[:at] + shape[at + 1 :] for _, shape in inputs}
        if len(rest) > 1:
            place.error(
                "inputs",
                f"concatenate along axis {self.axis} needs the other sizes to "
                f"agree, but {_listed(inputs)}",
            )
            return None
        first = inputs[0][1]
        joined = sum(shape[at] for _, shape in inputs)
        return (*first[:at], joined, *first[at + 1 :])
