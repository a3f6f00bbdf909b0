"""Normalization: batch and layer normalization, with learned gamma and beta."""

from __future__ import annotations

from typing import ClassVar, Literal

from l2compile.fields import Epsilon, Rate
from l2compile.layers.base import Shape, WeightedSpec, WeightPlan, py_float, register


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
