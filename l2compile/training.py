"""The build's training stage: on the spec's Keras backend, train the model
that the generated module builds, measure it, and save it as a `.keras` file
for the export stage (which runs on TensorFlow, l2compile.processes).

It reaches the generated module only through l2compile.contract, so what a
user checks in is exactly what was trained.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from l2compile import (
    callbacks,
    images,
    interrupts,
    manifest,
    measure,
    processes,
    tracking,
)
from l2compile import resume as resume_
from l2compile.contract import GeneratedModule, import_generated
from l2compile.datasets import Dataset
from l2compile.errors import BuildError, Diverged, NotLearned
from l2compile.formats import keras as keras_file
from l2compile.layers.backbone import imagenet_missing
from l2compile.nodes import ModelPlan
from l2compile.resume import Saved

Log = Callable[[str], None]


@dataclass(frozen=True)
class TrainJob:
    """What the training stage needs; it pickles, for a child process."""

    plan: ModelPlan
    module: Path  #: the generated module
    dataset: Dataset
    epochs: int
    work: Path  #: the build's work folder (its resume/ state)
    key: dict[str, Any]
    saved: Saved | None  #: the state to resume from
    model_file: Path  #: where the trained model is saved
    #: Write split.json (which samples train, validate and test) beside it.
    save_split: bool = False
    run: tracking.Run | None = None  #: the MLflow run each epoch is logged to
    events: Path | None = None  #: the folder of the TensorBoard event files


def train(job: TrainJob, log: Log) -> dict[str, Any]:
    """Train, measure and save the model; what metrics.json says of training."""
    plan, saved = job.plan, job.saved
    interrupts.phase("import")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ chatter out
    processes.import_keras()  # before the generated module's own `import keras`
    generated = import_generated(
        job.module, plan.name, plan.distribute, plan.optional_members
    )
    if plan.distribute == "data_parallel":  # before anything runs on JAX
        _distribute(generated, plan, log)
    generated.set_seeds()
    data = job.dataset
    if plan.recipe.streamed:
        interrupts.phase("data")
        log(f"checking that the {len(data.x_train) + len(data.x_test):,} images decode")
        images.check_decodable(np.concatenate([data.x_train, data.x_test]))
    if job.save_split:
        _save_split(job, generated)
    # Split the raw samples (an image folder's: its paths), then preprocess.
    x_train, y_train = data.x_train, data.y_train
    if plan.validation is not None:
        (x_train, y_train), (x_val, y_val) = generated.validation_split(
            x_train, y_train
        )
        x_val, y_val = generated.preprocess(x_val, y_val)
    x_train, y_train = generated.preprocess(x_train, y_train)
    x_test, y_test = generated.preprocess(data.x_test, data.y_test)
    if plan.validation is None:  # validation: test, the article's way
        x_val, y_val = x_test, y_test
    model, replicas, best = _make_model(plan, generated, job, saved, x_train)

    interrupts.phase("training")
    log(
        f"training {plan.name} on Keras' {plan.backend} backend: "
        f"{plan.params:,} parameters, {job.epochs} "
        + ("epoch" if job.epochs == 1 else "epochs")
        + (f", {replicas} replicas" if plan.distribute != "none" else "")
    )
    logged, penalties, seconds, stopped = _train(
        job, generated, model, (x_train, y_train, x_val, y_val), best
    )
    inference = _inference_mode(job, generated, model, (x_train, y_train), logged, log)
    interrupts.phase("evaluating")
    names = data.classes or plan.task.names
    metrics = measure.scores(plan, generated, model, x_test, y_test, names)
    kept = stopped.get("weights_of_epoch")
    metrics["validation"] = measure.validation(plan, logged, len(x_val), kept)
    validated = metrics["validation"]
    validated["scores"] = measure.defined_validation(
        plan, model, x_val, y_val, validated["scores"]
    )
    validated["scores"].update(measure.summary(plan, model, x_val, y_val))
    if stopped:
        metrics["early_stopping"] = stopped
    _judge(job, metrics, y_train, y_val, y_test, names, log)
    metrics.update(
        epochs=job.epochs,
        epochs_trained=len(logged.get("loss", ())),
        parameters=plan.params,
        regularized_parameters=plan.regularized_params,
        history=logged,
        backend=plan.backend,
        backend_reason=plan.backend_reason,
        timing={"train_seconds": seconds},
        resumed_after_epoch=saved.epoch if saved is not None else None,
        replicas=replicas,
        history_split=measure.history_split(logged, penalties),
        inference_mode=inference,
        l2_norms=measure.l2_norms(model, plan),
    )
    interrupts.phase("keras")
    log(f"saving {job.model_file.name}")
    keras_file.save_keras(model, job.model_file)
    return metrics


def _inference_mode(
    job: TrainJob,
    generated: GeneratedModule,
    model: Any,
    train: tuple[Any, Any],
    history: dict[str, list[float]],
    log: Log,
) -> dict[str, Any]:
    """Recompute the batch normalization statistics where the plan says so,
    then compare the model in inference mode (as it is scored and exported)
    on training data with what it scored there while training; a warning
    where it falls far below. What metrics.json says of it."""
    plan = job.plan
    metric = plan.task.metric_names[0]
    # Where the statistics are recomputed, this is only the "before" figure.
    samples = (
        measure.BEFORE_RECOMPUTE_SAMPLES
        if plan.batchnorm_statistics
        else measure.INFERENCE_CHECK_SAMPLES
    )
    score = measure.inference_score(plan, generated, model, *train, samples)
    found: dict[str, Any] = {
        "metric": metric,
        "while_training": history[metric][-1] if history.get(metric) else None,
        "batchnorm_statistics": ("recomputed" if plan.batchnorm_statistics else "kept")
        if plan.trains_batch_norm
        else None,
    }
    if plan.batchnorm_statistics:
        generated.recompute_batchnorm_statistics(model, *train)
        found["before_recompute"], score = (
            score,
            measure.inference_score(plan, generated, model, *train),
        )
        log(
            "recomputed the batch normalization statistics over the training "
            "data (train.batchnorm_statistics: recompute)"
            + (
                ""
                if score is None
                else f": in inference mode, {metric} on training data "
                f"{found['before_recompute']:.4f} before, {score:.4f} after"
            )
        )
    found["on_training_data"] = score
    gap = measure.inference_gap(plan, score, history)
    if gap:
        log(gap)
    return found


def _judge(
    job: TrainJob,
    metrics: dict[str, Any],
    y_train: Any,
    y_val: Any,
    y_test: Any,
    names: Any,
    log: Log,
) -> None:
    """Score the trivial baseline beside the model, say how the two compare,
    and whether the model learned: a warning where it did not, or NotLearned
    where the build requires learning."""
    plan = job.plan
    trivial = measure.baseline(plan, y_train, {"val": y_val, "test": y_test}, names)
    learning = measure.learning(plan, metrics["validation"]["scores"], trivial["val"])
    metrics.update(baseline=trivial, learned=learning["learned"], learning=learning)
    metric = plan.task.metric_names[0]
    log(
        f"test {metric} {metrics[f'test_{metric}']:.4f} against "
        f"{trivial['test'][metric]:.4f} for a trivial baseline: "
        f"{trivial['predicts']}"
    )
    if learning["learned"]:
        return
    if learning["learned"] is None:
        verdict = f"cannot tell whether the model learned: {learning['comparison']}"
    else:
        verdict = f"the model did not learn: {learning['comparison']}"
    if plan.require_learning:
        raise NotLearned(
            f"{verdict}; nothing was published (the build requires learning: "
            "train.require_learning or --require-learning). To publish this "
            "model as it is, build again with --resume and without "
            "--require-learning (or with --set train.require_learning=false)"
        )
    log(
        f"warning: {verdict}; its files are written all the same, with "
        f'"learned": {json.dumps(learning["learned"])} in metrics.json '
        "(--require-learning fails instead)"
    )


def _save_split(job: TrainJob, generated: GeneratedModule) -> None:
    """split.json: where each sample that trains, validates and tests comes
    from (as Dataset.ids says), the validation share split off as the
    generated validation_split does."""
    plan, data = job.plan, job.dataset
    ids = data.ids(test=False)
    train, validation = ids, None
    if plan.validation is not None:
        places = np.arange(len(ids))
        (kept, _), (held, _) = generated.validation_split(places, places)
        train, validation = ids[kept], ids[held]
    if plan.recipe.streamed:
        unit = f"image files, relative to {data.source}"
    elif plan.recipe.encodes:
        unit = "data rows of each CSV file, from 0 (no header, no blank lines)"
    else:
        unit = "places in the arrays: x_train (train, validation) and x_test (test)"
    manifest.write_json(
        job.model_file.parent / SPLIT,
        {
            "data": data.source,
            "split_seed": plan.split_seed,
            "ids": unit,
            "train": train.tolist(),
            "validation": "test" if validation is None else validation.tolist(),
            "test": data.ids(test=True).tolist(),
        },
    )


#: Where build --save-split writes the split.
SPLIT = "split.json"


def _make_model(
    plan: ModelPlan,
    generated: GeneratedModule,
    job: TrainJob,
    saved: Saved | None,
    x_train: Any,
) -> tuple[Any, int, list[Any]]:
    """The compiled model (in its strategy's scope, if any), its normalization
    adapted to `x_train`, restored from the saved state when resuming, its
    number of replicas, and early stopping's saved best weights."""
    best: list[Any] = []
    # A learning-rate schedule counts the batches of the run's epochs.
    schedule = (
        (math.ceil(len(x_train) / plan.batch_size), job.epochs) if plan.schedule else ()
    )

    def make() -> Any:
        # A csv's model is built for its inputs: vocabularies and fills.
        args = (job.dataset.encoding,) if plan.recipe.encodes else ()
        model = generated.compile_model(_build(plan, generated, args), *schedule)
        if plan.adapted:
            generated.adapt(model, x_train)
        if saved is not None:
            best.extend(resume_.restore(model, job.work, saved))
        return model

    if plan.distribute == "data_parallel":
        import keras

        return make(), len(keras.distribution.list_devices()), best
    if plan.distribute == "none":
        return make(), 1, best
    strategy = generated.make_strategy()
    with strategy.scope():
        return make(), int(strategy.num_replicas_in_sync), best


def _distribute(generated: GeneratedModule, plan: ModelPlan, log: Log) -> None:
    """Set the generated distribution (joining the other processes, where
    there are), checking that each batch splits evenly between the devices."""
    import keras

    try:
        keras.distribution.set_distribution(generated.distribution())
    except ValueError as error:  # BATCH_SIZE against the devices
        raise BuildError(
            f"train.distribute: data_parallel: {error}; set train.batch_size "
            "to a multiple of the number of devices"
        ) from error
    import jax

    devices, processes = len(keras.distribution.list_devices()), jax.process_count()
    log(
        f"data_parallel: {devices} "
        + ("device" if devices == 1 else "devices")
        + f" in {processes} "
        + ("process" if processes == 1 else "processes")
        + f" (this is process {jax.process_index()})"
    )


def _build(plan: ModelPlan, generated: GeneratedModule, args: tuple[Any, ...]) -> Any:
    """The generated module's model; a backbone's weights file is the one the
    spec names (the module's BACKBONE_WEIGHTS is as the spec writes it)."""
    backbone = plan.backbone
    named: dict[str, str] = {}
    if plan.initial_weights is not None:
        named["initial_weights"] = str(plan.initial_weights.path.resolve())
    if backbone is None:
        return generated.build_model(*args, **named)
    if backbone.weights_path is not None:
        weights = str(backbone.weights_path.path.resolve())
        return generated.build_model(*args, backbone_weights=weights, **named)
    try:
        return generated.build_model(*args, **named)
    except Exception as error:
        if backbone.weights != "imagenet":
            raise
        raise BuildError(imagenet_missing(backbone.keras_class, error)) from error


def _train(
    job: TrainJob,
    generated: GeneratedModule,
    model: Any,
    data: tuple[Any, Any, Any, Any],
    best: list[Any],
) -> tuple[dict[str, list[float]], list[float], float, dict[str, Any]]:
    """Train through the generated `train`; the whole history (with the saved
    epochs before it), the L2 penalty at each epoch's end, the seconds, and
    what early stopping did (epochs counted from 1)."""
    import keras

    plan, saved = job.plan, job.saved
    penalties = list(saved.penalties) if saved is not None else []
    divergence = callbacks.divergence_guard(keras)
    used = [callbacks.penalty_recorder(keras, penalties), divergence]
    stopper = generated.early_stopping() if plan.early_stopping else None
    epochs = job.epochs
    if stopper is not None:
        used.append(stopper)
        state = saved.early_stopping if saved is not None else None
        if saved is not None and state is not None:
            # Its on_train_begin forgets; this puts the saved state back.
            used.append(callbacks.stopping_restorer(keras, stopper, state, best))
            if state["stopped_epoch"]:  # it had stopped: train no further
                epochs = saved.epoch
    resumable: dict[str, Any] = {}
    if plan.distribute != "multi_worker":
        # Its custom loop prints its own lines, and saves no state.
        used.insert(0, callbacks.progress_bar(keras))
        used.append(
            resume_.saver(
                keras, job.work, job.key, job.epochs, saved, penalties, stopper
            )
        )
        resumable["initial_epoch"] = saved.epoch if saved is not None else 0
    if job.run is not None or job.events is not None:
        # After the saver: an epoch is logged once it is saved for --resume.
        used.append(tracking.epoch_logger(keras, job.run, job.events, penalties))
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
    if plan.distribute == "data_parallel":
        # Scored, measured and saved on one device, every sample, as the
        # generated main() does; the processes part here, together (one that
        # ended first would stop the others).
        keras.distribution.set_distribution(None)
        import jax

        if jax.distributed.is_initialized():
            jax.distributed.shutdown()  # type: ignore[no-untyped-call]
    if divergence.found is not None:
        raise Diverged(divergence.message(plan, job.epochs))
    seconds = time.perf_counter() - began
    logged = {k: [float(v) for v in values] for k, values in history.history.items()}
    logged, seconds = resume_.continued(saved, logged, seconds)
    stopped: dict[str, Any] = {}
    if stopper is not None:
        restored = stopper.restore_best_weights and stopper.best_weights is not None
        stopped = {
            "stopped_after_epoch": stopper.stopped_epoch + 1
            if stopper.stopped_epoch
            else None,
            "best_epoch": stopper.best_epoch + 1,
            # The epoch whose weights the model ends with.
            "weights_of_epoch": stopper.best_epoch + 1
            if restored
            else len(logged.get("loss", ())),
        }
    return logged, penalties, seconds, stopped
