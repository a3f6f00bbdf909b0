"""Every layer kind l2compile knows, one family per module.

Importing this package registers them all; `KINDS` maps each spec `type` to
its class (see `l2compile.layers.base` for what a kind states).
"""

from __future__ import annotations

# Each module registers its kinds as it is imported.
from l2compile.layers import (
    conv,
    core,
    merge,
    normalization,
    pooling,
    recurrent,
    regularization,
    reshaping,
)
from l2compile.layers.base import KINDS, LayerSpec, MergeSpec, WeightedSpec

_FAMILIES = (
    core,
    conv,
    pooling,
    normalization,
    recurrent,
    regularization,
    reshaping,
    merge,
)

#: Every layer `type`, family by family (the order error messages list them in).
LAYER_TYPES: tuple[str, ...] = tuple(
    name
    for family in _FAMILIES
    for name, kind in KINDS.items()
    if kind.__module__ == family.__name__
)

__all__ = ["KINDS", "LAYER_TYPES", "LayerSpec", "MergeSpec", "WeightedSpec"]
