"""Recurrent layers over (timesteps, features): LSTM, GRU and SimpleRNN."""

from __future__ import annotations

from typing import ClassVar, Literal

from l2compile.fields import Activation, PositiveInt, Rate
from l2compile.layers.base import (
    Place,
    Shape,
    WeightedSpec,
    WeightPlan,
    activation_args,
    bias,
    py_float,
    register,
)


class _Recurrent(WeightedSpec):
    input_rank: ClassVar[int | None] = 2
    # The converter needs a static batch for them, and its full-integer
    # conversion of them crashes.
    tflite_dynamic_batch: ClassVar[bool] = False
    tflite_int8_refused: ClassVar[str | None] = (
        "full-integer conversion of recurrent layers crashes the TFLite converter"
    )
    gates: ClassVar[int]
    units: PositiveInt
    activation: Activation = "tanh"
    use_bias: bool = True
    return_sequences: bool = False
    dropout: Rate = 0.0
    recurrent_dropout: Rate = 0.0

    def arguments(self) -> list[str]:
        args = [repr(self.units), *activation_args(self.activation, "tanh")]
        if not self.use_bias:
            args.append("use_bias=False")
        if self.return_sequences:
            args.append("return_sequences=True")
        if self.dropout:
            args.append(f"dropout={py_float(self.dropout)}")
        if self.recurrent_dropout:
            args.append(f"recurrent_dropout={py_float(self.recurrent_dropout)}")
        return args

    def output_shape(self, shape: Shape, place: Place) -> Shape | None:
        return (shape[0], self.units) if self.return_sequences else (self.units,)

    def _bias_shape(self) -> Shape:
        return (self.gates * self.units,)

    def weights(self, shape: Shape) -> list[WeightPlan]:
        cell = f"{self.kind}_cell"  # Keras keeps the weights in the layer's cell
        size = self.gates * self.units
        return [
            WeightPlan(
                "kernel", (shape[-1], size), "kernel", "kernel_regularizer", cell
            ),
            WeightPlan(
                "recurrent_kernel",
                (self.units, size),
                "kernel",
                "recurrent_regularizer",
                cell,
            ),
            *bias(self.use_bias, self._bias_shape(), cell),
        ]


@register
class LSTMLayer(_Recurrent):
    """Long short-term memory over (timesteps, features)."""

    keras_class: ClassVar[str] = "LSTM"
    gates: ClassVar[int] = 4
    type: Literal["lstm"]


@register
class GRULayer(_Recurrent):
    """Gated recurrent unit over (timesteps, features)."""

    keras_class: ClassVar[str] = "GRU"
    gates: ClassVar[int] = 3
    type: Literal["gru"]

    def _bias_shape(self) -> Shape:
        return (2, self.gates * self.units)  # reset_after=True keeps two biases


@register
class SimpleRNNLayer(_Recurrent):
    """A fully connected recurrent layer over (timesteps, features)."""

    keras_class: ClassVar[str] = "SimpleRNN"
    gates: ClassVar[int] = 1
    type: Literal["simple_rnn"]
