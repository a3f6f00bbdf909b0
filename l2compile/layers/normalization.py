"""Normalization: batch and layer normalization, with learned gamma and beta,
and the normalization of the input by the training data's own statistics."""

from __future__ import annotations

from typing import ClassVar, Literal

from l2compile.fields import Epsilon, Rate
from l2compile.layers.base import (
    LayerSpec,
    Shape,
    WeightedSpec,
    WeightPlan,
    py_float,
    register,
)


class _Normalization(WeightedSpec):
    epsilon: Epsilon = 0.001

    def arguments(self) -> list[str]:
        return [f"epsilon={py_float(self.epsilon)}"] if self.epsilon != 0.001 else []

    def weights(self, shape: Shape) -> list[WeightPlan]:
        size = (shape[-1],)
        return [
            WeightPlan("gamma", size, "norm", "gamma_regularizer"),
            WeightPlan("beta", size, "norm", "beta_regularizer"),
        ]


@register
class BatchNormalizationLayer(_Normalization):
    """Normalizes over the batch; gamma and beta are learned."""

    keras_class: ClassVar[str] = "BatchNormalization"
    type: Literal["batch_normalization"]
    momentum: Rate = 0.99

    def arguments(self) -> list[str]:
        momentum = (
            [f"momentum={py_float(self.momentum)}"] if self.momentum != 0.99 else []
        )
        return [*momentum, *super().arguments()]

    def trains_batch_norm(self) -> bool:
        return True

    def weights(self, shape: Shape) -> list[WeightPlan]:
        size = (shape[-1],)
        return [
            *super().weights(shape),
            WeightPlan("moving_mean", size, "statistic"),
            WeightPlan("moving_variance", size, "statistic"),
        ]


@register
class LayerNormalizationLayer(_Normalization):
    """Normalizes over the last axis of each sample; gamma and beta are learned."""

    keras_class: ClassVar[str] = "LayerNormalization"
    type: Literal["layer_normalization"]


@register
class NormalizationLayer(LayerSpec):
    """Standardizes each feature (the last axis) of the model's input with the
    mean and variance of the training split, learned by Keras' `adapt` before
    training: they become weights of the model, so every exported file takes
    raw features."""

    keras_class: ClassVar[str] = "Normalization"
    type: Literal["normalization"]
    adapted: ClassVar[bool] = True
    # Measured with tf2onnx 1.17 and ONNX Runtime 1.32.
    onnx_refused: ClassVar[dict[str, str]] = {
        "tensorflow": "tf2onnx leaves its mean and variance as graph inputs "
        "that nothing feeds"
    }
    # Measured on the breast-cancer example: its int8 file scored 0.63 where
    # the Keras model scored 0.99.
    tflite_int8_refused: ClassVar[str | None] = (
        "full-integer quantization gives the raw input one scale for all its "
        "features, before the normalization sees them, so features of a small "
        "range round to a few values"
    )

    def weights(self, shape: Shape) -> list[WeightPlan]:
        size = (shape[-1],)
        return [
            WeightPlan("mean", size, "statistic"),
            WeightPlan("variance", size, "statistic"),
            WeightPlan("count", (), "statistic"),
        ]
