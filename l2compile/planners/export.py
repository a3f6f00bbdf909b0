"""The export planner: the formats the spec exports, checked and planned."""

from __future__ import annotations

from typing import Any

from l2compile.formats import FORMATS, chosen
from l2compile.nodes import (
    LayerPlan,
)
from l2compile.planners.context import Planner


class ExportPlanner(Planner):
    """The export formats: each checks the model against its options and
    plans them (l2compile.formats)."""

    def check_exports(self, layers: list[LayerPlan]) -> None:
        """What each export format cannot make of the spec, before any
        training (TFLite's converter refuses some layers)."""
        for exported in FORMATS.values():
            exported.check(self.spec.export, layers, self.error)

    def plans(self, layers: list[LayerPlan]) -> dict[str, Any]:
        """What each chosen format plans of its options, by name."""
        spec = self.spec
        return {
            f.name: f.plan(spec.export, layers) for f in chosen(spec.export.formats)
        }
