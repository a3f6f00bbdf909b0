"""Every layer kind l2compile knows, one family per module.

Importing this package registers them all; `KINDS` maps each spec `type` to
its class (see `l2compile.layers.base` for what a kind states).
"""

from __future__ import annotations

import importlib

from l2compile.layers.base import KINDS, LayerSpec, MergeSpec, WeightedSpec

#: The family modules, in the order error messages list their kinds. Each
#: registers its kinds as it is imported.
FAMILIES = (
    "core",
    "conv",
    "pooling",
    "normalization",
    "recurrent",
    "regularization",
    "augmentation",
    "reshaping",
    "merge",
    "backbone",
)
for _family in FAMILIES:
    importlib.import_module(f"{__name__}.{_family}")

#: Every layer `type`, family by family.
LAYER_TYPES: tuple[str, ...] = tuple(
    name
    for family in FAMILIES
    for name, kind in KINDS.items()
    if kind.__module__ == f"{__name__}.{family}"
)

__all__ = ["FAMILIES", "KINDS", "LAYER_TYPES", "LayerSpec", "MergeSpec", "WeightedSpec"]
