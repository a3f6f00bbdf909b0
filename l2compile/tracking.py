"""Experiment tracking (train.tracking, build --track): an MLflow run per
build and TensorBoard event files in its folder.

The build opens the MLflow run before training and logs the spec's fields as
parameters; the training stage logs each epoch's metrics, with the data loss
and the L2 penalty apart, to the run and to TensorBoard as the epoch ends; the
build logs the test scores and the published files, and closes the run. A
build stopped and continued with --resume goes on in the run it began: the
run's id is kept in the work folder beside the saved epochs.

mlflow and tensorboard are extras (`l2compile[mlflow]`, `l2compile[tensorboard]`):
neither imports TensorFlow, so each epoch is logged from the training process
on any backend. Neither is imported unless a build tracks.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l2compile import interrupts, workfolder
from l2compile.errors import BuildError
from l2compile.nodes import TRACKED, ModelPlan, Tracking

Log = Callable[[str], None]

#: Where runs go unless MLFLOW_TRACKING_URI names a store: MLflow 3's own
#: default, a SQLite file in the working folder.
DEFAULT_STORE = "mlflow.db"
#: The work folder's note of the run a resumed build continues.
RUN_FILE = "mlflow_run.json"
#: The build folder's TensorBoard logs (`tensorboard --logdir build/NAME/tensorboard`).
TENSORBOARD = "tensorboard"
#: The published files a run keeps as artifacts: report.html, model.json,
#: metrics.json, manifest, the generated module, the spec, the TFLite files.
ARTIFACT_SUFFIXES = (".html", ".json", ".py", ".yaml", ".yml", ".tflite", ".txt")
#: A sweep's trials log under this run (its id, set by the sweep).
PARENT_ENV = "L2COMPILE_MLFLOW_PARENT"
#: What MLflow refuses in a parameter's or a metric's name, and its longest.
_NOT_IN_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")
MAX_KEY = 250
#: MLflow takes at most this many parameters and metrics in one call.
_BATCH = 100


@dataclass(frozen=True)
class Run:
    """An open MLflow run, as the training process reaches it (it pickles)."""

    uri: str
    run_id: str
    experiment: str


def missing(tracking: Tracking) -> str | None:
    """What to install for `tracking`, or None: said before training starts."""
    absent = [
        kind
        for kind in tracking.kinds
        if importlib.util.find_spec(TRACKED[kind]) is None
    ]
    if not absent:
        return None
    extras = ",".join(absent)
    return (
        f"train.tracking: {' and '.join(absent)} "
        + ("is" if len(absent) == 1 else "are")
        + f" not installed; install it with: pip install 'l2compile[{extras}]'"
    )


def store_uri(folder: Path | None = None) -> str:
    """MLFLOW_TRACKING_URI where set; else the SQLite store in `folder` (the
    working folder)."""
    named = os.environ.get("MLFLOW_TRACKING_URI")
    if named:
        return named
    return f"sqlite:///{((folder or Path.cwd()) / DEFAULT_STORE).resolve()}"


def parameters(fields: Mapping[str, Any]) -> dict[str, str]:
    """A spec's fields, flattened to the paths `--set` takes (`l2`,
    `train.optimizer.learning_rate`, `layers.1.units`), each value as JSON
    (a list of plain values stays one parameter: `input.shape`: `[28, 28]`).
    Fields left empty (None) are left out."""
    flat: dict[str, str] = {}
    for path, value in _leaves(fields, ()):
        key = _key(".".join(path))
        while key in flat:  # two names that only differed in what _key replaced
            key += "_"
        flat[key] = json.dumps(value) if not isinstance(value, str) else value
    return flat


def _key(name: str) -> str:
    """A name as MLflow takes it: letters, digits, `_ - . /` and spaces, at
    most 250 characters (a CSV column's name may hold anything)."""
    return _NOT_IN_KEY.sub("_", name)[:MAX_KEY]


def _leaves(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, (*path, str(key)))
    elif isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, str(index)))
    elif value is not None:
        yield path, value


def open_run(
    name: str,
    fields: Mapping[str, Any],
    spec: tuple[str, str],
    work: Path,
    *,
    resumed: bool,
    log: Log,
    run_name: str | None = None,
) -> Run:
    """The build's MLflow run: where the build resumes one, that run, marked
    running again; otherwise a new one in the experiment `name`, with the
    spec's `fields` as its parameters and its file (`spec`: its name and
    text, as read) as an artifact; a sweep's trial's goes under the sweep's
    run, which PARENT_ENV names."""
    from mlflow.tracking import MlflowClient

    for logger in ("mlflow", "alembic"):  # a new store's set-up lines
        logging.getLogger(logger).setLevel(logging.WARNING)
    uri = store_uri()
    client = MlflowClient(uri)
    noted = work / RUN_FILE
    if resumed and noted.is_file():
        run = Run(**json.loads(noted.read_text(encoding="utf-8")))
        if run.uri == uri and _exists(client, run.run_id):
            client.update_run(run.run_id, status="RUNNING")
            log(f"MLflow: continuing run {run.run_id} in {_shown(uri)}")
            return run
    experiment = _experiment(client, name)
    tags = {"l2compile.spec": name}
    noted_parent = os.environ.get(PARENT_ENV)  # a sweep's trial: under its run
    if noted_parent:
        parent = Run(**json.loads(noted_parent))
        tags["mlflow.parentRunId"] = parent.run_id
    made = client.create_run(experiment, tags=tags, run_name=run_name or name)
    run = Run(uri, made.info.run_id, experiment)
    from mlflow.entities import Param

    params = [Param(key, value[:6000]) for key, value in parameters(fields).items()]
    for start in range(0, len(params), _BATCH):
        client.log_batch(run.run_id, params=params[start : start + _BATCH])
    client.log_text(run.run_id, spec[1], Path(spec[0]).name)
    noted.write_text(json.dumps(run.__dict__), encoding="utf-8")
    log(f"MLflow: run {run.run_id} in {_shown(uri)}")
    return run


def _shown(uri: str) -> str:
    return uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else uri


def _exists(client: Any, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException:
        return False
    return True


def _experiment(client: Any, name: str) -> str:
    """The id of the experiment `name`, made if there is none."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    return str(client.create_experiment(name))


def log_metrics(run: Run, values: Mapping[str, float], step: int) -> None:
    """Log `values` at `step` (an epoch, counted from 1) to the run."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    now = int(time.time() * 1000)
    metrics = [
        Metric(key, float(value), now, step)
        for key, value in values.items()
        if math.isfinite(float(value))
    ]
    client = MlflowClient(run.uri)
    for start in range(0, len(metrics), _BATCH):
        client.log_batch(run.run_id, metrics=metrics[start : start + _BATCH])


def close_run(
    run: Run, *, scores: Mapping[str, float], files: list[Path], status: str
) -> None:
    """Log the test `scores` and the published `files` as artifacts, and end
    the run as `status` (FINISHED, FAILED, or KILLED: interrupted, to be
    resumed)."""
    from mlflow.tracking import MlflowClient

    if scores:
        log_metrics(run, scores, 0)
    client = MlflowClient(run.uri)
    for path in files:
        if path.is_dir():
            client.log_artifacts(run.run_id, str(path), path.name)
        elif path.is_file():
            client.log_artifact(run.run_id, str(path))
    client.set_terminated(run.run_id, status=status)


def build_run(plan: ModelPlan, work: Path, *, resumed: bool, log: Log) -> Run | None:
    """A build's MLflow run (None: it does not log to MLflow, or this worker
    is not the chief); a `resumed` build's is the run it began."""
    if not plan.tracking.mlflow or not workfolder.is_chief():
        return None
    fields = dict(plan.spec_fields)  # with what build --track added
    fields["train"] = {**fields.get("train", {}), "tracking": vars(plan.tracking)}
    spec = (plan.source_file, plan.spec_text)
    try:
        return open_run(plan.name, fields, spec, work, resumed=resumed, log=log)
    except Exception as error:  # the store's: before any training
        raise BuildError(
            f"train.tracking.mlflow: cannot open a run in {_shown(store_uri())}: "
            f"{type(error).__name__}: {error}. Nothing was trained; check "
            "MLFLOW_TRACKING_URI, or build without MLflow tracking"
        ) from error


def end_build(
    run: Run | None,
    published: tuple[Path, Mapping[str, Any]] | None,
    *,
    failure: BaseException | None = None,
    log: Log,
) -> None:
    """End a build's run, if any: where it `published` (its folder and
    metrics), with the test scores and the files; otherwise killed where the
    `failure` was an interrupt (--resume continues the run), else failed. A
    store that fails here fails no build: it is a warning."""
    if run is None:
        return
    try:
        if published is None:
            stopped = isinstance(failure, KeyboardInterrupt) or interrupts.received()
            status = "KILLED" if stopped else "FAILED"
            close_run(run, scores={}, files=[], status=status)
            return
        out, metrics = published
        scores = {
            key: float(value)
            for key, value in metrics.items()
            if key.startswith("test_") and isinstance(value, int | float)
        }
        files = sorted(
            path
            for path in out.iterdir()
            if path.name == TENSORBOARD or path.suffix in ARTIFACT_SUFFIXES
        )
        close_run(run, scores=scores, files=files, status="FINISHED")
    except Exception as error:  # the store's
        log(f"warning: MLflow: could not close run {run.run_id}: {error}")


def publish_events(plan: ModelPlan, work: Path, dest: Path) -> None:
    """Copy the TensorBoard logs, kept in the work folder across --resume,
    into the build's files."""
    if plan.tracking.tensorboard:
        shutil.copytree(work / TENSORBOARD, dest / TENSORBOARD)


class EventWriter:
    """TensorBoard event files in `folder`, written with tensorboard's own
    writer (which needs no TensorFlow)."""

    def __init__(self, folder: Path) -> None:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        folder.mkdir(parents=True, exist_ok=True)
        self._writer = EventFileWriter(str(folder))

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2

        summary = summary_pb2.Summary(
            value=[
                summary_pb2.Summary.Value(tag=key, simple_value=float(value))
                for key, value in values.items()
            ]
        )
        self._writer.add_event(
            event_pb2.Event(wall_time=time.time(), step=step, summary=summary)
        )
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def epoch_values(logs: Mapping[str, Any], penalty: float) -> dict[str, float]:
    """An epoch's metrics as Keras logged them, with the L2 penalty at its
    end and the losses without it (as metrics.json's history_split)."""
    values = {key: float(value) for key, value in logs.items()}
    values["l2_penalty"] = penalty
    for key, name in (("loss", "data_loss"), ("val_loss", "val_data_loss")):
        if key in values:
            values[name] = values[key] - penalty
    return values


def epoch_logger(
    keras: Any, run: Run | None, events: Path | None, penalties: list[float]
) -> Any:
    """A callback logging each epoch's metrics to `run` and to TensorBoard
    event files in `events` (steps: epochs counted from 1)."""

    class EpochLogger(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.writer = EventWriter(events) if events is not None else None
            self.failed = False

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            values = epoch_values(logs or {}, penalties[-1] if penalties else 0.0)
            values = {_key(name): value for name, value in values.items()}
            if run is not None and not self.failed:
                try:
                    log_metrics(run, values, epoch + 1)
                except Exception as error:  # the store's: training goes on
                    self.failed = True
                    print(
                        f"l2compile: warning: MLflow: epoch {epoch + 1} not logged "
                        f"({type(error).__name__}: {error}); training goes on, "
                        "and logs no more epochs to the run",
                        file=sys.stderr,
                    )
            if self.writer is not None:
                self.writer.scalars(values, epoch + 1)

        def on_train_end(self, logs: Any = None) -> None:
            if self.writer is not None:
                self.writer.close()

    return EpochLogger()
