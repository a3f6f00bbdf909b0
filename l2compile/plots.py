"""The figures of the reports, as PNG bytes (matplotlib, no display needed).

A build's: its confusion matrix (a classifier's) or its predictions against
the true values (a regression's), its training curves per epoch (the loss
split into the data loss and the L2 penalty; each metric on training and
validation data) and the L2 norm of each block of regularized weights.
A sweep's: for each swept field, the task's metric on training and validation
data, the losses and each layer's weight norm against the field's values; for
a two-field grid, a heat map of the validation score. Figures are built with
matplotlib's object API (no pyplot state), so they can be drawn from any
thread.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence
from typing import Any

#: Pixels per inch of the PNG files: 100 keeps a report page light.
DPI = 100


def _figure(panels: int, height: float = 3.4) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.6 * panels, height), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    return figure, list(axes)


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


# --- a build ----------------------------------------------------------------------


def training_curves(metrics: dict[str, Any], metric_names: Sequence[str]) -> bytes:
    """Loss (data loss and penalty) and each metric per epoch."""
    history: dict[str, list[float]] = metrics.get("history", {})
    split: dict[str, list[float]] = metrics.get("history_split", {})
    figure, (losses, scores) = _figure(2)
    epochs = list(range(1, len(history.get("loss", [])) + 1))
    for key, label, style in (
        ("data_loss", "training data loss", "-"),
        ("val_data_loss", "validation data loss", "--"),
        ("l2_penalty", "L2 penalty", ":"),
    ):
        if split.get(key):
            losses.plot(epochs, split[key], style, marker="o", label=label)
    losses.set(title="Loss: data loss and L2 penalty", xlabel="epoch")
    for name in metric_names:
        for key, style in ((name, "-"), (f"val_{name}", "--")):
            if history.get(key):
                label = (
                    "validation " if key.startswith("val_") else "training "
                ) + name
                scores.plot(epochs, history[key], style, marker="o", label=label)
    scores.set(title="Metrics", xlabel="epoch")
    for axes in (losses, scores):
        axes.legend(fontsize="small")
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    return _png(figure)


#: The most bars the weight-norm chart shows (the largest norms).
MAX_BARS = 60


def weight_norms(
    norms: dict[str, float],
    *,
    most: int = MAX_BARS,
    what: str = "each kernel and regularized weight",
) -> bytes:
    """A bar per entry of `norms` (a kernel and regularized weight, or a block
    of them): its L2 norm after training (the `most` largest, for more)."""
    figure, axes, shown = _bars(norms, most)
    title = f"L2 norm of {what}"
    if shown < len(norms):
        title += f" (the {shown} largest of {len(norms)})"
    axes.set_xlabel("‖w‖₂")
    _title(figure, title)
    return _png(figure)


def _bars(
    values: dict[str, float], most: int, marked: frozenset[str] = frozenset()
) -> tuple[Any, Any, int]:
    """A horizontal bar per entry of `values`, the `most` largest, top
    down; `marked` entries in another colour. The figure, its axes and how
    many bars it shows."""
    names = list(values)
    if len(names) > most:
        names = sorted(names, key=lambda n: -values[n])[:most]
    figure, (axes,) = _figure(1, height=max(1.8, 0.6 + 0.28 * len(names)))
    colours = ["#dd8452" if n in marked else "#4c72b0" for n in names]
    axes.barh(range(len(names)), [values[n] for n in names], color=colours)
    axes.set_yticks(range(len(names)), [_short(n, 40) for n in names], fontsize="small")
    axes.invert_yaxis()
    axes.grid(axis="x", alpha=0.3)
    return figure, axes, len(names)


#: A uniform rounding error, in quantization steps: 1/sqrt(12).
ROUNDING_ERROR = 1 / math.sqrt(12)


def quantization_errors(
    errors: Sequence[dict[str, Any]], kept: Sequence[str], *, most: int = MAX_BARS
) -> bytes:
    """A bar per quantized operation of an int8 file (`errors`: layer, op,
    error, as metrics.json lists them): its error in quantization steps,
    the operations `kept` in float (by layer) marked."""
    values = {f"{e['layer']} ({e['op']})": float(e["error"]) for e in errors}
    marked = frozenset(
        f"{e['layer']} ({e['op']})" for e in errors[: len(kept)] if e["layer"] in kept
    )
    figure, axes, shown = _bars(values, most, marked)
    axes.axvline(ROUNDING_ERROR, color="grey", linestyle=":", label="rounding alone")
    axes.set_xlabel("rmse / scale (quantization steps)")
    axes.legend(fontsize="small")
    title = "int8 error of each operation; kept in float: orange"
    if shown < len(values):
        title += f" (the {shown} largest of {len(values)})"
    _title(figure, title)
    return _png(figure)


#: Above this many classes a confusion matrix has no count in its cells,
#: and above CONFUSION_TICKS no class name on its axes: they would overlap.
CONFUSION_TEXT = 20
CONFUSION_TICKS = 40


def confusion(labels: Sequence[str], counts: Sequence[Sequence[int]]) -> bytes:
    """The test split's confusion matrix (rows: true class, columns: the
    predicted one), each cell shaded by its share of its true class."""
    from matplotlib.figure import Figure

    n = len(labels)
    shares = [[c / max(sum(row), 1) for c in row] for row in counts]
    side = min(3.2 + 0.3 * n, 7.5)  # inches: 1,000 classes stay drawable
    figure = Figure(figsize=(side + 1.2, side), layout="constrained")
    axes = figure.subplots()
    shown = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="equal")
    if n <= CONFUSION_TICKS:
        names = [_short(label, 18) for label in labels]
        axes.set_xticks(range(n), names, rotation=90, parse_math=False)
        axes.set_yticks(range(n), names, parse_math=False)
        axes.tick_params(labelsize="small" if n > 10 else "medium")
    else:
        axes.set_xticks([])
        axes.set_yticks([])
    if n <= CONFUSION_TEXT:
        for i, row in enumerate(counts):
            for j, count in enumerate(row):
                color = "white" if shares[i][j] > 0.5 else "black"
                size = 9 if n <= 10 else 7
                axes.text(
                    j, i, f"{count:,}", ha="center", va="center", color=color, size=size
                )
    axes.set(xlabel="predicted class", ylabel="true class")
    figure.colorbar(shown, ax=axes, label="share of the true class", shrink=0.8)
    _title(figure, f"Confusion matrix on the test split ({n} classes)")
    return _png(figure)


#: The most targets the residual figure draws, a panel each.
MAX_TARGETS = 4


def residuals(found: dict[str, dict[str, Sequence[float]]]) -> bytes:
    """Per target (the first MAX_TARGETS), each test sample's prediction
    against its true value, with the diagonal where they would agree."""
    from matplotlib.figure import Figure

    targets = list(found)[:MAX_TARGETS]
    columns = min(len(targets), 2) or 1
    rows = math.ceil(len(targets) / columns) or 1
    figure = Figure(figsize=(4.6 * columns, 3.8 * rows), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    for index, axes in enumerate(grid.flat):
        if index >= len(targets):
            axes.set_visible(False)
            continue
        target = targets[index]
        pairs = [
            (float(t), float(p))
            for t, p in zip(
                found[target].get("true", ()),
                found[target].get("predicted", ()),
                strict=False,
            )
            if math.isfinite(t) and math.isfinite(p)
        ]
        if pairs:
            true, predicted = zip(*pairs, strict=True)
            axes.scatter(true, predicted, s=8, alpha=0.5, color="#4c72b0")
            low, high = min(*true, *predicted), max(*true, *predicted)
            axes.plot([low, high], [low, high], "--", color="#c44e52", label="y = x")
            axes.legend(fontsize="small")
        axes.set(xlabel="true", ylabel="predicted")
        axes.set_title(
            _wrap(f"{_short(target, 30)}: {len(pairs):,} test samples", 40),
            parse_math=False,
        )
        axes.grid(alpha=0.3)
    title = "Predicted against true values on the test split"
    if len(found) > len(targets):
        title += f" (the first {len(targets)} of {len(found)} targets)"
    _title(figure, title)
    return _png(figure)


def _short(text: str, most: int) -> str:
    """`text`, cut to `most` characters with an ellipsis."""
    return text if len(text) <= most else text[: most - 1] + "…"


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


def _title(figure: Any, text: str) -> None:
    """A figure's title, wrapped to its width (constrained layout makes room
    for its lines, but not for a line wider than the figure)."""
    # About 11 characters an inch at 12 points; 10 leaves a margin.
    width = max(int(figure.get_figwidth() * 10), 20)
    figure.suptitle(_wrap(text, width), parse_math=False)


# --- a sweep ----------------------------------------------------------------------


def _numbers(values: Sequence[Any]) -> list[float] | None:
    """The values as numbers, if every one is (true and false are not)."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values]
    return None


def _x_axis(axes: Any, values: Sequence[Any]) -> dict[str, float]:
    """Position each value on `axes`' x axis: log for numbers spanning
    decades (symlog, with 0 shown, where 0 is one of them), linear for
    other numbers, in order for anything else."""
    shown = sorted(set(map(_key, values)), key=lambda k: _order(k, values))
    numbers = _numbers([_value(k, values) for k in shown])
    if numbers is None:
        axes.set_xticks(range(len(shown)), shown)
        return {k: float(i) for i, k in enumerate(shown)}
    positive = [n for n in numbers if n > 0]
    if positive and min(numbers) >= 0 and max(positive) / min(positive) >= 100:
        if min(numbers) == 0:
            axes.set_xscale("symlog", linthresh=min(positive), linscale=0.5)
        else:
            axes.set_xscale("log")
    axes.set_xticks(numbers, [f"{n:g}" for n in numbers])
    axes.minorticks_off()
    return dict(zip(shown, numbers, strict=True))


def _key(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _value(key: str, values: Sequence[Any]) -> Any:
    return next(v for v in values if _key(v) == key)


def _order(key: str, values: Sequence[Any]) -> Any:
    numbers = _numbers(values)
    if numbers is not None:
        return float(_value(key, values))
    return [_key(v) for v in values].index(key)


def _series(
    rows: Sequence[dict[str, Any]], field: str, others: Sequence[str]
) -> list[tuple[str, list[dict[str, Any]]]]:
    """The rows grouped by the other fields' values: one line each."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        label = ", ".join(f"{o}={row.get(o)!r}" for o in others)
        groups.setdefault(label, []).append(row)
    return list(groups.items())


def _lines(
    axes: Any,
    rows: Sequence[dict[str, Any]],
    field: str,
    others: Sequence[str],
    keys: Sequence[tuple[str, str, str]],
) -> None:
    """On `axes`, a line per (series, key) against the field's values."""
    where = _x_axis(axes, [r[field] for r in rows])
    groups = _series(rows, field, others)
    for group, (label, members) in enumerate(groups):
        members = sorted(members, key=lambda r: where[_key(r[field])])
        for line, (key, name, style) in enumerate(keys):
            # A colour per group of the other fields' values, else per line.
            color = f"C{group if len(groups) > 1 else line}"
            points = [
                (where[_key(r[field])], r[key])
                for r in members
                if isinstance(r.get(key), int | float) and math.isfinite(r[key])
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                text = f"{name} ({label})" if label else name
                axes.plot(xs, ys, style, marker="o", color=color, label=text)
    axes.set_xlabel(field)
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="x-small")


def sweep_field(
    rows: Sequence[dict[str, Any]], field: str, others: Sequence[str], metric: str
) -> bytes:
    """The metric, the losses and each layer's weight norm against `field`."""
    rows = [r for r in rows if r.get("status") == "ok"]
    figure, (scores, losses, norms) = _figure(3, height=3.8)
    _lines(
        scores,
        rows,
        field,
        others,
        ((f"train_{metric}", "training", "-"), (f"val_{metric}", "validation", "--")),
    )
    scores.set_title(f"{metric} on training and validation data")
    _lines(
        losses,
        rows,
        field,
        others,
        (
            ("data_loss", "training data loss", "-"),
            ("val_data_loss", "validation data loss", "--"),
            ("l2_penalty", "L2 penalty", ":"),
        ),
    )
    losses.set_title("Loss: data loss and L2 penalty")
    layers = sorted({layer for r in rows for layer in r.get("layer_norms", {})})
    flat = [
        {**r, **{f"norm:{k}": v for k, v in r.get("layer_norms", {}).items()}}
        for r in rows
    ]
    styles = ("-", "--", ":", "-.")
    _lines(
        norms,
        flat,
        field,
        others,
        [(f"norm:{k}", k, styles[i % 4]) for i, k in enumerate(layers)],
    )
    norms.set_title("L2 norm of each layer's weights")
    return _png(figure)


def heat_map(
    rows: Sequence[dict[str, Any]], fields: tuple[str, str], key: str
) -> bytes:
    """`key` (a validation score) over a two-field grid."""
    first, second = fields
    ys = sorted(
        {_key(r[first]) for r in rows},
        key=lambda k: _order(k, [r[first] for r in rows]),
    )
    xs = sorted(
        {_key(r[second]) for r in rows},
        key=lambda k: _order(k, [r[second] for r in rows]),
    )
    grid = [[math.nan] * len(xs) for _ in ys]
    for r in rows:
        value = r.get(key)
        if r.get("status") == "ok" and isinstance(value, int | float):
            grid[ys.index(_key(r[first]))][xs.index(_key(r[second]))] = float(value)
    from matplotlib import colormaps

    figure, (axes,) = _figure(1, height=1.4 + 0.5 * len(ys))
    colors = colormaps["viridis"].with_extremes(bad="#d9d9d9")  # no score: grey
    image = axes.imshow(grid, cmap=colors, aspect="auto")
    axes.set_xticks(range(len(xs)), xs)
    axes.set_yticks(range(len(ys)), ys)
    axes.set(xlabel=second, ylabel=first, title=f"{key} over the grid")
    for i, line in enumerate(grid):
        for j, value in enumerate(line):
            text = "no score" if math.isnan(value) else f"{value:.4f}"
            color = "black" if math.isnan(value) else "white"
            axes.text(j, i, text, ha="center", va="center", color=color, size=9)
    figure.colorbar(image, ax=axes)
    return _png(figure)
