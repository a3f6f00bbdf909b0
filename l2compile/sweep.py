"""`l2compile sweep`: a grid of `--set` values, one build per trial, and the
results side by side.

A sweep is planned before anything runs: every trial's spec (the spec with the
trial's values, its own seed, and export off unless asked) is compiled here,
so that a bad value is reported, at its `--set`, before any trial trains. Each
trial is then an ordinary `l2compile build --set ...` of that spec into
`DIR/trials/<id>/`, run by an engine (l2compile.engines: processes on this
machine, or Ray Tune trials on a cluster); this module reads what each build
published (its metrics.json) into one row, and chooses the best trial by its
validation score, never its test score.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from l2compile import manifest, tracking, workfolder
from l2compile.errors import BuildError, FieldPath, SpecError, format_path
from l2compile.files import NotJson, json_text, read_json, write_atomically
from l2compile.generate import compile_spec
from l2compile.nodes import Tracking
from l2compile.overrides import (
    Override,
    OverrideError,
    at_override,
    check_distinct,
    grid,
    parse,
)
from l2compile.tasks import METRIC_KINDS

Log = Callable[[str], None]

#: The sweep's own record in its folder: what it was, for --resume.
RECORD = "sweep.json"
RESULTS_CSV = "results.csv"
RESULTS_JSON = "results.json"
TRIALS = "trials"
PLOTS = "plots"
#: A spec that validates on the test split is swept with this share of its
#: training split held out instead: a sweep chooses on validation data.
HELD_OUT = 0.1


@dataclass(frozen=True)
class Trial:
    """One point of the grid: its values, its seed, and the build's --set."""

    id: str
    values: tuple[Override, ...]  #: the swept fields, one value each
    seed: int
    sets: tuple[str, ...]  #: every --set its build takes
    split_seed: int = 0  #: seeds its data split (the same in every trial)

    def label(self) -> str:
        return ", ".join(o.text for o in self.values)


@dataclass(frozen=True)
class SweepPlan:
    """A sweep, checked: its trials and how the best one is chosen."""

    spec: Path
    spec_sha256: str
    spec_text: str  #: as read when the sweep began (its page shows it)
    fields: tuple[str, ...]
    trials: tuple[Trial, ...]
    epochs: int | None
    export: bool
    metric: str  #: the task's first metric (its training score and gap)
    higher_is_better: bool  #: of `choose`
    notes: tuple[str, ...]  #: what the sweep changed beyond the --set
    #: The validation score that chooses the best trial (--choose; default:
    #: val_ and the task's first metric).
    choose: str = ""
    save_split: bool = False  #: each trial writes split.json
    #: What the trials track (the spec's train.tracking and sweep --track);
    #: with MLflow, the sweep is a run and each trial a run under it.
    tracking: Tracking = field(default_factory=Tracking)
    base_seed: int = 0  #: the spec's train.seed
    #: Each trial's seed is derived from base_seed (no --set gives it).
    seeded: bool = True
    #: What every trial sets besides its values (l2compile.sweep._extra).
    extra: tuple[Override, ...] = ()

    def record(self) -> dict[str, Any]:
        """What --resume compares: the same spec, values, epochs and export."""
        return {
            "spec": str(self.spec),
            "spec_sha256": self.spec_sha256,
            "trials": {t.id: list(t.sets) for t in self.trials},
            "epochs": self.epochs,
            "export": self.export,
        }


def _set_order(error: SpecError, sets: Sequence[Override]) -> tuple[int, int]:
    """Errors at a --set in the order of the --set options, then the spec's."""
    fields = [f"--set {o.field}=" for o in sets]
    at = next((i for i, f in enumerate(fields) if error.file.startswith(f)), len(sets))
    return at, error.line or 0


def seed_of(base: int, values: Sequence[Override]) -> int:
    """A trial's seed: derived from the spec's seed and the trial's values (by
    field, as parsed), so that it is the same however the --set options are
    ordered or their values written (1e-3 or 0.001), and on --resume."""
    fields = sorted((format_path(o.path), json.dumps(o.values[0])) for o in values)
    text = f"{base}:" + "\n".join(f"{f}={v}" for f, v in fields)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


#: The most trials one sweep may plan.
MAX_TRIALS = 1000
#: The most bytes of a JSON file the sweep reads back from its folder (its
#: sweep.json, a trial's metrics.json or run record): far above a real one.
MAX_JSON_BYTES = 64 * 2**20


def _same(value: Any) -> Any:
    """A value as a sweep compares it: 1e-2 and 0.01 are one value, and so are
    1 and 1.0; true and 1 are not (Python's own == says they are)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return ("number", value)
    if isinstance(value, list):
        return ("list", tuple(_same(v) for v in value))
    if isinstance(value, dict):
        return ("mapping", frozenset((_same(k), _same(v)) for k, v in value.items()))
    return (type(value).__name__, value)


def _duplicates(sets: Sequence[Override]) -> list[SpecError]:
    """A value given twice in one --set, however written (0.01 and 1e-2): it
    would run the same trial, with the same seed, twice."""
    errors = []
    for override in sets:
        first: dict[Any, str] = {}
        for text, value in zip(override.value_texts, override.values, strict=True):
            key = _same(value)
            if key not in first:
                first[key] = text
                continue
            said = first[key]
            twice = (
                f"{text} is given twice"
                if said == text
                else f"{said} and {text} are the same value"
            )
            errors.append(
                SpecError(
                    f"--set {override.text}",
                    None,
                    None,
                    override.path,
                    f"{twice}: a sweep would run the same trial twice; give each "
                    "value once",
                )
            )
    return errors


def _covered(path: FieldPath, sets: Sequence[Override]) -> Override | None:
    """The --set that sets `path` (itself or a field above it), if any."""
    return next((o for o in sets if path[: len(o.path)] == o.path), None)


def _extra(
    plan: Any, sets: Sequence[Override], export: bool
) -> tuple[list[Override], list[str], list[SpecError]]:
    """What the sweep sets in every trial besides the grid's values (a
    held-out share; export off), the notes that say so, and the --set it
    refuses."""
    extra, notes, errors = [], [], []
    if _covered(("train", "split_seed"), sets) is None:
        # The split is the sweep's, not the trial's: every trial trains,
        # validates and tests on the same samples.
        extra.append(parse(f"train.split_seed={plan.split_seed}"))
        notes.append(
            f"every trial trains, validates and tests on the same samples "
            f"(train.split_seed {plan.split_seed})"
        )
    if _covered(("train", "seed"), sets) is None:
        notes.append(
            f"each trial's seed (its initial weights, data order and dropout) is "
            f"derived from the spec's ({plan.seed})"
        )
    if plan.validation is None and _covered(("train", "validation"), sets) is None:
        extra.append(parse(f"train.validation={HELD_OUT}"))
        notes.append(
            f"the spec validates on the test split; the sweep holds out "
            f"{HELD_OUT:g} of the training split instead, to choose on"
        )
    if not export:
        touched = [o for o in sets if o.path[:1] == ("export",)]
        errors += [
            at_override(o, "trials export nothing without --export; add --export")
            for o in touched
        ]
        extra.append(parse("export={formats: []}"))  # every format's options too
    return extra, notes, errors


def plan_sweep(
    spec: Path,
    sets: Sequence[Override],
    *,
    epochs: int | None = None,
    export: bool = False,
    choose: str | None = None,
    save_split: bool = False,
    track: Sequence[str] = (),
) -> SweepPlan | list[SpecError]:
    """Every trial of the grid, each trial's spec compiled (all errors, each
    once, otherwise); `choose` is the validation score that picks the best."""
    check_distinct(sets)
    duplicates = _duplicates(sets)
    if duplicates:
        return duplicates
    count = math.prod(len(o.values) for o in sets)
    if count > MAX_TRIALS:
        raise OverrideError(
            f"the --set values make {count:,} trials; a sweep runs at most "
            f"{MAX_TRIALS:,}"
        )
    base = compile_spec(spec)
    if isinstance(base, list):
        return base
    plan = base.plan
    choices = choosable(plan.task)
    choose = choose or f"val_{plan.task.metric_names[0]}"
    if choose not in choices:
        raise SweepError(
            f"--choose {choose}: this spec's trials can be chosen by "
            + ", ".join(choices)
        )
    extra, notes, errors = _extra(plan, sets, export)
    seeded = _covered(("train", "seed"), sets) is None
    width = max(3, len(str(count - 1)))
    trials, seen = [], {str(e) for e in errors}
    for index, values in enumerate(grid(sets)):
        seed = seed_of(plan.seed, values)
        overrides = (*values, *((parse(f"train.seed={seed}"),) if seeded else ()))
        overrides += tuple(extra)
        found = _trial_errors(spec, plan, values, overrides, choose)
        if isinstance(found, list):
            errors += [e for e in found if str(e) not in seen]
            seen.update(str(e) for e in found)
            continue
        seed = seed if seeded else found.seed
        trials.append(
            Trial(
                f"{index:0{width}d}",
                values,
                seed,
                tuple(o.text for o in overrides),
                found.split_seed,
            )
        )
    if errors:
        return sorted(errors, key=lambda e: _set_order(e, sets))
    metric = plan.task.metric_names[0]
    return SweepPlan(
        spec=spec.resolve(),
        spec_sha256=plan.spec_sha256,
        spec_text=plan.spec_text,
        fields=tuple(o.field for o in sets),
        trials=tuple(trials),
        epochs=epochs,
        export=export,
        metric=metric,
        higher_is_better=choices[choose],
        notes=tuple(notes),
        choose=choose,
        save_split=save_split,
        tracking=replace(plan.tracking, **dict.fromkeys(track, True)),
        base_seed=plan.seed,
        seeded=seeded,
        extra=tuple(extra),
    )


def make_trial(sweep: SweepPlan, id: str, values: tuple[Override, ...]) -> Trial:
    """A trial of `values` (one each), seeded as a grid's trial is (a search
    draws its trials as it runs)."""
    seed = seed_of(sweep.base_seed, values)
    seeds = (parse(f"train.seed={seed}"),) if sweep.seeded else ()
    every = (*values, *seeds, *sweep.extra)
    sets = tuple(o.text for o in every)
    split = [o.values[0] for o in every if o.path == ("train", "split_seed")]
    given = [o.values[0] for o in values if o.path == ("train", "seed")]
    seed = seed if sweep.seeded or not given else int(given[0])
    return Trial(id, values, seed, sets, int(split[0]) if split else seed)


def trial_problem(sweep: SweepPlan, trial: Trial) -> str | None:
    """Why the trial's spec cannot be built (its values drawn by a search),
    or None."""
    overrides = tuple(parse(text) for text in trial.sets)
    base = compile_spec(sweep.spec)
    if isinstance(base, list):
        return "; ".join(str(e) for e in base)
    found = _trial_errors(sweep.spec, base.plan, trial.values, overrides, sweep.choose)
    if isinstance(found, list):
        return "; ".join(str(e) for e in found)
    return None


class SweepError(ValueError):
    """A sweep that cannot be planned as asked (exit 2: nothing is written)."""


def choosable(task: Any) -> dict[str, bool]:
    """The validation scores a sweep can choose by, and whether higher is
    better for each: the loss, the task's metrics and its summary scores."""
    found = {"val_loss": False}
    found.update(
        {f"val_{m}": METRIC_KINDS[m].higher_is_better for m in task.metric_names}
    )
    found.update({f"val_{name}": True for name in task.summary_names})
    return found


def _trial_errors(
    spec: Path,
    base: Any,
    values: tuple[Override, ...],
    overrides: tuple[Override, ...],
    choose: str,
) -> Any:
    """The trial's plan, or its errors: its spec's, and the sweep's own (it
    must validate on held-out data, and score the base spec's metric)."""
    compiled = compile_spec(spec, overrides=overrides)
    if isinstance(compiled, list):
        return compiled
    trial = compiled.plan
    if trial.validation is None:  # --set train.validation=test (or above it)
        found = _covered(("train", "validation"), values)
        assert found is not None  # the sweep holds out a share otherwise
        return [
            at_override(
                found,
                "a sweep chooses its best trial on validation data, never on the "
                "test split: set a share of the training split "
                "(train.validation=0.1)",
            )
        ]
    metric = base.task.metric_names[0]
    message = None
    if trial.task.metric_names[:1] != (metric,):
        message = (
            f"a sweep compares its trials by val_{metric}, the spec's first "
            f"metric; this trial's first metric is {trial.task.metric_names[0]}"
        )
    elif choose not in choosable(trial.task):
        message = f"a sweep compares its trials by {choose}, which this trial lacks"
    if message is not None:
        found = _covered(("train", "metrics"), values) or _covered(("task",), values)
        return [
            at_override(found, message) if found else at_override(values[0], message)
        ]
    return trial


# --- the sweep folder ----------------------------------------------------------


def open_folder(out: Path, sweep: SweepPlan, resume: bool) -> list[Trial]:
    """Make (or, with `resume`, reopen) the sweep folder; the trials to run."""
    open_record(out, sweep.record(), resume)
    return [t for t in sweep.trials if not finished(out, t)]


def open_record(out: Path, record: dict[str, Any], resume: bool) -> None:
    """Make (or, with `resume`, reopen) the sweep folder of the sweep that
    `record` describes, and its trials/ folder."""
    record_path = out / RECORD
    if record_path.is_file():
        if not resume:
            raise BuildError(
                f"{out} holds a sweep already: add --resume to continue it, "
                "or choose another --out"
            )
        try:
            recorded = read_json(record_path, MAX_JSON_BYTES)
        except (OSError, NotJson) as exc:
            raise BuildError(f"cannot read {record_path}: {exc}") from None
        if recorded != record:
            raise BuildError(
                f"{out} holds another sweep (its spec, --set values, --epochs or "
                "--export differ): --resume continues the same sweep; choose "
                "another --out for this one"
            )
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BuildError(
            f"{out} exists and is not a sweep folder; choose another --out"
        )
    else:
        # The record first: a folder stopped before it is still empty, and
        # one stopped after it is this sweep, for --resume.
        write_atomically(record_path, json_text(record))
    (out / TRIALS).mkdir(exist_ok=True)


def trial_dir(out: Path, trial: Trial) -> Path:
    return out / TRIALS / trial.id


def finished(out: Path, trial: Trial) -> bool:
    """Whether the trial's build was published (a build publishes whole)."""
    return (trial_dir(out, trial) / manifest.METRICS).is_file()


def build_command(
    sweep: SweepPlan, trial: Trial, out: Path, data: Path | None, resume: bool
) -> list[str]:
    """The trial's `l2compile build` command line."""
    command = [sys.executable, "-m", "l2compile", "build", str(sweep.spec)]
    command += ["--out", str(trial_dir(out, trial).resolve())]
    for text in trial.sets:
        command += ["--set", text]
    if sweep.epochs is not None:
        command += ["--epochs", str(sweep.epochs)]
    if data is not None:
        command += ["--data", str(data.resolve())]
    if sweep.save_split:
        command.append("--save-split")
    for kind in sweep.tracking.kinds:
        command += ["--track", kind]
    if resume:
        command.append("--resume")  # a trial interrupted mid-way goes on
    return command


# --- results ----------------------------------------------------------------------


def row(
    sweep: SweepPlan, out: Path, trial: Trial, run: dict[str, Any]
) -> dict[str, Any]:
    """One trial's row: its values, scores, losses, gap, time and memory."""
    found: dict[str, Any] = {
        "trial": trial.id,
        "seed": trial.seed,
        "split_seed": trial.split_seed,
    }
    found.update({o.field: o.values[0] for o in trial.values})
    found.update(status=run.get("status", "failed"), error=run.get("error", ""))
    found.update(run.get("pruned") or {})  # a search's: its score when stopped
    path = trial_dir(out, trial) / manifest.METRICS
    if path.is_file() and (changed := _spec_changed(sweep, out, trial)):
        found.update(status="failed", error=changed)  # never compared
    elif path.is_file():
        try:
            metrics = read_json(path, MAX_JSON_BYTES)
            found.update(_scores(sweep.metric, metrics))
            found["status"] = "ok"
        except (OSError, NotJson, AttributeError, TypeError) as exc:
            found.update(status="failed", error=f"{path}: cannot be read ({exc})")
    found["seconds"] = run.get("seconds")
    found["peak_memory_mb"] = run.get("peak_memory_mb")
    return found


def _spec_changed(sweep: SweepPlan, out: Path, trial: Trial) -> str:
    """Why a finished trial was not built from the spec the sweep read (a
    file edited while the sweep ran); "" where it was."""
    try:
        built = manifest.read(trial_dir(out, trial) / manifest.NAME)["spec"]["sha256"]
    except (OSError, manifest.Unreadable) as exc:
        return f"its build's manifest.json cannot be read: {exc}"
    except (KeyError, TypeError):
        return "its build's manifest.json does not say which spec it built"
    if built == sweep.spec_sha256:
        return ""
    return (
        f"{sweep.spec} changed while the sweep ran: this trial was built from "
        f"another spec (sha256 {str(built)[:12]}..., the sweep's "
        f"{sweep.spec_sha256[:12]}...), so it is not compared; restore the "
        "spec, or start a new sweep"
    )


def _scores(metric: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """What a build's metrics.json says at the epoch whose weights it kept."""
    history = metrics.get("history", {})
    split = metrics.get("history_split", {})
    stopped = metrics.get("early_stopping") or {}
    epochs = len(history.get("loss", ())) or 1
    kept = (stopped.get("weights_of_epoch") or epochs) - 1

    def at(series: Sequence[float] | None) -> float | None:
        return float(series[kept]) if series and len(series) > kept else None

    found: dict[str, Any] = {
        f"val_{k}": v
        for k, v in metrics.get("validation", {}).get("scores", {}).items()
    }
    # The scores; the per-class tables and the residuals stay in metrics.json.
    found.update(
        {
            k: v
            for k, v in metrics.items()
            if k.startswith("test_") and isinstance(v, int | float)
        }
    )
    found["learned"] = metrics.get("learned")
    train, val = at(history.get(metric)), at(history.get(f"val_{metric}"))
    found[f"train_{metric}"] = train
    found["gap"] = None if train is None or val is None else train - val
    found["data_loss"] = at(split.get("data_loss"))
    found["val_data_loss"] = at(split.get("val_data_loss"))
    found["l2_penalty"] = at(split.get("l2_penalty"))
    found["epochs_trained"] = metrics.get("epochs_trained")
    found["layer_norms"] = layer_norms(metrics.get("l2_norms", {}))
    return found


def layer_norms(norms: dict[str, float]) -> dict[str, float]:
    """Each layer's L2 norm of its kernels and regularized weights together
    (from each weight's, keyed by the variable path `model/layer/weight`)."""
    squares: dict[str, float] = {}
    for path, norm in norms.items():
        layer = path.rsplit("/", 1)[0]
        squares[layer] = squares.get(layer, 0.0) + float(norm) ** 2
    # Variable paths start with the model's name: leave it out.
    model = {layer.split("/", 1)[0] for layer in squares}
    cut = len(model.pop()) + 1 if len(model) == 1 and "/" in next(iter(squares)) else 0
    return {layer[cut:]: math.sqrt(total) for layer, total in squares.items()}


def best(sweep: SweepPlan, rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The finished trial with the best validation score."""
    key = sweep.choose
    scored = [
        r
        for r in sorted(rows, key=lambda r: str(r["trial"]))
        if r["status"] == "ok" and isinstance(r.get(key), int | float)
    ]
    if not scored:
        return None
    sign = 1 if sweep.higher_is_better else -1
    # A tie goes to the lower validation loss, then to the first trial.
    return max(
        scored,
        key=lambda r: (sign * float(r[key]), -float(r.get("val_loss") or 0.0)),
    )


def write_results(
    sweep: SweepPlan, out: Path, rows: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """results.json and results.csv, each replaced whole."""
    chosen = best(sweep, rows)
    ordered = sorted(rows, key=lambda r: str(r["trial"]))
    results = {
        "spec": str(sweep.spec),
        "fields": list(sweep.fields),
        "epochs": sweep.epochs,
        "chosen_by": sweep.choose,
        "metric": sweep.metric,
        "higher_is_better": sweep.higher_is_better,
        "best": None if chosen is None else chosen["trial"],
        "notes": list(sweep.notes),
        "trials": ordered,
    }
    write_atomically(out / RESULTS_JSON, json_text(results))
    write_atomically(out / RESULTS_CSV, _csv(ordered))
    return results


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns and k != "layer_norms"]
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _cell(v) for k, v in r.items()})
    return text.getvalue()


#: How a cell that a spreadsheet runs as a formula starts (OWASP: CSV
#: injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """A value as results.csv writes it: a list or mapping as JSON, and text
    that a spreadsheet would run as a formula with a ' before it, as OWASP
    advises. A number stays a number, -0.5 included: a cell that is a number
    whole is no formula. A carriage return becomes a line break, which the
    csv module quotes (it leaves a lone one bare, and a reader would end the
    row there). results.json keeps every value as it was."""
    if isinstance(value, list | dict):
        value = json.dumps(value)
    if not isinstance(value, str):
        return value
    if value.startswith(FORMULA_STARTS) and not _number(value):
        value = "'" + value
    return value.replace("\r\n", "\n").replace("\r", "\n")


def _number(text: str) -> bool:
    """Whether `text` is a number and nothing else (no space around it)."""
    try:
        float(text)
    except ValueError:
        return False
    return text == text.strip()


# --- running ----------------------------------------------------------------------


def run_file(out: Path, trial: Trial) -> Path:
    return out / TRIALS / f"{trial.id}.run.json"


def read_run(out: Path, trial: Trial) -> dict[str, Any]:
    try:
        found = read_json(run_file(out, trial), MAX_JSON_BYTES)
    except (OSError, NotJson):
        return {}
    return found if isinstance(found, dict) else {}


def run_sweep(
    sweep: SweepPlan,
    out: Path,
    *,
    jobs: int = 1,
    engine: str = "local",
    data: Path | None = None,
    resume: bool = False,
    log: Log = print,
) -> dict[str, Any]:
    """Run the trials not yet finished, writing results.csv, results.json,
    the plots and report.html as each ends; the results. On Ctrl-C those
    describe the finished trials, and the running ones keep their epochs
    for --resume. The folder is locked while the sweep runs."""
    from l2compile import engines

    engines.check(engine)  # before the folder is made
    if (needed := tracking.missing(sweep.tracking)) is not None:
        raise BuildError(needed)
    lock = lock_folder(out)
    parent: tracking.Run | None = None
    try:
        todo = _wait_for_builds(out, open_folder(out, sweep, resume), log)
        parent = _open_run(sweep, out, resume, log)
        for stale in (out / TRIALS).glob(f"{engines.PEAK_PREFIX}*"):
            stale.unlink(missing_ok=True)  # a killed sweep's: this one holds the lock
        rows = {
            t.id: row(sweep, out, t, read_run(out, t))
            for t in sweep.trials
            if finished(out, t)
        }
        for note in sweep.notes:
            log(f"note: {note}")
        at_once = _at_once(jobs, engine, len(todo), log)
        log(
            f"{len(sweep.trials)} trials, {len(todo)} to run"
            + (f" ({len(sweep.trials) - len(todo)} finished before)" if rows else "")
            + f", {at_once} at a time on the {engine} engine; logs in {out / TRIALS}/"
        )
        runs = [
            engines.TrialRun(
                t.id,
                tuple(build_command(sweep, t, out, data, resume)),
                str((out / TRIALS / f"{t.id}.log").resolve()),
                str(Path.cwd()),
            )
            for t in todo
        ]
        run = engines.run_ray if engine == "ray" else engines.run_local
        if runs:
            run(runs, at_once, _on_done(sweep, out, rows, log))
        results = write_results(sweep, out, list(rows.values()))
        write_report(sweep, out, results)
        if parent is not None:
            _close_run(parent, out, results, None)
            parent = None
        return results
    except BaseException as exc:
        if parent is not None:
            _close_run(parent, out, None, exc)
        raise
    finally:
        os.environ.pop(tracking.PARENT_ENV, None)
        os.close(lock)  # after the stopped builds have ended


def _open_run(
    sweep: SweepPlan, out: Path, resume: bool, log: Log
) -> tracking.Run | None:
    """The sweep's MLflow run (None: it does not track with MLflow), which
    each trial's run goes under: a resumed sweep's is the run it began. The
    trials find it, and the store, in their environment (a Ray trial too)."""
    if not sweep.tracking.mlflow:
        return None
    run = tracking.open_run(
        compile_name(sweep),
        {
            "sweep.fields": list(sweep.fields),
            "sweep.trials": len(sweep.trials),
            "sweep.choose": sweep.choose,
        },
        (str(sweep.spec), sweep.spec_text),
        out,
        resumed=resume,
        log=log,
        run_name=f"{sweep.spec.stem} sweep",
    )
    os.environ[tracking.PARENT_ENV] = json.dumps(run.__dict__)
    os.environ["MLFLOW_TRACKING_URI"] = run.uri
    return run


def compile_name(sweep: SweepPlan) -> str:
    """The spec's name (its MLflow experiment), as its first trial's."""
    found = compile_spec(sweep.spec)
    return sweep.spec.stem if isinstance(found, list) else found.plan.name


def _close_run(
    run: tracking.Run,
    out: Path,
    results: dict[str, Any] | None,
    exc: BaseException | None,
) -> None:
    """End the sweep's run: with the best trial's scores, results.csv and
    the page where it finished; killed (or failed) otherwise."""
    if results is None:
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        tracking.close_run(run, scores={}, files=[], status=status)
        return
    best_row = (r for r in results["trials"] if r["trial"] == results["best"])
    chosen: dict[str, Any] = next(best_row, {})
    scores = {
        f"best.{key}": float(value)
        for key, value in chosen.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    from l2compile import pages

    files = [out / RESULTS_CSV, out / pages.NAME]
    tracking.close_run(run, scores=scores, files=files, status="FINISHED")


def _on_done(
    sweep: SweepPlan, out: Path, rows: dict[str, dict[str, Any]], log: Log
) -> Callable[[Any, dict[str, Any]], None]:
    """What the sweep does as each trial ends: its row, then every file whole."""
    by_id = {t.id: t for t in sweep.trials}

    def done(run: Any, report: dict[str, Any]) -> None:
        trial = by_id[run.id]
        write_atomically(run_file(out, trial), json_text(report))
        rows[trial.id] = row(sweep, out, trial, report)
        write_report(sweep, out, write_results(sweep, out, list(rows.values())))
        score = rows[trial.id].get(sweep.choose)
        outcome = (
            f"{sweep.choose} {score:.4f}"
            if isinstance(score, float)
            else f"{rows[trial.id]['status']}: {rows[trial.id].get('error', '')}"
        )
        log(
            f"[{len(rows)}/{len(sweep.trials)}] trial {trial.id} ({trial.label()}): "
            f"{outcome} ({report.get('seconds', 0):.0f} s)"
        )

    return done


# --- one sweep at a time, and its trials' builds ----------------------------------

#: The most trials the local engine runs at once (--jobs): each is a build
#: process of a few hundred MB, and more than a machine's CPUs only share them.
MAX_JOBS = 64
#: How often a sweep looks again at a trial whose earlier build is ending.
POLL_SECONDS = 0.2


def check_jobs(jobs: int, engine: str) -> None:
    """Refuse more trials at once than the local engine runs (SweepError; on
    a Ray cluster, Ray runs as many as it has CPUs for)."""
    if engine == "local" and jobs > MAX_JOBS:
        raise SweepError(
            f"--jobs {jobs}: the local engine runs at most {MAX_JOBS} trials at "
            "once (each is a build process on this machine); --engine ray runs "
            "more on a cluster"
        )


def _cpus() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _at_once(jobs: int, engine: str, todo: int, log: Log) -> int:
    """The trials to run at once: --jobs, at most the trials to run; a note
    when the local engine runs more builds at once than there are CPUs."""
    at_once = max(1, min(jobs, todo))
    cpus = _cpus()
    if engine == "local" and at_once > cpus:
        log(
            f"note: --jobs {jobs}: {at_once} builds at once share this machine's "
            f"{cpus} CPUs, so each runs slower"
        )
    return at_once


def lock_folder(out: Path) -> int:
    """Make the sweep folder if need be, and lock it for this sweep; the lock's
    descriptor. The lock is a build's (l2compile.workfolder.open_work): flock
    on the folder, released when the descriptor is closed or the process
    dies, so a killed sweep leaves no stale lock."""
    if out.exists() and not out.is_dir():
        raise BuildError(
            f"{out} exists and is not a sweep folder; choose another --out"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise BuildError(
            f"cannot make the sweep folder {out}: {exc.strerror or exc}"
        ) from None
    if not workfolder.take_lock(lock):
        raise BuildError(
            f"{out}: another l2compile sweep is running in it now (the folder is "
            "locked); wait for it to end, or choose another --out"
        ) from None
    return lock


def _building(out: Path, trial: Trial) -> bool:
    """Whether a build of the trial holds its work folder's lock (one that a
    killed sweep left ending, or one run by hand)."""
    return workfolder.is_locked(workfolder.work_folder(trial_dir(out, trial)))


def _wait_for_builds(out: Path, todo: list[Trial], log: Log) -> list[Trial]:
    """Wait for the builds of these trials that still run, rather than start a
    second build of each; the trials they did not finish."""
    busy = [t for t in todo if _building(out, t)]
    for trial in busy:
        log(
            f"trial {trial.id}: an earlier build of it is still running (its work "
            "folder is locked); waiting for it to end"
        )
    while busy:
        time.sleep(POLL_SECONDS)
        busy = [t for t in busy if _building(out, t)]
    left = [t for t in todo if not finished(out, t)]
    for trial in todo:
        if trial not in left:
            log(f"trial {trial.id}: its earlier build finished; its result is kept")
    return left


def written(out: Path) -> list[str]:
    """What a sweep wrote in its folder, for its last line."""
    found = [RESULTS_CSV, RESULTS_JSON]
    plots = sorted(p.name for p in (out / PLOTS).glob("*.png"))
    if plots:
        found.append(f"{PLOTS}/ ({', '.join(plots)})")
    from l2compile import pages

    if (out / pages.NAME).is_file():
        found.append(pages.NAME)
    return [*found, f"{TRIALS}/ (each trial's build and log)"]


def write_report(sweep: SweepPlan, out: Path, results: dict[str, Any]) -> None:
    """plots/<field>.png (and heat_map.png) and report.html, each whole."""
    from l2compile import pages

    figures = pages.sweep_figures(results)
    (out / PLOTS).mkdir(exist_ok=True)
    for name, png in figures.items():
        write_atomically(out / PLOTS / f"{name}.png", png)
    write_atomically(
        out / pages.NAME, pages.sweep_page(results, figures, sweep.spec_text)
    )
