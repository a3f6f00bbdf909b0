"""Graph specs through the whole pipeline: a build of a tiny residual graph on a
small data file (TFLite files and their parity, model.json, labels, the weight
norms under the functional model's variable paths), `l2compile eval` on its
artifacts, an interrupted build resumed, and decoupled weight decay on a graph."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from l2compile import build as builder
from l2compile import callbacks, export
from l2compile.contract import import_generated
from l2compile.datasets import read_npz
from l2compile.errors import Interrupted
from l2compile.generate import Compiled
from l2compile.sources import RECIPES

from .conftest import StopAt, compiled, make_mnist_npz

pytestmark = pytest.mark.build

# A residual block (an add on the stem) beside a 1x1 branch read from the
# input, joined by a concatenate.
GRAPH_SPEC = """\
name: tiny_graph
description: a tiny residual graph with an add and a concatenate
input: {shape: [28, 28, 1]}
l2: 0.001
layers:
  - {type: conv2d, filters: 4, kernel_size: 3, strides: 2, padding: same, \
activation: relu, name: stem}
  - {type: conv2d, filters: 4, kernel_size: 3, padding: same, activation: relu}
  - {type: add, inputs: [stem, conv2d_2], name: block}
  - {type: conv2d, filters: 2, kernel_size: 1, strides: 2, inputs: [input], \
name: side}
  - {type: concatenate, inputs: [block, side]}
  - {type: max_pooling2d, pool_size: 2}
  - {type: flatten}
  - {type: dense, units: 10, activation: softmax}
train:
  recipe: mnist
  epochs: 2
  batch_size: 32
  seed: 5
  backend: jax
"""
# backend: jax (auto would pick TensorFlow for the convolutions): the resume
# test stops training through a callback patched in this process, so its
# builds train here, on the suite's JAX, and the full build beside them too.

#: The weights the global l2 reaches, as Keras names them in a functional
#: model: no model-name prefix (a Sequential model's would be tiny_graph/...).
L2_PATHS = ["conv2d_2/kernel", "dense_1/kernel", "side/kernel", "stem/kernel"]

MODES = {
    "none": "model.tflite",
    "float16": "model.float16.tflite",
    "dynamic": "model.dynamic.tflite",
    "int8": "model.int8.tflite",
}


def _build(spec: Compiled, out: Path, data: Path, **options: Any) -> dict[str, Any]:
    """Build `spec` into `out` quietly; its metrics."""
    result = builder.build(
        spec.plan, spec.code, out, data=data, log=lambda m: None, **options
    )
    return result.metrics


@pytest.fixture(scope="module")
def graph_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Compiled, Path]:
    """The graph spec, compiled, and the folder it was built into."""
    tmp = tmp_path_factory.mktemp("graph")
    data = make_mnist_npz(tmp / "mnist.npz")
    spec = compiled(tmp, GRAPH_SPEC)
    assert not spec.plan.is_stack
    _build(spec, tmp / "out", data)
    return spec, tmp / "out"


def _metrics(out: Path) -> dict[str, Any]:
    return json.loads((out / "metrics.json").read_text())  # type: ignore[no-any-return]


def test_a_graph_builds_every_tflite_file_within_its_accuracy_drop(
    graph_build: tuple[Compiled, Path],
) -> None:
    import keras

    spec, out = graph_build
    files = _metrics(out)["tflite"]["files"]
    assert spec.plan.export_plans.get("tflite") is not None
    assert {mode: entry["file"] for mode, entry in files.items()} == MODES
    assert abs(files["none"]["accuracy_drop"]) <= 0.001
    for mode in ("float16", "dynamic", "int8"):
        assert (
            files[mode]["accuracy_drop"]
            <= spec.plan.export_plans.get("tflite").max_accuracy_drop
        )
    # The float32 file computes what the Keras model computes.
    model = keras.saving.load_model(out / "model.keras")
    manifest = json.loads((out / "manifest.json").read_text())
    data = read_npz(RECIPES["mnist"], Path(manifest["data"]))
    x = data.x_test.reshape(-1, 28, 28, 1).astype(np.float32) / np.float32(255)
    expected = np.asarray(model.predict(x, verbose=0))
    got, _, _ = export.tflite_predict(out / "model.tflite", x)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_a_graphs_model_json_and_labels_describe_its_input_and_output(
    graph_build: tuple[Compiled, Path],
) -> None:
    _, out = graph_build
    assert (out / "labels.txt").read_text().splitlines() == list("0123456789")
    model = json.loads((out / "model.json").read_text())
    assert model["input"]["name"] == "input"
    assert model["input"]["shape"] == [1, 28, 28, 1]
    assert model["output"]["name"] == "probabilities"
    assert model["output"]["shape"] == [1, 10]
    assert {m: f["file"] for m, f in model["files"].items()} == MODES


def test_a_graphs_weight_norms_are_keyed_by_its_functional_variable_paths(
    graph_build: tuple[Compiled, Path],
) -> None:
    spec, out = graph_build
    metrics = _metrics(out)
    norms = metrics["l2_norms"]
    assert sorted(norms) == L2_PATHS
    assert set(norms) == {
        spec.plan.weight_path(layer, w)
        for layer in spec.plan.layers
        for w in layer.weights
        if w.l2 > 0
    }
    # The penalty is 0.001 * the sum of the squared norms of those weights.
    squares = sum(n**2 for n in norms.values())
    penalty = metrics["test_loss_split"]["l2_penalty"]
    assert penalty == pytest.approx(0.001 * squares, rel=1e-4)


def test_eval_scores_a_graphs_keras_and_tflite_files_like_the_build(
    graph_build: tuple[Compiled, Path],
) -> None:
    from click.testing import CliRunner

    from l2compile.cli import main

    _, out = graph_build
    metrics = _metrics(out)
    data = json.loads((out / "manifest.json").read_text())["data"]
    spec = out.parent / "small.yaml"
    for artifact, accuracy in (
        ("model.keras", metrics["test_accuracy"]),
        ("model.tflite", metrics["tflite"]["files"]["none"]["test_accuracy"]),
    ):
        result = CliRunner().invoke(
            main, ["eval", str(out / artifact), "--spec", str(spec), "--data", data]
        )
        assert result.exit_code == 0, result.output
        lines = dict(
            line.split(":", 1)
            for line in result.stdout.splitlines()
            if not line.startswith(" ")
        )
        assert float(lines["accuracy"]) == pytest.approx(accuracy, abs=1e-4), artifact


def test_an_interrupted_graph_build_resumes_to_the_same_weights_and_metrics(
    graph_build: tuple[Compiled, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import keras

    _, full = graph_build
    data = Path(json.loads((full / "manifest.json").read_text())["data"])
    spec = compiled(tmp_path, GRAPH_SPEC + "export: {formats: [keras]}\n")
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        patch.setattr(callbacks, "penalty_recorder", StopAt(1))
        with pytest.raises(Interrupted) as stopped:
            _build(spec, out, data)
    assert (stopped.value.epoch, stopped.value.epochs) == (1, 2)

    again = _build(spec, out, data, resume=True)
    expected = _metrics(full)
    assert again["resumed_after_epoch"] == 1
    assert abs(again["test_loss"] - expected["test_loss"]) <= 1e-4
    assert again["test_accuracy"] == pytest.approx(expected["test_accuracy"], abs=1e-4)
    for name in ("loss", "val_loss"):
        np.testing.assert_allclose(
            again["history"][name], expected["history"][name], atol=1e-4
        )
    assert again["l2_norms"] == pytest.approx(expected["l2_norms"], abs=1e-4)
    resumed = keras.saving.load_model(out / "model.keras")
    uninterrupted = keras.saving.load_model(full / "model.keras")
    for a, b in zip(resumed.weights, uninterrupted.weights, strict=True):
        assert a.path == b.path
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


WEIGHT_DECAY_SPEC = """\
name: decayed_graph
input: {shape: [28, 28, 1]}
l2: 0
layers:
  - {type: conv2d, filters: 4, kernel_size: 3, padding: same, name: stem}
  - {type: batch_normalization}
  - {type: conv2d, filters: 4, kernel_size: 3, padding: same, inputs: [input]}
  - {type: add, inputs: [batch_normalization_1, conv2d_2]}
  - {type: global_average_pooling2d}
  - {type: dense, units: 10, activation: softmax}
train:
  recipe: mnist
  optimizer: {type: adam, learning_rate: 0.5, weight_decay: 0.1}
  epochs: 1
  batch_size: 32
"""


def test_weight_decay_on_a_graph_leaves_alone_the_functional_paths_it_lists(
    tmp_path: Path,
) -> None:
    import keras

    spec = compiled(tmp_path, WEIGHT_DECAY_SPEC)
    plan = spec.plan
    assert not plan.is_stack
    module_file = tmp_path / "decayed_graph.py"
    module_file.write_text(spec.code, encoding="utf-8")
    generated = import_generated(module_file, "decayed_graph_wd")
    skipped = (
        "stem/bias",
        "batch_normalization_1/gamma",
        "batch_normalization_1/beta",
        "conv2d_2/bias",
        "dense_1/bias",
    )
    listed: tuple[str, ...] = generated.NO_WEIGHT_DECAY  # type: ignore[attr-defined]
    assert listed == skipped
    model = generated.compile_model(generated.build_model())
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.AdamW)
    variables = model.trainable_variables
    assert set(skipped) < {v.path for v in variables}
    # One step with zero gradients moves nothing but what weight decay
    # reaches: each of those shrinks by learning_rate * weight_decay.
    for v in variables:
        v.assign(np.ones(v.shape, dtype="float32"))
    optimizer.apply_gradients(
        [(np.zeros(v.shape, dtype="float32"), v) for v in variables]
    )
    after = {v.path: np.asarray(v) for v in variables}
    decayed = {
        plan.weight_path(layer, w)
        for layer in plan.layers
        for w in layer.weights
        if w.weight_decay > 0
    }
    assert decayed == {"stem/kernel", "conv2d_2/kernel", "dense_1/kernel"}
    for path, value in after.items():
        expected = 1 - 0.5 * 0.1 if path in decayed else 1.0
        np.testing.assert_allclose(value, expected, atol=1e-6, err_msg=path)
