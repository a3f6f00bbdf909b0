"""report.html: one self-contained page for a build, and one for a sweep.

The page is rendered through templates/report.html.jinja with autoescaping,
so the spec's text and names (a user's, possibly hostile) are shown, never
run. Its images are inline PNG (l2compile.plots) and its Content Security
Policy lets it load nothing else: it reads the same offline, mailed, or
checked in.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l2compile import __version__, plots
from l2compile import report as inspect
from l2compile.plan import ModelPlan, shape_text

NAME = "report.html"


@dataclass(frozen=True)
class Cell:
    text: str
    number: bool = False


@dataclass(frozen=True)
class Row:
    cells: tuple[Cell, ...]
    best: bool = False


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class Image:
    data: str  #: base64 PNG
    alt: str
    width: int
    height: int


@dataclass(frozen=True)
class Section:
    title: str
    notes: tuple[str, ...] = ()
    images: tuple[Image, ...] = ()
    tables: tuple[Table, ...] = ()
    code: str = ""


def image(png: bytes, alt: str) -> Image:
    """An inline image, with its size from the PNG header."""
    width, height = struct.unpack(">II", png[16:24])
    return Image(base64.b64encode(png).decode("ascii"), alt, width, height)


def number(value: Any) -> Cell:
    """A number as a table shows it: 4 significant digits, - for none."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return Cell("-" if value is None else str(value))
    if isinstance(value, int):
        return Cell(f"{value:,}", number=True)
    if not math.isfinite(value):
        return Cell(str(value), number=True)
    return Cell(f"{value:.4g}", number=True)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    return Table(
        tuple(header),
        tuple(
            Row(tuple(c if isinstance(c, Cell) else number(c) for c in row))
            for row in rows
        ),
    )


def render(title: str, lead: str, sections: Sequence[Section]) -> str:
    from l2compile.render import environment

    env = environment()
    env.autoescape = True
    page = env.get_template("report.html.jinja")
    return page.render(title=title, lead=lead, sections=sections, version=__version__)


def spec_section(source_file: str, sha256: str, overrides: Sequence[str]) -> Section:
    """The spec as written, and the --set values applied to it."""
    notes = [f"--set {o}" for o in overrides]
    try:
        raw = Path(source_file).read_bytes()
    except OSError as exc:
        return Section("Spec", (f"{source_file}: cannot read: {exc.strerror}", *notes))
    if hashlib.sha256(raw).hexdigest() != sha256:
        notes.insert(0, f"{source_file} has changed since; this is the file now")
    text = raw.decode("utf-8", errors="replace")
    return Section(f"Spec: {source_file}", tuple(notes), code=text)


# --- a build ----------------------------------------------------------------------


def build_page(plan: ModelPlan, metrics: dict[str, Any]) -> str:
    """A build's page: scores, curves, weights, TFLite files and spec."""
    norms: dict[str, float] = metrics.get("l2_norms", {})
    sections = [
        _scores(metrics),
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
        _weights(plan, norms),
    ]
    if metrics.get("tflite"):
        sections.append(_tflite(metrics["tflite"]))
    sections.append(spec_section(plan.source_file, plan.spec_sha256, plan.overrides))
    lead = (
        f"{plan.description + ' · ' if plan.description else ''}"
        f"{_count(metrics.get('epochs_trained') or 0, 'epoch')} on Keras' "
        f"{plan.backend} backend, "
        f"{plan.params:,} parameters, {plan.regularized_params:,} with an L2 penalty"
    )
    return render(f"{plan.name}: build report", lead, sections)


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _scores(metrics: dict[str, Any]) -> Section:
    rows = [(k[len("test_") :], v) for k, v in metrics.items() if k.startswith("test_")]
    rows = [r for r in rows if not isinstance(r[1], dict)]
    split = metrics.get("test_loss_split", {})
    rows += [(f"loss: {k.replace('_', ' ')}", v) for k, v in split.items()]
    validation = metrics.get("validation", {})
    tables = [table(("test split", "score"), rows)]
    if validation.get("scores"):
        tables.append(
            table(("validation", "score"), list(validation["scores"].items()))
        )
    data, samples = validation.get("data", "?"), validation.get("samples")
    note = f"Validated on {data} ({samples} samples)."
    return Section("Scores", (note,), tables=tuple(tables))


def _weights(plan: ModelPlan, norms: dict[str, float]) -> Section:
    rows = []
    for w in inspect.weights(plan):
        rows.append(
            (
                Cell(w["layer"]),
                Cell(w["weight"] + inspect.untrained(w)),
                Cell(shape_text(tuple(w["shape"]))),
                w["params"],
                w["l2"] or None,
                w["weight_decay"] or None,
                norms.get(w["path"]),
            )
        )
    total = max(plan.params, 1)
    notes = (
        f"{plan.regularized_params:,} of {plan.params:,} parameters "
        f"({plan.regularized_params / total:.1%}) carry an L2 penalty; the norm is "
        "each kernel's and regularized weight's at the end of training.",
    )
    # Variable paths start with the model's name; the chart leaves it out.
    scope = f"{plan.variable_scope}/" if plan.variable_scope else ""
    shown = {k.removeprefix(scope): v for k, v in norms.items()}
    images = (
        (image(plots.weight_norms(shown), "L2 norm of each weight"),) if norms else ()
    )
    return Section(
        "Weights and their L2",
        notes,
        images,
        (
            table(
                ("layer", "weight", "shape", "params", "l2", "weight decay", "‖w‖₂"),
                rows,
            ),
        ),
    )


def _tflite(found: dict[str, Any]) -> Section:
    files: dict[str, dict[str, Any]] = found.get("files", {})
    columns: list[str] = []
    for entry in files.values():
        columns += [
            k for k in entry if k not in columns and k not in ("file", "metadata")
        ]
    rows = [
        (Cell(mode), Cell(str(entry.get("file", ""))), *(entry.get(c) for c in columns))
        for mode, entry in files.items()
    ]
    notes = tuple(
        f"{k.replace('_', ' ')}: {v:.4g}"
        for k, v in found.items()
        if isinstance(v, float)
    )
    return Section(
        "TFLite files",
        notes,
        tables=(
            table(
                ("quantization", "file", *[c.replace("_", " ") for c in columns]), rows
            ),
        ),
    )


# --- a sweep ----------------------------------------------------------------------


def sweep_figures(results: dict[str, Any]) -> dict[str, bytes]:
    """One figure per swept field; a heat map for a two-field grid."""
    rows, fields = results["trials"], results["fields"]
    metric = results["chosen_by"][len("val_") :]
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


def sweep_page(results: dict[str, Any], figures: dict[str, bytes], sha256: str) -> str:
    """A sweep's page: the best trial, every trial's row, and the plots."""
    key, fields = results["chosen_by"], results["fields"]
    columns = [
        "trial",
        *fields,
        "status",
        key,
        f"train_{key[4:]}",
        "gap",
        f"test_{key[4:]}",
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
                if c in ("trial", "status") or c in fields
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
        spec_section(results["spec"], sha256, [f"{f}=..." for f in fields]),
    ]
    lead = f"{len(results['trials'])} trials over {', '.join(fields)}"
    return render("Sweep report", lead, sections)
