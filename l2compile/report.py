"""`l2compile inspect`: every weight of a plan, its shape and its regularization."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from l2compile.layers.base import shape_text
from l2compile.nodes import ModelPlan


def weights(plan: ModelPlan) -> list[dict[str, Any]]:
    """One record per weight, in layer order, as `inspect --json` prints them."""
    return [
        {
            "layer": layer.name,
            "type": layer.type,
            "weight": w.name,
            "path": plan.weight_path(layer, w),
            "shape": list(w.shape),
            "params": w.params,
            "role": w.role,
            "trainable": w.role != "statistic" and w.trainable,
            "l2": w.l2,
            "weight_decay": w.weight_decay,
        }
        for layer in plan.layers
        for w in layer.weights
    ]


def untrained(record: dict[str, Any]) -> str:
    """Why a weight is not trained, as the table notes it."""
    if record["trainable"]:
        return ""
    return " (not trained)" if record["role"] == "statistic" else " (frozen)"


def layers(plan: ModelPlan) -> list[dict[str, Any]]:
    """One record per layer, in spec order: what it takes and what it gives."""
    return [
        {
            "name": layer.name,
            "type": layer.type,
            "inputs": list(layer.inputs),
            "output_shape": list(layer.output_shape),
            "params": layer.params,
        }
        for layer in plan.layers
    ]


def as_data(plan: ModelPlan) -> dict[str, Any]:
    """The inspect report as data."""
    return {
        "name": plan.name,
        "model": "sequential" if plan.is_stack else "functional",
        "layers": layers(plan),
        "weights": weights(plan),
        "totals": {
            "params": plan.params,
            "regularized_params": plan.regularized_params,
            "weight_decay_params": plan.decayed_params,
        },
    }


def as_layer_table(plan: ModelPlan) -> str:
    """The layers as an aligned table: the graph as the plan resolved it."""
    rows = [("layer", "type", "inputs", "output shape", "params")]
    for record in layers(plan):
        rows.append(
            (
                record["name"],
                record["type"],
                ", ".join(record["inputs"]),
                shape_text(tuple(record["output_shape"])),
                f"{record['params']:,}",
            )
        )
    kind = "a stack (keras.Sequential)" if plan.is_stack else "a graph (functional)"
    return _aligned(rows, numeric={4}) + f"\n\n{plan.name} is {kind}"


def _aligned(rows: Sequence[tuple[str, ...]], numeric: set[int]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _number(value: float) -> str:
    return "-" if value == 0 else repr(value)


def as_table(plan: ModelPlan) -> str:
    """The inspect report as an aligned text table."""
    rows = [("layer", "weight", "shape", "params", "l2", "weight decay")]
    for record in weights(plan):
        rows.append(
            (
                record["layer"],
                record["weight"] + untrained(record),
                shape_text(tuple(record["shape"])),
                f"{record['params']:,}",
                _number(record["l2"]),
                _number(record["weight_decay"]),
            )
        )
    lines = [_aligned(rows, numeric={3})]
    total = max(plan.params, 1)  # a model of only weightless layers has 0
    lines.append("")
    lines.append(f"parameters:             {plan.params:,}")
    lines.append(
        f"with an L2 penalty:     {plan.regularized_params:,}"
        f" ({plan.regularized_params / total:.1%})"
    )
    if plan.weight_decay:
        lines.append(
            f"with weight decay:      {plan.decayed_params:,}"
            f" ({plan.decayed_params / total:.1%})"
        )
    return "\n".join(lines)
