"""Build: train the model that the generated code builds, export and measure it.

There is one way to build a model: the generated module. The build writes it,
imports it, and calls its `set_seeds`, `preprocess`, `build_model`,
`compile_model` and `train`, so what a user checks in is exactly what was
trained.

This module only orchestrates: what it may call in the generated module is
`l2compile.contract`; where the build works and how it publishes,
`l2compile.workfolder`; the callbacks it trains with, `l2compile.callbacks`;
what it measures of the trained model, `l2compile.measure`; the TFLite files
and their parity checks, `l2compile.deploy`; the manifest and the strict JSON
files, `l2compile.manifest`; the state saved each epoch, `l2compile.resume`.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l2compile import (
    callbacks,
    deploy,
    export,
    interrupts,
    manifest,
    measure,
    workfolder,
)
from l2compile import resume as resume_
from l2compile.contract import GeneratedModule, import_generated
from l2compile.datasets import Dataset, load_dataset
from l2compile.errors import BuildError, Diverged
from l2compile.plan import ModelPlan
from l2compile.resume import Saved

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
    log: Log = print,
) -> BuildResult:
    """Train, evaluate and export `plan`'s model into `out`, atomically.

    With `resume`, continue an interrupted build of the same code, data and
    epochs from its last finished epoch (or start afresh if there is none).
    """
    out = Path(os.path.normpath(out))  # build/x/ and build/./x are build/x
    workfolder.check_out_dir(out)
    if resume and plan.distribute == "multi_worker":
        raise BuildError(
            "--resume is not available with train.distribute: multi_worker: its "
            "custom training loop saves no state; build without --resume"
        )
    interrupts.phase("data")
    dataset = load_dataset(
        plan.recipe, data, spec_path=plan.data_path, model_input=plan.model_input
    )
    log(
        f"data: {dataset.source} ({len(dataset.x_train):,} train, "
        f"{len(dataset.x_test):,} test samples)"
    )
    epochs = plan.epochs if epochs is None else epochs
    key = resume_.build_key(code, dataset, epochs)
    work, lock = workfolder.open_work(out, log)
    try:
        saved = workfolder.take_over(work, out, plan, key, resume, log)
        try:
            workfolder.check_free_space(work, plan)
            metrics = _build_into(
                work, out, plan, code, dataset, epochs, key, saved, log
            )
            if not workfolder.is_chief():
                # Every worker trains and exports (they run in lockstep); only
                # the chief publishes.
                with interrupts.deferred():
                    shutil.rmtree(work)
                log("not the chief worker: nothing published")
                return BuildResult(out, metrics, (), published=False)
            interrupts.phase("publishing")
            with interrupts.deferred():
                # From here on the build is published; an interrupt waits, and
                # the caller says it came after (cli.py, "published").
                workfolder.publish(work, out)
                artifacts = sorted(
                    p.name + ("/" if p.is_dir() else "") for p in out.iterdir()
                )
                return BuildResult(out, metrics, tuple(artifacts))
        except BaseException as exc:
            with interrupts.deferred():  # a second Ctrl-C does not cut this short
                workfolder.keep_or_clean(work, out, key, exc, log)
            raise
    finally:
        os.close(lock)


def _build_into(
    work: Path,
    out: Path,
    plan: ModelPlan,
    code: str,
    dataset: Dataset,
    epochs: int,
    key: dict[str, Any],
    saved: Saved | None,
    log: Log,
) -> dict[str, Any]:
    """Write the module, train, measure and export into `work`'s artifacts."""
    dest = work / workfolder.ARTIFACTS
    dest.mkdir()
    module_path = dest / f"{plan.name}.py"
    module_path.write_text(code, encoding="utf-8")

    interrupts.phase("import")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ chatter out
    generated = import_generated(module_path, plan.name, plan.distribute)
    generated.set_seeds()
    x_train, y_train = generated.preprocess(dataset.x_train, dataset.y_train)
    x_test, y_test = generated.preprocess(dataset.x_test, dataset.y_test)
    model, replicas = _make_model(plan, generated, work, saved)

    interrupts.phase("training")
    log(
        f"training {plan.name}: {plan.params:,} parameters, {epochs} "
        + ("epoch" if epochs == 1 else "epochs")
        + (f", {replicas} replicas" if plan.distribute != "none" else "")
    )
    logged, penalties, seconds = _train(
        plan,
        generated,
        model,
        (x_train, y_train, x_test, y_test),
        epochs,
        work,
        key,
        saved,
    )
    interrupts.phase("evaluating")
    metrics = measure.scores(plan, generated, model, x_test, y_test)
    metrics.update(
        epochs=epochs,
        parameters=plan.params,
        regularized_parameters=plan.regularized_params,
        history=logged,
        timing={"train_seconds": seconds},
        resumed_after_epoch=saved.epoch if saved is not None else None,
        replicas=replicas,
        history_split=measure.history_split(logged, penalties),
        l2_norms=measure.l2_norms(model, plan),
    )
    _export(dest, plan, model, generated, dataset, x_test, y_test, metrics, log)
    interrupts.phase("manifest")
    manifest.write_json(dest / manifest.METRICS, metrics)
    manifest.write(dest, out, plan, dataset, module_path.name)
    return metrics


def _make_model(
    plan: ModelPlan, generated: GeneratedModule, work: Path, saved: Saved | None
) -> tuple[Any, int]:
    """The compiled model (in its strategy's scope, if any), restored from the
    saved state when resuming, and its number of replicas."""

    def make() -> Any:
        model = generated.compile_model(generated.build_model())
        if saved is not None:
            resume_.restore(model, work, saved)
        return model

    if plan.distribute == "none":
        return make(), 1
    strategy = generated.make_strategy()
    with strategy.scope():
        return make(), int(strategy.num_replicas_in_sync)


def _train(
    plan: ModelPlan,
    generated: GeneratedModule,
    model: Any,
    data: tuple[Any, Any, Any, Any],
    epochs: int,
    work: Path,
    key: dict[str, Any],
    saved: Saved | None,
) -> tuple[dict[str, list[float]], list[float], float]:
    """Train through the generated `train`; the whole history (with the saved
    epochs before it), the L2 penalty at each epoch's end, and the seconds."""
    import keras

    penalties = list(saved.penalties) if saved is not None else []
    divergence = callbacks.divergence_guard(keras)
    used = [callbacks.penalty_recorder(keras, penalties), divergence]
    resumable: dict[str, Any] = {}
    if plan.distribute != "multi_worker":
        # Its custom loop prints its own lines, and saves no state.
        used.insert(0, callbacks.progress_bar(keras))
        used.append(resume_.saver(keras, work, key, epochs, saved, penalties))
        resumable["initial_epoch"] = saved.epoch if saved is not None else 0
    began = time.perf_counter()
    history = generated.train(
        model,
        *data,
        epochs=epochs,
        # Keras' progress bar in a terminal; one line per epoch in a log file.
        verbose=1 if sys.stdout.isatty() else 2,
        callbacks=used,
        **resumable,
    )
    if divergence.found is not None:
        raise Diverged(divergence.message(plan, epochs))
    seconds = time.perf_counter() - began
    logged = {k: [float(v) for v in values] for k, values in history.history.items()}
    logged, seconds = resume_.continued(saved, logged, seconds)
    return logged, penalties, seconds


def _export(
    dest: Path,
    plan: ModelPlan,
    model: Any,
    generated: GeneratedModule,
    dataset: Dataset,
    x_test: Any,
    y_test: Any,
    metrics: dict[str, Any],
    log: Log,
) -> None:
    """Write the formats the spec asks for; TFLite with its parity checks."""
    formats = plan.export_formats
    if "keras" in formats:
        interrupts.phase("keras")
        log("saving model.keras")
        export.save_keras(model, dest / "model.keras")
    if "saved_model" in formats:
        interrupts.phase("saved_model")
        log("exporting saved_model/")
        export.export_saved_model(model, dest / "saved_model")
    if plan.tflite is not None:
        metrics["tflite"] = deploy.export_tflite(
            dest,
            plan,
            plan.tflite,
            model,
            generated,
            dataset,
            x_test,
            y_test,
            metrics["test_accuracy"],
            log,
        )
        interrupts.phase("deploy_files")
        deploy.write_deploy_files(dest, plan, plan.tflite, dataset, metrics["tflite"])
