"""Convolutions: 1-D, 2-D, depthwise, separable and transposed 2-D."""

from __future__ import annotations

from typing import ClassVar, Literal

from l2compile.fields import Activation, Padding, Pair, PositiveInt
from l2compile.layers.base import (
    Place,
    Shape,
    WeightedSpec,
    WeightPlan,
    activation_args,
    bias,
    pair_text,
    py_str,
    register,
    window,
)


class _Convolution(WeightedSpec):
    convolves: ClassVar[bool] = True

    padding: Padding = "valid"
    activation: Activation = "linear"
    use_bias: bool = True

    def _common(self, args: list[str], strides: str | None) -> list[str]:
        return [
            *args,
            *([f"strides={strides}"] if strides else []),
            *([f"padding={py_str(self.padding)}"] if self.padding != "valid" else []),
        ]

    def final_activation(self) -> str | None:
        return self.activation

    def _tail(self) -> list[str]:
        return [
            *activation_args(self.activation),
            *([] if self.use_bias else ["use_bias=False"]),
        ]


@register
class Conv1DLayer(_Convolution):
    """A 1-D convolution over (steps, channels)."""

    keras_class: ClassVar[str] = "Conv1D"
    input_rank: ClassVar[int | None] = 2
    keras_one_d: ClassVar[tuple[str, ...]] = ("kernel_size", "strides")
    type: Literal["conv1d"]
    filters: PositiveInt
    kernel_size: PositiveInt
    strides: PositiveInt = 1

    def arguments(self) -> list[str]:
        strides = repr(self.strides) if self.strides != 1 else None
        args = [repr(self.filters), repr(self.kernel_size)]
        return [*self._common(args, strides), *self._tail()]

    def output_shape(self, shape: Shape, place: Place) -> Shape | None:
        steps = window(
            place,
            "kernel_size",
            shape,
            (self.kernel_size,),
            (self.strides,),
            self.padding,
        )
        return None if steps is None else (*steps, self.filters)

    def weights(self, shape: Shape) -> list[WeightPlan]:
        kernel = (self.kernel_size, shape[-1], self.filters)
        return [
            WeightPlan("kernel", kernel, "kernel", "kernel_regularizer"),
            *bias(self.use_bias, self.filters),
        ]


class _Conv2D(_Convolution):
    input_rank: ClassVar[int | None] = 3
    kernel_size: Pair
    strides: Pair = (1, 1)

    def _args(self, first: list[str], extra: list[str] | None = None) -> list[str]:
        strides = pair_text(self.strides) if self.strides != (1, 1) else None
        args = [*first, pair_text(self.kernel_size)]
        return [*self._common(args, strides), *(extra or []), *self._tail()]

    def _window(self, shape: Shape, place: Place) -> Shape | None:
        return window(
            place, "kernel_size", shape, self.kernel_size, self.strides, self.padding
        )


@register
class Conv2DLayer(_Conv2D):
    """A 2-D convolution over (height, width, channels)."""

    keras_class: ClassVar[str] = "Conv2D"
    type: Literal["conv2d"]
    filters: PositiveInt

    def arguments(self) -> list[str]:
        return self._args([repr(self.filters)])

    def output_shape(self, shape: Shape, place: Place) -> Shape | None:
        hw = self._window(shape, place)
        return None if hw is None else (*hw, self.filters)

    def weights(self, shape: Shape) -> list[WeightPlan]:
        kernel = (*self.kernel_size, shape[-1], self.filters)
        return [
            WeightPlan("kernel", kernel, "kernel", "kernel_regularizer"),
            *bias(self.use_bias, self.filters),
        ]


class _Depthwise(_Conv2D):
    depth_multiplier: PositiveInt = 1

    def _multiplier(self) -> list[str]:
        if self.depth_multiplier == 1:
            return []
        return [f"depth_multiplier={self.depth_multiplier!r}"]

    def _depthwise_kernel(self, shape: Shape) -> Shape:
        return (*self.kernel_size, shape[-1], self.depth_multiplier)


@register
class DepthwiseConv2DLayer(_Depthwise):
    """One 2-D filter per input channel (times `depth_multiplier`)."""

    keras_class: ClassVar[str] = "DepthwiseConv2D"
    type: Literal["depthwise_conv2d"]

    def arguments(self) -> list[str]:
        return self._args([], self._multiplier())

    def output_shape(self, shape: Shape, place: Place) -> Shape | None:
        hw = self._window(shape, place)
        return None if hw is None else (*hw, shape[-1] * self.depth_multiplier)

    def weights(self, shape: Shape) -> list[WeightPlan]:
        kernel = self._depthwise_kernel(shape)
        return [
            WeightPlan("kernel", kernel, "kernel", "depthwise_regularizer"),
            *bias(self.use_bias, shape[-1] * self.depth_multiplier),
        ]


@register
class SeparableConv2DLayer(_Depthwise):
    """A depthwise convolution followed by a 1x1 pointwise convolution."""

    keras_class: ClassVar[str] = "SeparableConv2D"
    type: Literal["separable_conv2d"]
    filters: PositiveInt

    def arguments(self) -> list[str]:
        return self._args([repr(self.filters)], self._multiplier())

    def output_shape(self, shape: Shape, place: Place) -> Shape | None:
        hw = self._window(shape, place)
        return None if hw is None else (*hw, self.filters)

    def weights(self, shape: Shape) -> list[WeightPlan]:
        depth = shape[-1] * self.depth_multiplier
        return [
            WeightPlan(
                "depthwise_kernel",
                self._depthwise_kernel(shape),
                "kernel",
                "depthwise_regularizer",
            ),
            WeightPlan(
                "pointwise_kernel",
                (1, 1, depth, self.filters),
                "kernel",
                "pointwise_regularizer",
            ),
            *bias(self.use_bias, self.filters),
        ]


@register
class Conv2DTransposeLayer(_Conv2D):
    """The transpose of a 2-D convolution: it upsamples by `strides`."""

    keras_class: ClassVar[str] = "Conv2DTranspose"
    type: Literal["conv2d_transpose"]
    filters: PositiveInt

    def arguments(self) -> list[str]:
        return self._args([repr(self.filters)])

    def output_shape(self, shape: Shape, place: Place) -> Shape | None:
        # Keras' deconv_output_length, without output_padding or dilation.
        sizes = []
        for size, kernel, stride in zip(
            shape[:2], self.kernel_size, self.strides, strict=True
        ):
            grown = size * stride
            sizes.append(
                grown + max(kernel - stride, 0) if self.padding == "valid" else grown
            )
        return (*sizes, self.filters)

    def weights(self, shape: Shape) -> list[WeightPlan]:
        # Its kernel maps filters to input channels: (kh, kw, filters, channels).
        kernel = (*self.kernel_size, self.filters, shape[-1])
        return [
            WeightPlan("kernel", kernel, "kernel", "kernel_regularizer"),
            *bias(self.use_bias, self.filters),
        ]
