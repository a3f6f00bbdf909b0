"""The article, end to end: `l2compile build specs/mnist.yaml` on the real MNIST.

A real 10-epoch training run (about a minute on two cores). The data is
found as a user's would be: $L2COMPILE_DATA (set by CI and conftest.py),
the Keras cache, or Keras' download.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from l2compile.datasets import RECIPES, load_dataset

from .conftest import ROOT

pytestmark = pytest.mark.training

# The article reports test accuracy 0.9161 and test loss 0.7456.
ACCURACY_BAND = (0.906, 0.926)
LOSS_BAND = (0.696, 0.796)


@pytest.fixture(scope="module")
def article_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("article") / "mnist_mlp"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "l2compile",
            "build",
            "specs/mnist.yaml",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


def test_build_reproduces_the_articles_accuracy_and_loss(
    article_build: tuple[Path, str],
) -> None:
    out, stdout = article_build
    metrics = json.loads((out / "metrics.json").read_text())
    assert ACCURACY_BAND[0] <= metrics["test_accuracy"] <= ACCURACY_BAND[1]
    assert LOSS_BAND[0] <= metrics["test_loss"] <= LOSS_BAND[1]
    assert len(metrics["history"]["val_loss"]) == 10
    # The article's loss is more than half L2 penalty.
    split = metrics["test_loss_split"]
    assert split["l2_penalty"] > split["data_loss"]
    # The build prints the article's two lines.
    lines = stdout.splitlines()
    assert f"Test loss: {metrics['test_loss']}" in lines
    assert f"Test accuracy: {metrics['test_accuracy']}" in lines
    assert lines[-1] == f"  {out / 'saved_model'}"


def test_tflite_matches_keras_on_the_real_test_set(
    article_build: tuple[Path, str],
) -> None:
    from ai_edge_litert.interpreter import Interpreter

    out, _ = article_build
    metrics = json.loads((out / "metrics.json").read_text())
    data = load_dataset(RECIPES["mnist"])
    assert len(data.x_test) == 10_000
    x = data.x_test.reshape(-1, 784).astype(np.float32) / 255.0

    interpreter = Interpreter(model_path=str(out / "model.tflite"))
    (inp,) = interpreter.get_input_details()
    (outp,) = interpreter.get_output_details()
    interpreter.resize_tensor_input(inp["index"], [1000, 784])
    interpreter.allocate_tensors()
    predicted = []
    for start in range(0, len(x), 1000):
        interpreter.set_tensor(inp["index"], x[start : start + 1000])
        interpreter.invoke()
        predicted.append(np.argmax(interpreter.get_tensor(outp["index"]), axis=-1))
    accuracy = float(np.mean(np.concatenate(predicted) == data.y_test))
    assert abs(accuracy - metrics["test_accuracy"]) <= 0.001


@pytest.mark.parametrize(
    ("spec", "floor"), [("specs/mnist_cnn.yaml", 0.99), ("specs/mnist_lstm.yaml", 0.97)]
)
def test_spec_reaches_its_accuracy_on_the_real_test_set(
    tmp_path: Path, spec: str, floor: float
) -> None:
    out = tmp_path / "build"
    result = subprocess.run(
        [sys.executable, "-m", "l2compile", "build", spec, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= floor
    assert abs(metrics["tflite"]["files"]["none"]["accuracy_drop"]) <= 0.001
    # L2 is on: the penalty is part of the loss, and every kernel has a norm.
    assert metrics["test_loss_split"]["l2_penalty"] > 0
    assert metrics["l2_norms"]
