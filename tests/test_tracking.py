"""Tracking (train.tracking, build --track): an MLflow run per build, read
back with MlflowClient, TensorBoard event files read back with TensorBoard's
own reader, and one run for a build that was interrupted and resumed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from l2compile import build as builder
from l2compile import callbacks, tracking
from l2compile.errors import BuildError, Interrupted

from .conftest import SMALL_SPEC, StopAt, compiled, make_mnist_npz

#: Four epochs, both kinds of tracking, the keras file and the float TFLite file.
TRACKED = SMALL_SPEC.replace("epochs: 1", "epochs: 4").replace(
    "  validation: test\n", "  tracking: {mlflow: true, tensorboard: true}\n"
) + ("export: {formats: [keras, tflite], tflite: {quantize: [none]}}\n")


# --- unit ---------------------------------------------------------------------


@pytest.mark.unit
def test_parameters_are_the_paths_set_takes() -> None:
    fields = {
        "l2": 0.01,
        "description": "",
        "input": {"shape": [28, 28]},
        "layers": [{"type": "flatten"}, {"type": "dense", "units": 64}],
        "train": {"optimizer": {"learning_rate": 0.001}, "split_seed": None},
    }
    assert tracking.parameters(fields) == {
        "l2": "0.01",
        "description": "",
        "input.shape": "[28, 28]",
        "layers.0.type": "flatten",
        "layers.1.type": "dense",
        "layers.1.units": "64",
        "train.optimizer.learning_rate": "0.001",
    }


@pytest.mark.unit
def test_an_epoch_splits_its_losses_into_data_loss_and_penalty() -> None:
    values = tracking.epoch_values(
        {"loss": 1.5, "val_loss": 1.25, "accuracy": 0.5}, 0.5
    )
    assert values == {
        "loss": 1.5,
        "val_loss": 1.25,
        "accuracy": 0.5,
        "l2_penalty": 0.5,
        "data_loss": 1.0,
        "val_data_loss": 0.75,
    }


@pytest.mark.unit
def test_a_missing_package_is_named_with_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        tracking.importlib.util, "find_spec", lambda name: None
    )  # neither installed
    assert tracking.missing(tracking.Tracking()) is None
    message = tracking.missing(tracking.Tracking(mlflow=True, tensorboard=True))
    assert message is not None
    assert "pip install 'l2compile[mlflow,tensorboard]'" in message


@pytest.mark.unit
def test_the_store_is_the_environment_s_or_a_sqlite_file_here(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.store_uri(tmp_path) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking.store_uri(tmp_path) == "http://mlflow.example:5000"


# --- builds -------------------------------------------------------------------


def _client(store: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(store)


def _runs(store: str, name: str) -> list[Any]:
    client = _client(store)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    return list(client.search_runs([experiment.experiment_id]))


def _steps(store: str, run_id: str, key: str) -> list[int]:
    return [m.step for m in _client(store).get_metric_history(run_id, key)]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    (tmp_path / "runs").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path / "runs")  # MLflow's artifacts: ./mlruns
    return uri


@pytest.mark.build
def test_a_tracked_build_is_one_mlflow_run_with_its_fields_epochs_and_files(
    tmp_path: Path, store: str
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    data = make_mnist_npz(tmp_path / "data" / "mnist.npz")
    spec = compiled(tmp_path, TRACKED)
    out = tmp_path / "out"
    result = builder.build(spec.plan, spec.code, out, data=data, log=lambda m: None)

    (run,) = _runs(store, "small_mlp")
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["l2"] == "0.01"
    assert params["layers.1.units"] == "16"
    assert params["train.optimizer.learning_rate"] == "0.001"
    assert params["train.tracking.mlflow"] == "true"
    # Every epoch's metrics, the L2 penalty and the data loss apart.
    for key in ("loss", "val_loss", "l2_penalty", "data_loss", "val_data_loss"):
        assert _steps(store, run.info.run_id, key) == [1, 2, 3, 4], key
    penalties = _client(store).get_metric_history(run.info.run_id, "l2_penalty")
    split = result.metrics["history_split"]
    assert [m.value for m in penalties] == pytest.approx(split["l2_penalty"])
    assert run.data.metrics["test_loss"] == pytest.approx(result.metrics["test_loss"])
    artifacts = {a.path for a in _client(store).list_artifacts(run.info.run_id)}
    assert {
        "report.html",
        "model.json",
        "metrics.json",
        "small.yaml",
        "small_mlp.py",
        "model.tflite",
        "tensorboard",
    } <= artifacts
    assert "model.keras" not in artifacts

    # TensorBoard's own reader finds each epoch's scalars in the build folder.
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert {"loss", "val_loss", "l2_penalty", "data_loss"} <= set(
        events.Tags()["scalars"]
    )
    assert [e.step for e in events.Scalars("l2_penalty")] == [1, 2, 3, 4]
    assert [e.value for e in events.Scalars("l2_penalty")] == pytest.approx(
        split["l2_penalty"]
    )


@pytest.mark.build
def test_an_interrupted_and_resumed_build_is_one_run(
    tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_mnist_npz(tmp_path / "data" / "mnist.npz")
    spec = compiled(tmp_path, TRACKED)
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        patch.setattr(callbacks, "penalty_recorder", StopAt(2))
        with pytest.raises(Interrupted):
            builder.build(spec.plan, spec.code, out, data=data, log=lambda m: None)
    (stopped,) = _runs(store, "small_mlp")
    assert stopped.info.status == "KILLED"
    assert _steps(store, stopped.info.run_id, "l2_penalty") == [1, 2]

    messages: list[str] = []
    builder.build(
        spec.plan, spec.code, out, data=data, resume=True, log=messages.append
    )
    (run,) = _runs(store, "small_mlp")
    assert run.info.run_id == stopped.info.run_id
    assert run.info.status == "FINISHED"
    assert f"MLflow: continuing run {run.info.run_id} in" in "\n".join(messages)
    assert _steps(store, run.info.run_id, "l2_penalty") == [1, 2, 3, 4]
    assert (out / "tensorboard").is_dir()

    # A build that starts over is a new run.
    builder.build(spec.plan, spec.code, out, data=data, log=lambda m: None)
    assert len(_runs(store, "small_mlp")) == 2


@pytest.mark.build
def test_a_failed_build_ends_its_run_as_failed(tmp_path: Path, store: str) -> None:
    # One label only: the model cannot beat the trivial baseline, and the
    # build requires it to.
    data = make_mnist_npz(tmp_path / "data" / "mnist.npz")
    with np.load(data) as arrays:
        same = {**arrays, "y_train": np.zeros_like(arrays["y_train"])}
    np.savez(data, **same)
    spec = compiled(
        tmp_path, TRACKED.replace("seed: 7", "seed: 7\n  require_learning: true")
    )
    with pytest.raises(BuildError, match=r"did not learn|cannot tell"):
        builder.build(spec.plan, spec.code, tmp_path / "out", data=data, log=print)
    (run,) = _runs(store, "small_mlp")
    assert run.info.status == "FAILED"
    # Its epochs are kept for --resume, with the run it continues.
    recorded = json.loads((tmp_path / ".out.partial" / tracking.RUN_FILE).read_text())
    assert recorded["run_id"] == run.info.run_id


@pytest.mark.build
def test_a_tracked_sweep_is_a_run_with_a_run_per_trial_in_the_default_store(
    tmp_path: Path,
) -> None:
    data = make_mnist_npz(tmp_path / "mnist.npz", n_train=200, n_test=64)
    (tmp_path / "spec.yaml").write_text(SMALL_SPEC, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    command = [sys.executable, "-m", "l2compile", "sweep", "spec.yaml"]
    command += ["--set", "l2=0,0.01", "--data", str(data), "--out", "out"]
    command += ["--track", "mlflow"]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    # No MLFLOW_TRACKING_URI: MLflow's own default, mlflow.db where it ran.
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = _runs(store, "small_mlp")
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    trials = [r for r in runs if r is not parent]
    assert parent.info.run_name == "spec sweep" and parent.info.status == "FINISHED"
    assert sorted(r.data.params["l2"] for r in trials) == ["0.0", "0.01"]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in trials)
    assert all(r.info.status == "FINISHED" for r in trials)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    best = next(r for r in results["trials"] if r["trial"] == results["best"])
    assert parent.data.metrics["best.val_accuracy"] == pytest.approx(
        best["val_accuracy"]
    )
    artifacts = {a.path for a in _client(store).list_artifacts(parent.info.run_id)}
    assert {"results.csv", "report.html", "spec.yaml"} <= artifacts


@pytest.mark.unit
def test_a_column_name_mlflow_refuses_becomes_a_name_it_takes() -> None:
    fields = {"train": {"columns": {"price ($)": "number", "price (€)": "number"}}}
    assert tracking.parameters(fields) == {
        "train.columns.price ___": "number",
        "train.columns.price ____": "number",
    }
    long = tracking.parameters({"x" * 400: 1})
    assert [len(key) for key in long] == [tracking.MAX_KEY]


@pytest.mark.build
def test_a_store_that_cannot_be_reached_stops_the_build_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server that is not there (nothing listens on port 9), asked once.
    port = 9
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    data = make_mnist_npz(tmp_path / "data" / "mnist.npz")
    spec = compiled(tmp_path, TRACKED)
    said: list[str] = []
    with pytest.raises(BuildError, match="cannot open a run in") as error:
        builder.build(
            spec.plan, spec.code, tmp_path / "out", data=data, log=said.append
        )
    assert "Nothing was trained" in str(error.value)
    assert not any("training small_mlp" in line for line in said)
    # Nothing is left: no build folder, no work folder beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "small.yaml"]
