"""Every export format l2compile writes, one format per module.

Named `formats` after the spec's `export.formats`, whose values are their
names (`l2compile.export`, the module, holds the names its callers import).
Importing this package registers them all; `FORMATS` maps each name to its
format (see `l2compile.formats.base` for what a format states). The spec's
`export` field, the planner's checks, the export stage, eval, the report page
and the manifest iterate over `FORMATS` and name none of them.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from l2compile.formats.base import FORMATS, HANDOFF, ExportFormat

if TYPE_CHECKING:
    from l2compile.datasets import Dataset
    from l2compile.nodes import ModelPlan

#: The format modules, in the order a spec's default lists them (and error
#: messages name them). Each registers its format as it is imported.
MODULES = ("keras", "saved_model", "tflite", "onnx")
for _module in MODULES:
    importlib.import_module(f"{__name__}.{_module}")

#: Every format's name, in that order.
FORMAT_NAMES: tuple[str, ...] = tuple(FORMATS)
#: What a spec that leaves export.formats out exports.
DEFAULT_FORMATS: tuple[str, ...] = tuple(n for n, f in FORMATS.items() if f.default)

#: The packages whose versions manifest.json records, format by format.
PACKAGES: tuple[str, ...] = tuple(
    dict.fromkeys(p for f in FORMATS.values() for p in f.packages)
)


def chosen(names: Iterable[str]) -> list[ExportFormat]:
    """The formats that `names` (a plan's `export_formats`) lists, in the
    registry's order: the order the export writes them in."""
    wanted = set(names)
    return [f for name, f in FORMATS.items() if name in wanted]


def artifacts() -> str:
    """What eval scores, in words: "a .keras file, ... or a .tflite file"."""
    named = [f.artifact for f in FORMATS.values()]
    return ", ".join(named[:-1]) + " or " + named[-1]


def calibration(plan: ModelPlan, dataset: Dataset) -> Dataset:
    """What the export needs of the data: the test split, and as the training
    split only the samples its formats calibrate on (seeded, in their
    order)."""
    import numpy as np

    available = len(dataset.x_train)
    count = max(
        (f.calibration_samples(plan, available) for f in chosen(plan.export_formats)),
        default=0,
    )
    rng = np.random.default_rng(plan.seed)
    pick = np.sort(rng.choice(available, size=count, replace=False))
    return dataclasses.replace(
        dataset, x_train=dataset.x_train[pick], y_train=dataset.y_train[pick]
    )


__all__ = [
    "DEFAULT_FORMATS",
    "FORMATS",
    "FORMAT_NAMES",
    "HANDOFF",
    "MODULES",
    "PACKAGES",
    "ExportFormat",
    "artifacts",
    "calibration",
    "chosen",
]
