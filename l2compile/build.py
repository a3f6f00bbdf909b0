"""Build: train the model that the generated code builds, export and measure it.

There is one way to build a model: the generated module. The build writes it;
the training stage (l2compile.training, on the spec's Keras backend) imports it
and calls its `set_seeds`, `preprocess`, `build_model`, `compile_model` and
`train`, so what a user checks in is exactly what was trained, and saves the
trained model as a `.keras` file; the export stage (here, on TensorFlow) loads
that file and writes the other formats the spec exports (l2compile.formats).
l2compile.processes runs each stage in this process or in a fresh one on the
stage's backend.

This module only orchestrates: what it may call in the generated module is
`l2compile.contract`; where the build works and how it publishes,
`l2compile.workfolder`; each format's files and their parity checks,
`l2compile.formats`; the manifest and the strict JSON files,
`l2compile.manifest`; the state saved each epoch, `l2compile.resume`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l2compile import (
    backends,
    formats,
    interrupts,
    manifest,
    pages,
    processes,
    tracking,
    workfolder,
)
from l2compile import resume as resume_
from l2compile.contract import import_generated
from l2compile.datasets import Dataset, check_validation_share, load_dataset
from l2compile.errors import BuildError
from l2compile.formats.base import ExportJob
from l2compile.generate import Compiled, derive_input
from l2compile.nodes import ModelPlan
from l2compile.resume import Saved
from l2compile.training import TrainJob

Log = Callable[[str], None]


@dataclass(frozen=True)
class BuildResult:
    """What a finished build wrote and measured."""

    out: Path
    metrics: dict[str, Any]
    artifacts: tuple[str, ...]
    published: bool = True


def build(
    plan: ModelPlan,
    code: str,
    out: Path,
    *,
    data: Path | None = None,
    epochs: int | None = None,
    resume: bool = False,
    save_split: bool = False,
    log: Log = print,
) -> BuildResult:
    """Train, evaluate and export `plan`'s model into `out`, atomically.

    With `resume`, continue an interrupted build of the same code, data and
    epochs from its last finished epoch (or start afresh if there is none).
    With `save_split`, write split.json: which samples train, validate, test.
    """
    out = Path(os.path.normpath(out))  # build/x/ and build/./x are build/x
    workfolder.check_out_dir(out)
    _check_installed(plan)
    if resume and plan.distribute == "multi_worker":
        raise BuildError(
            "--resume is not available with train.distribute: multi_worker: its "
            "custom training loop saves no state; build without --resume"
        )
    interrupts.phase("data")
    dataset = _read(plan, data)
    log(
        f"data: {dataset.source} ({len(dataset.x_train):,} train, "
        f"{len(dataset.x_test):,} test samples)"
    )
    for warning in dataset.warnings:
        log(warning)
    if plan.derived_input:
        compiled = _derive(plan, dataset, log)
        plan, code = compiled.plan, compiled.code
    if plan.backend_reason:
        log(f"training on {plan.backend} (auto: {plan.backend_reason})")
    check_validation_share(plan.validation, len(dataset.x_train), plan.source_file)
    epochs = plan.epochs if epochs is None else epochs
    if plan.warmup_epochs >= epochs:
        raise BuildError(
            f"--epochs {epochs}: the learning rate's warmup takes "
            f"{plan.warmup_epochs} epochs and must leave at least one to decay over"
        )
    key = resume_.build_key(code, dataset, epochs, plan.backend)
    work, lock = workfolder.open_work(out, log)
    try:
        saved = workfolder.take_over(work, out, plan, key, resume, log)
        run = None
        try:
            run = tracking.build_run(plan, work, resumed=saved is not None, log=log)
            workfolder.check_free_space(work, plan)
            state = (saved, run)
            metrics = _build_into(
                work, out, plan, code, dataset, epochs, key, state, save_split, log
            )
            result = _publish(work, out, metrics, log)
        except BaseException as exc:
            with interrupts.deferred():  # a second Ctrl-C does not cut this short
                tracking.end_build(run, None, failure=exc, log=log)
                workfolder.keep_or_clean(work, out, key, exc, log)
            raise
        with interrupts.deferred():
            tracking.end_build(run, (out, result.metrics), log=log)
        return result
    finally:
        os.close(lock)


def _check_installed(plan: ModelPlan) -> None:
    """What the build needs is installed, or it stops before reading data:
    the backend, each format's packages and the tracking's."""
    backends.check_installed(plan.backend)
    needs = [f.missing() for f in formats.chosen(plan.export_formats)]
    for needed in (*needs, tracking.missing(plan.tracking)):
        if needed is not None:
            raise BuildError(needed)


def derived(compiled: Compiled, log: Log, *, version_header: bool = True) -> Compiled:
    """A spec without input.shape planned with the one its data gives (read
    as a build reads it); any other as it is."""
    plan = compiled.plan
    if not plan.derived_input:
        return compiled
    return _derive(plan, _read(plan, None), log, version_header=version_header)


def _read(plan: ModelPlan, data: Path | None) -> Dataset:
    """The plan's data (`data`: --data, else the spec's), read and checked."""
    return load_dataset(
        plan.recipe,
        data,
        spec_path=plan.data_path,
        model_input=plan.model_input,
        seed=plan.split_seed,
        test_path=plan.test_path,
    )


def _derive(
    plan: ModelPlan, dataset: Dataset, log: Log, *, version_header: bool = True
) -> Compiled:
    width = sum(column.width for column in dataset.columns)
    log(f"input.shape: [{width}], derived from the data")
    return derive_input(plan, width, version_header=version_header)


def _publish(work: Path, out: Path, metrics: dict[str, Any], log: Log) -> BuildResult:
    """Move the finished build into `out` (the chief; another worker removes
    its work folder), with interrupts waiting until it is in place."""
    if not workfolder.is_chief():
        # Every worker trains and exports (they run in lockstep); only the
        # chief publishes.
        with interrupts.deferred():
            shutil.rmtree(work)
        log("not the chief worker: nothing published")
        return BuildResult(out, metrics, (), published=False)
    interrupts.phase("publishing")
    with interrupts.deferred():
        # From here on the build is published; an interrupt waits, and the
        # caller says it came after (cli.py, "published").
        workfolder.publish(work, out)
        if interrupts.installed():
            # The command line's build has succeeded: a later signal only ends
            # its listing (exit 130 would say otherwise).
            interrupts.stop_raising()
        artifacts = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir())
        return BuildResult(out, metrics, tuple(artifacts))


def _build_into(
    work: Path,
    out: Path,
    plan: ModelPlan,
    code: str,
    dataset: Dataset,
    epochs: int,
    key: dict[str, Any],
    resumed: tuple[Saved | None, tracking.Run | None],
    save_split: bool,
    log: Log,
) -> dict[str, Any]:
    """Write the module, train on the plan's backend, then export on
    TensorFlow from the saved `.keras` file, into `work`'s artifacts (with
    `resumed`: the saved epochs to go on from and the MLflow run to log to)."""
    saved, run = resumed
    dest = work / workfolder.ARTIFACTS
    dest.mkdir()
    module = dest / f"{plan.name}.py"
    module.write_text(code, encoding="utf-8")
    # The hand-off from training to export; published only if asked for.
    model_file = dest / formats.HANDOFF
    chosen = formats.chosen(plan.export_formats)
    exports = any(f.exported for f in chosen)
    exporter: processes.Child | None = None
    try:
        if exports:
            # A child that exports starts now: it imports TensorFlow while we
            # train. A signal waits until it is ours to stop.
            with interrupts.deferred():
                exporter = processes.start("export", backends.EXPORT)
        metrics: dict[str, Any] = processes.run(
            "train",
            plan.backend,
            TrainJob(
                plan,
                module,
                dataset,
                epochs,
                work,
                key,
                saved,
                model_file,
                save_split=save_split,
                run=run,
                events=work / tracking.TENSORBOARD
                if plan.tracking.tensorboard
                else None,
            ),
            log,
        )
        if exports:
            job = ExportJob(
                plan,
                module,
                formats.calibration(plan, dataset),
                model_file,
                dest,
            )
            metrics |= processes.run("export", backends.EXPORT, job, log, exporter)
    finally:
        if exporter is not None:
            exporter.stop()
    if not any(formats.HANDOFF in f.files(plan) for f in chosen):
        model_file.unlink()
    tracking.publish_events(plan, work, dest)
    interrupts.phase("manifest")
    manifest.write_json(dest / manifest.METRICS, metrics)
    _write_report(dest, plan, metrics, log)
    manifest.write(dest, out, plan, dataset, module.name, formats.PACKAGES)
    return metrics


def _write_report(
    dest: Path, plan: ModelPlan, metrics: dict[str, Any], log: Log
) -> None:
    """report.html; a page that cannot be drawn does not fail a trained build."""
    try:
        page = pages.build_page(plan, metrics)
    except Exception as exc:  # matplotlib's, on a figure it refuses
        log(f"report.html not written: {type(exc).__name__}: {exc}")
        return
    (dest / pages.NAME).write_text(page, encoding="utf-8")


def export_stage(job: ExportJob, log: Log) -> dict[str, Any]:
    """Write the formats the spec asks for from the trained `.keras` file,
    each with its checks; what metrics.json says of them, by format."""
    import keras

    plan = job.plan
    interrupts.phase("export")
    generated = import_generated(
        job.module, plan.name, plan.distribute, plan.optional_members
    )
    model = keras.saving.load_model(job.model_file)
    found = {}
    for exported in formats.chosen(plan.export_formats):
        result = exported.export(job, model, generated, log)
        if result is not None:
            found[exported.name] = result
    return found
