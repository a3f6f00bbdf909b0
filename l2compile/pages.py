"""report.html: one self-contained page for a build, and one for a sweep.

The page is rendered through templates/report.html.jinja with autoescaping,
so the spec's text and names (a user's, possibly hostile) are shown, never
run. Its images are inline PNG (l2compile.plots) and its Content Security
Policy lets it load nothing else: it reads the same offline, mailed, or
checked in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from l2compile import __version__, plots
from l2compile import report as inspect
from l2compile.formats import FORMATS
from l2compile.layers.base import shape_text
from l2compile.nodes import ModelPlan
from l2compile.sections import (
    Callout,
    Cell,
    Details,
    Image,
    Row,
    Section,
    Table,
    image,
    number,
    table,
)

NAME = "report.html"


def render(title: str, lead: str, sections: Sequence[Section]) -> str:
    from l2compile.render import environment

    env = environment()
    env.autoescape = True
    page = env.get_template("report.html.jinja")
    return page.render(title=title, lead=lead, sections=sections, version=__version__)


def spec_section(source_file: str, text: str, overrides: Sequence[str]) -> Section:
    """The spec as it was read when the command began (never read again), and
    the --set values applied to it."""
    notes = tuple(f"--set {o}" for o in overrides)
    return Section(f"Spec: {source_file}", notes, code=text)


# --- a build ----------------------------------------------------------------------

#: Above this many rows a table shows its first (or worst) rows and folds the
#: rest into a <details>, so that the page stays short for any model size.
MAX_ROWS = 30
#: The per-weight table is folded when it has more rows than this.
OPEN_WEIGHT_ROWS = 36
#: The most blocks the norm chart shows (the largest norms).
MAX_BLOCK_BARS = 30


def build_page(plan: ModelPlan, metrics: dict[str, Any]) -> str:
    """A build's page, read top down: whether the model learned (the scores
    against the trivial baseline) and its TFLite files, both on the first
    screen; then its results per class or target, its training curves, its
    weights by block, and its spec."""
    sections = [_verdict(metrics)]
    for name, exported in FORMATS.items():  # each format's own section
        if metrics.get(name) and (section := exported.report(metrics[name])):
            sections.append(section)
    if results := _results(metrics):
        sections.append(results)
    sections += [
        Section(
            "Training",
            (
                "The training loss is a mean over each epoch's batches; its split "
                "uses the penalty at the epoch's end, so it is approximate. The "
                "validation split is exact.",
            ),
            images=(
                image(
                    plots.training_curves(metrics, plan.task.metric_names),
                    "loss and metrics per epoch",
                ),
            ),
        ),
        _weights(plan, metrics.get("l2_norms", {})),
        spec_section(plan.source_file, plan.spec_text, plan.overrides),
    ]
    lead = (
        f"{plan.description + ' · ' if plan.description else ''}"
        f"{_count(metrics.get('epochs_trained') or 0, 'epoch')} on Keras' "
        f"{plan.backend} backend"
        + (f" (auto: {plan.backend_reason})" if plan.backend_reason else "")
        + f", {plan.params:,} parameters, "
        f"{plan.regularized_params:,} with an L2 penalty"
    )
    return render(f"{plan.name}: build report", lead, sections)


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _verdict(metrics: dict[str, Any]) -> Section:
    """The test and validation scores beside the trivial baseline's, and
    whether the model beat it (metrics.json before baselines has none)."""
    baseline: dict[str, Any] = metrics.get("baseline") or {}
    validation: dict[str, Any] = metrics.get("validation") or {}
    val: dict[str, Any] = validation.get("scores") or {}
    # The baseline's loss is a data loss: set beside the model's data loss,
    # not its loss with the L2 penalty.
    names = [
        "data_loss",
        *(
            k[len("test_") :]
            for k, v in metrics.items()
            if k.startswith("test_") and _is_number(v) and k != "test_loss"
        ),
    ]
    split = metrics.get("test_loss_split") or {}
    model_test = {n: metrics.get(f"test_{n}") for n in names[1:]}
    columns: list[tuple[str, dict[str, Any]]] = [
        ("model (test)", {"data_loss": split.get("data_loss"), **model_test})
    ]

    def data_loss(scores: dict[str, Any]) -> dict[str, Any]:
        return {"data_loss": scores.get("loss"), **scores}

    if baseline:
        columns.append(("baseline (test)", data_loss(baseline.get("test") or {})))
    if val:
        columns.append(("model (val)", {"data_loss": _val_data_loss(metrics), **val}))
    if baseline:
        columns.append(("baseline (val)", data_loss(baseline.get("val") or {})))
    rows = [
        (Cell(n.replace("_", " ")), *(scores.get(n) for _, scores in columns))
        for n in names
    ]
    notes = []
    if baseline.get("predicts"):
        notes.append(f"The baseline predicts {baseline['predicts']}.")
    if validation:
        data, samples = validation.get("data", "?"), validation.get("samples")
        notes.append(f"Validated on {data} ({samples} samples).")
    if split:
        notes.append(
            "Test loss: "
            + ", ".join(
                f"{k.replace('_', ' ').replace('l2', 'L2')} {number(v).text}"
                for k, v in split.items()
            )
            + "."
        )
    return Section(
        "Scores",
        tuple(notes),
        tables=(table(("score", *(c for c, _ in columns)), rows),),
        anchor="verdict",
        callout=_learned(metrics),
    )


def _val_data_loss(metrics: dict[str, Any]) -> Any:
    """The validation data loss at the epoch whose weights the model kept."""
    series = (metrics.get("history_split") or {}).get("val_data_loss") or []
    kept = (metrics.get("early_stopping") or {}).get("weights_of_epoch")
    kept = kept or len(series)
    return series[kept - 1] if 0 < kept <= len(series) else None


def _learned(metrics: dict[str, Any]) -> Callout:
    if "learned" not in metrics:
        return Callout("Learned: not measured (metrics.json has no baseline).")
    learning: dict[str, Any] = metrics.get("learning") or {}
    verdict = str(learning.get("comparison") or "")
    if metrics["learned"] is None:
        return Callout("Learned: not judged" + (f" ({verdict})" if verdict else ""))
    if metrics["learned"]:
        return Callout("Learned: yes" + (f": {verdict}" if verdict else ""))
    return Callout(
        "The model did not learn" + (f": {verdict}" if verdict else ""), warning=True
    )


def _results(metrics: dict[str, Any]) -> Section | None:
    """Per class (a classifier's) or per target (a regression's)."""
    if metrics.get("test_per_class") or metrics.get("test_confusion"):
        return _per_class(
            metrics.get("test_per_class") or {}, metrics.get("test_confusion") or {}
        )
    if metrics.get("test_per_target") or metrics.get("test_residuals"):
        return _per_target(
            metrics.get("test_per_target") or {}, metrics.get("test_residuals") or {}
        )
    return None


def _per_class(per_class: dict[str, Any], confusion: dict[str, Any]) -> Section:
    header = ("class", "precision", "recall", "f1", "support")
    rows = [
        (Cell(str(name)), *(s.get(k) for k in header[1:]))
        for name, s in per_class.items()
    ]
    notes: list[str] = []
    tables: list[Table] = []
    details: list[Details] = []
    if len(rows) > MAX_ROWS:
        notes.append(
            f"The {MAX_ROWS} classes of {len(rows):,} with the lowest recall; "
            "every class is in the table folded below."
        )
        worst = sorted(rows, key=lambda r: _sort_key(r[2]))[:MAX_ROWS]
        tables.append(table(header, worst))
        details.append(Details(f"All {len(rows):,} classes", (table(header, rows),)))
    elif rows:
        tables.append(table(header, rows))
    images: tuple[Image, ...] = ()
    labels = [str(label) for label in confusion.get("labels", ())]
    counts = confusion.get("counts") or []
    if confusion.get("per_label"):
        cells = [
            (Cell(label), *(c for pair in matrix for c in pair))
            for label, matrix in zip(labels, counts, strict=False)
        ]
        found = table(("label", "tn", "fp", "fn", "tp"), cells)
        summary = "Each label's counts on the test split"
        details.append(Details(summary, (found,), open=len(cells) <= MAX_ROWS))
    elif labels and len(counts) == len(labels):
        images = (
            image(plots.confusion(labels, counts), "confusion matrix, test split"),
        )
    return Section(
        "Results per class",
        tuple(notes),
        images=images,
        tables=tuple(tables),
        anchor="per-class",
        details=tuple(details),
    )


def _sort_key(value: Any) -> float:
    return float(value) if _is_number(value) else math.inf


def _per_target(per_target: dict[str, Any], found: dict[str, Any]) -> Section:
    header = ("target", "mae", "rmse")
    rows = [
        (Cell(str(name)), *(s.get(k) for k in header[1:]))
        for name, s in per_target.items()
    ]
    tables = (table(header, rows[:MAX_ROWS]),) if rows else ()
    details = (
        (Details(f"All {len(rows):,} targets", (table(header, rows),)),)
        if len(rows) > MAX_ROWS
        else ()
    )
    images = (
        (image(plots.residuals(found), "predicted against true values, test split"),)
        if found
        else ()
    )
    return Section(
        "Results per target",
        images=images,
        tables=tables,
        anchor="per-target",
        details=details,
    )


def _blocks(names: Sequence[str]) -> dict[str, str]:
    """The block each of a backbone's layers belongs to, by its name:
    `expanded_conv_3` for `expanded_conv_3_depthwise_bn`, `expanded_conv` for
    `expanded_conv_project` (before the numbered blocks), `block6a` for
    `block6a_se_reduce`, `stem` for `stem_conv` and `stem_bn`."""
    numbers: dict[str, set[str]] = {}
    for name in names:
        tokens = name.split("_")
        for i, token in enumerate(tokens[1:], start=1):
            if token.isdigit():
                stem = "_".join(tokens[:i])
                if not any(c.isdigit() for c in stem):
                    numbers.setdefault(stem, set()).add(token)
                break
    # A prefix that numbers several blocks (`expanded_conv` of
    # `expanded_conv_1`, `expanded_conv_2`, ...), longest first.
    stems = sorted((s for s, n in numbers.items() if len(n) > 1), key=len, reverse=True)
    found: dict[str, str] = {}
    rest: dict[str, list[list[str]]] = {}
    for name in names:
        tokens = name.split("_")
        numbered = next((s for s in stems if name.startswith(s + "_")), None)
        digit = next(
            (i for i, t in enumerate(tokens) if any(c.isdigit() for c in t)), None
        )
        if numbered is not None:
            after = name[len(numbered) + 1 :].split("_")[0]
            found[name] = f"{numbered}_{after}" if after.isdigit() else numbered
        elif digit is not None:
            found[name] = "_".join(tokens[: digit + 1])
        else:  # unnumbered: with the others of its first word
            rest.setdefault(tokens[0], []).append(tokens)
    for group in rest.values():
        shared = group[0]
        for tokens in group[1:]:
            while tokens[: len(shared)] != shared:
                shared = shared[:-1]
        for tokens in group:
            found["_".join(tokens)] = "_".join(shared)
    return found


def weight_blocks(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """l2compile.report's weight records by block, in layer order: a layer
    of the spec is a block; a backbone's weights (`<its layer>/<weight>`)
    are grouped by the backbone's blocks."""
    inner: dict[str, list[str]] = {}
    for r in records:
        if "/" in r["weight"]:
            inner.setdefault(r["layer"], []).append(r["weight"].split("/")[0])
    found = {layer: _blocks(names) for layer, names in inner.items()}
    blocks: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        key = r["layer"]
        if "/" in r["weight"]:
            key += "/" + found[key][r["weight"].split("/")[0]]
        blocks.setdefault(key, []).append(r)
    return blocks


def _coefficients(records: Sequence[dict[str, Any]], key: str) -> Cell:
    found = sorted({r[key] for r in records if r[key]})
    return Cell(", ".join(f"{c:g}" for c in found) or "-", number=bool(found))


def _weights(plan: ModelPlan, norms: dict[str, float]) -> Section:
    records = inspect.weights(plan)
    summary, block_norms = _block_table(records, norms)
    every = _every_weight(records, norms)
    total = max(plan.params, 1)
    notes = (
        f"{plan.regularized_params:,} of {plan.params:,} parameters "
        f"({plan.regularized_params / total:.1%}) carry an L2 penalty. A block's "
        "norm is the square root of the sum of its kernels' and regularized "
        "weights' squares at the end of training.",
    )
    details = [
        Details(
            f"Every weight ({len(records):,})",
            (every,),
            open=len(records) <= OPEN_WEIGHT_ROWS,
        )
    ]
    tables: tuple[Table, ...] = (summary,)
    if len(summary.rows) > MAX_ROWS:  # folded too, as a last resort
        details.insert(0, Details(f"Every block ({len(summary.rows):,})", tables))
        tables = ()
    images = (
        (
            image(
                plots.weight_norms(
                    block_norms, most=MAX_BLOCK_BARS, what="each block's weights"
                ),
                "L2 norm of each block's weights",
            ),
        )
        if block_norms
        else ()
    )
    return Section(
        "Weights and their L2",
        notes,
        images,
        tables,
        anchor="weights",
        details=tuple(details),
    )


def _block_table(
    records: list[dict[str, Any]], norms: dict[str, float]
) -> tuple[Table, dict[str, float]]:
    """One row per block of weights (weight_blocks), and each block's norm."""
    decay = any(r["weight_decay"] for r in records)
    block_norms: dict[str, float] = {}
    summary = []
    for name, members in weight_blocks(records).items():
        normed = [norms[r["path"]] for r in members if r["path"] in norms]
        if normed:
            block_norms[name] = math.sqrt(sum(n * n for n in normed))
        summary.append(
            (
                Cell(name),
                len(members),
                sum(r["params"] for r in members),
                sum(r["params"] for r in members if r["trainable"]),
                _coefficients(members, "l2"),
                *((_coefficients(members, "weight_decay"),) if decay else ()),
                block_norms.get(name),
            )
        )
    header = (
        "block",
        "weights",
        "params",
        "trained",
        "l2",
        *(("weight decay",) if decay else ()),
        "‖w‖₂",
    )
    return table(header, summary), block_norms


def _every_weight(records: list[dict[str, Any]], norms: dict[str, float]) -> Table:
    """One row per weight: its shape, coefficients and norm."""
    rows = [
        (
            Cell(w["layer"]),
            Cell(w["weight"] + inspect.untrained(w)),
            Cell(shape_text(tuple(w["shape"]))),
            w["params"],
            w["l2"] or None,
            w["weight_decay"] or None,
            norms.get(w["path"]),
        )
        for w in records
    ]
    return table(
        ("layer", "weight", "shape", "params", "l2", "weight decay", "‖w‖₂"), rows
    )


# --- a sweep ----------------------------------------------------------------------


def sweep_figures(results: dict[str, Any]) -> dict[str, bytes]:
    """One figure per swept field; a heat map for a two-field grid."""
    rows, fields = results["trials"], results["fields"]
    # The task's metric (training and validation); a sweep may choose by
    # another validation score (--choose).
    metric = results.get("metric") or results["chosen_by"][len("val_") :]
    found = {}
    for name in fields:
        others = [f for f in fields if f != name]
        found[_file_name(name)] = plots.sweep_field(rows, name, others, metric)
    if len(fields) == 2:
        found["heat_map"] = plots.heat_map(
            rows, (fields[0], fields[1]), results["chosen_by"]
        )
    return found


def _file_name(field: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in field)


def sweep_page(
    results: dict[str, Any], figures: dict[str, bytes], spec_text: str
) -> str:
    """A sweep's page: the best trial, every trial's row, and the plots."""
    key, fields = results["chosen_by"], results["fields"]
    # The task's metric on each split, and the score that chooses (--choose)
    # where it is another.
    metric = results.get("metric") or key[len("val_") :]
    chosen = [] if key == f"val_{metric}" else [key]
    columns = [
        "trial",
        *fields,
        "status",
        *chosen,
        f"val_{metric}",
        f"train_{metric}",
        "gap",
        f"test_{metric}",
        "learned",
        "test_loss",
        "data_loss",
        "l2_penalty",
        "seconds",
        "peak_memory_mb",
    ]
    rows = tuple(
        Row(
            tuple(
                Cell(str(r.get(c)))
                if c in ("trial", "status", "learned") or c in fields
                else number(r.get(c))
                for c in columns
            ),
            best=r["trial"] == results["best"],
        )
        for r in results["trials"]
    )
    notes = [
        (
            f"The best trial ({results['best']}) is chosen by {key}"
            if results["best"] is not None
            else f"No trial has a {key} to choose by"
        )
        + ", on data the trials validated on and did not train on. The test "
        "split is reported "
        "beside it, never chosen on: a choice made on the test split would make "
        "its score an optimistic estimate.",
        "gap: the task's metric on the training data minus on the validation data, "
        "at the epoch whose weights each trial kept.",
        *results.get("notes", []),
    ]
    sections = [
        Section("Trials", tuple(notes), tables=(Table(tuple(columns), rows),)),
        Section(
            "Plots",
            images=tuple(image(png, name) for name, png in figures.items()),
        ),
        spec_section(results["spec"], spec_text, [f"{f}=..." for f in fields]),
    ]
    lead = f"{len(results['trials'])} trials over {', '.join(fields)}"
    return render("Sweep report", lead, sections)
