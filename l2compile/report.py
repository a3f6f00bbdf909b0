"""`l2compile inspect`: every weight of a plan, its shape and its regularization."""

from __future__ import annotations

from typing import Any

from l2compile.plan import ModelPlan, shape_text


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
            "trainable": w.role != "statistic",
            "l2": w.l2,
            "weight_decay": w.weight_decay,
        }
        for layer in plan.layers
        for w in layer.weights
    ]


def as_data(plan: ModelPlan) -> dict[str, Any]:
    """The inspect report as data."""
    return {
        "name": plan.name,
        "weights": weights(plan),
        "totals": {
            "params": plan.params,
            "regularized_params": plan.regularized_params,
            "weight_decay_params": plan.decayed_params,
        },
    }


def _number(value: float) -> str:
    return "-" if value == 0 else repr(value)


def as_table(plan: ModelPlan) -> str:
    """The inspect report as an aligned text table."""
    rows = [("layer", "weight", "shape", "params", "l2", "weight decay")]
    for record in weights(plan):
        rows.append(
            (
                record["layer"],
                record["weight"] + ("" if record["trainable"] else " (not trained)"),
                shape_text(tuple(record["shape"])),
                f"{record['params']:,}",
                _number(record["l2"]),
                _number(record["weight_decay"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    numeric = {3}
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
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
