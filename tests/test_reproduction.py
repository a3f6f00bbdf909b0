"""The article, end to end: `l2compile build specs/mnist.yaml` on the real MNIST.

Real training runs on the full MNIST (a few minutes on two cores). The data is
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

from l2compile.datasets import load_dataset
from l2compile.sources import RECIPES

from .conftest import ROOT

pytestmark = [pytest.mark.training, pytest.mark.needs_mnist]

# The article reports test accuracy 0.9161 and test loss 0.7456.
ACCURACY_BAND = (0.906, 0.926)
LOSS_BAND = (0.696, 0.796)


def build(spec: str, out: Path, *more: str) -> subprocess.CompletedProcess[str]:
    """Run `l2compile build SPEC --out OUT [MORE]` as a user would."""
    result = subprocess.run(
        [sys.executable, "-m", "l2compile", "build", spec, "--out", str(out), *more],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def article_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("article") / "mnist_mlp"
    return out, build("specs/mnist.yaml", out).stdout


def test_build_reproduces_the_articles_accuracy_and_loss(
    article_build: tuple[Path, str],
) -> None:
    out, stdout = article_build
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["backend"] == "jax"  # auto's pick: no convolutions
    assert metrics["backend_reason"] in ("no convolutions", "a GPU")
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


# The article's model has 109,386 parameters: 4 bytes each in float32, 2 in
# float16, and about 1 (107 KiB) at 8 bits. Each file may exceed that floor by
# a little for its graph and quantization parameters.
SIZE_LIMITS = {
    "model.tflite": 4 * 109_386 * 1.01,
    "model.float16.tflite": 2 * 109_386 * 1.05,
    "model.dynamic.tflite": 109_386 * 1.10,
    "model.int8.tflite": 109_386 * 1.10,
}
# How far below the Keras model's test accuracy each file may score.
ACCURACY_DROPS = {
    "model.tflite": 0.001,
    "model.float16.tflite": 0.001,
    "model.dynamic.tflite": 0.003,
    "model.int8.tflite": 0.003,
}


def test_tflite_files_are_small_named_labelled_and_accurate(
    article_build: tuple[Path, str],
) -> None:
    """Each TFLite file, run here sample by sample through its named signature
    with the LiteRT interpreter on the real test set."""
    from ai_edge_litert.interpreter import Interpreter

    out, _ = article_build
    metrics = json.loads((out / "metrics.json").read_text())
    keras_accuracy = metrics["test_accuracy"]
    assert (out / "labels.txt").read_text().splitlines() == list("0123456789")
    data = load_dataset(RECIPES["mnist"])
    assert len(data.x_test) == 10_000
    x = data.x_test.reshape(-1, 1, 784).astype(np.float32) / 255.0
    for name, limit in SIZE_LIMITS.items():
        size = (out / name).stat().st_size
        assert size <= limit, (name, size)
        interpreter = Interpreter(model_path=str(out / name))
        assert interpreter.get_signature_list() == {
            "serving_default": {"inputs": ["input"], "outputs": ["probabilities"]}
        }
        runner = interpreter.get_signature_runner("serving_default")
        predicted = np.array(
            [np.argmax(runner(input=sample)["probabilities"]) for sample in x]
        )
        accuracy = float(np.mean(predicted == data.y_test))
        assert accuracy >= keras_accuracy - ACCURACY_DROPS[name], (name, accuracy)
        if name == "model.tflite":
            assert abs(accuracy - keras_accuracy) <= 0.001
        mode = {v: k for k, v in MODES.items()}[name]
        assert metrics["tflite"]["files"][mode]["test_accuracy"] == pytest.approx(
            accuracy
        )


MODES = {
    "none": "model.tflite",
    "float16": "model.float16.tflite",
    "dynamic": "model.dynamic.tflite",
    "int8": "model.int8.tflite",
}


@pytest.mark.parametrize(
    ("spec", "floor", "backend"),
    [
        # Each floor sits below every result measured across data orders,
        # seeds and backends (docs/benchmarks.md, "The specs in specs/"): the
        # CNN's 0.9899-0.9918, the residual CNN's 0.9747-0.9868. Each builds
        # on the backend train.backend: auto picks here: TensorFlow for the
        # two that convolve (on a CPU; the CNN's build takes about 90 s there
        # against about 320 s on JAX), JAX for the LSTM.
        ("specs/mnist_cnn.yaml", 0.988, "tensorflow"),
        ("specs/mnist_lstm.yaml", 0.97, "jax"),
        ("specs/mnist_resnet.yaml", 0.97, "tensorflow"),  # a graph
    ],
)
def test_spec_reaches_its_accuracy_on_the_real_test_set(
    tmp_path: Path, spec: str, floor: float, backend: str
) -> None:
    out = tmp_path / "build"
    result = build(spec, out)
    metrics = json.loads((out / "metrics.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    reason = metrics["backend_reason"]
    assert (manifest["backend"], manifest["backend_reason"]) == (
        metrics["backend"],
        reason,
    )
    assert f"l2compile: training on {metrics['backend']} (auto: {reason})" in (
        result.stderr.splitlines()
    )
    if reason != "a GPU":
        assert metrics["backend"] == backend
    assert metrics["test_accuracy"] >= floor
    assert abs(metrics["tflite"]["files"]["none"]["accuracy_drop"]) <= 0.001
    # L2 is on: the penalty is part of the loss, and every kernel has a norm.
    assert metrics["test_loss_split"]["l2_penalty"] > 0
    assert metrics["l2_norms"]
