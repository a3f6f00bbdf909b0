"""Batch normalization's statistics that match the weights: after training, a
build recomputes the moving mean and variance of every batch normalization
layer that trained (train.batchnorm_statistics: recompute, the default), and
warns where the model in inference mode scores far below its training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from l2compile import measure

from .conftest import SMALL_SPEC, compiled, make_image_folder, plan_text

BN_SPEC = SMALL_SPEC.replace(
    "  - {type: dropout, rate: 0.1}\n",
    "  - {type: batch_normalization}\n  - {type: dropout, rate: 0.1}\n",
)


def _with(text: str, line: str) -> str:
    return text.replace("  seed: 7\n", f"  seed: 7\n  {line}\n")


@pytest.mark.unit
def test_statistics_are_recomputed_where_a_layer_trains_them(tmp_path: Path) -> None:
    plan = plan_text(BN_SPEC, tmp_path)
    assert (plan.trains_batch_norm, plan.batchnorm_statistics) == (True, True)
    assert "recompute_batchnorm_statistics" in plan.optional_members
    kept = plan_text(_with(BN_SPEC, "batchnorm_statistics: keep"), tmp_path)
    assert (kept.trains_batch_norm, kept.batchnorm_statistics) == (True, False)
    plain = plan_text(SMALL_SPEC, tmp_path)
    assert (plain.trains_batch_norm, plain.batchnorm_statistics) == (False, False)
    assert "recompute_batchnorm_statistics" not in plain.optional_members


@pytest.mark.unit
@pytest.mark.parametrize(
    ("backbone", "trains"),
    [
        ("weights: none, trainable: true", True),
        ("weights: none, fine_tune_from: 100", True),
        ("weights: none", False),  # frozen
        ("weights: imagenet, trainable: true", False),  # its statistics stay
    ],
)
def test_a_backbone_trains_its_statistics_only_from_scratch(
    tmp_path: Path, backbone: str, trains: bool
) -> None:
    text = (
        "name: b\ndescription: a backbone\ninput: {shape: [32, 32, 3]}\nl2: 0.001\n"
        "layers:\n"
        f"  - {{type: backbone, model: mobilenet_v3_small, {backbone}}}\n"
        "  - {type: global_average_pooling2d}\n"
        "  - {type: dense, units: 3, activation: softmax}\n"
        "train: {recipe: image_folder, data: photos/, epochs: 1, batch_size: 8}\n"
    )
    plan = plan_text(text, tmp_path)
    assert (plan.trains_batch_norm, plan.batchnorm_statistics) == (trains, trains)


@pytest.mark.unit
def test_a_distributed_build_keeps_the_statistics_and_says_so(tmp_path: Path) -> None:
    text = _with(BN_SPEC, "distribute: mirrored\n  steps_per_execution: 1")
    plan = plan_text(text, tmp_path)
    assert plan.batchnorm_statistics is False
    assert [str(w) for w in plan.warnings] == [
        "spec.yaml:16:15: warning: train.distribute: batch normalization keeps the "
        "statistics training left under distribute: mirrored "
        "(train.batchnorm_statistics recomputes them on one device only)"
    ]


@pytest.mark.unit
def test_a_model_far_worse_in_inference_mode_is_named_with_both_numbers(
    tmp_path: Path,
) -> None:
    kept = plan_text(_with(BN_SPEC, "batchnorm_statistics: keep"), tmp_path)
    history = {"accuracy": [0.5, 0.95]}
    assert measure.inference_gap(kept, 0.80, history) is None  # within 0.2
    assert measure.inference_gap(kept, None, history) is None  # not measured
    assert measure.inference_gap(kept, 0.34, history) == (
        "warning: in inference mode the model scores accuracy 0.3400 on training "
        "data, against 0.9500 while it trained: its scores and exported files "
        "are of the inference mode; its batch normalization statistics are as "
        "training left them (train.batchnorm_statistics: recompute matches them "
        "to the weights)"
    )
    plain = plan_text(SMALL_SPEC, tmp_path)
    said = measure.inference_gap(plain, 0.34, history)
    assert said is not None and said.endswith("are of the inference mode")


@pytest.mark.unit
def test_the_module_recomputes_after_training_and_only_where_planned(
    tmp_path: Path,
) -> None:
    code = compiled(tmp_path, BN_SPEC).code
    main = code[code.index("def main(") :]
    assert (
        main.index("    train(model,")
        < main.index("    recompute_batchnorm_statistics(model, x_train, y_train)")
        < main.index("model.evaluate(")
    )
    kept = compiled(tmp_path, _with(BN_SPEC, "batchnorm_statistics: keep")).code
    assert "batchnorm" not in kept


SCRATCH_SPEC = """\
name: scratch
description: MobileNetV3Small from scratch on a small image folder
input: {shape: [32, 32, 3]}
l2: 0.0001
layers:
  - {type: backbone, model: mobilenet_v3_small, weights: none, trainable: true}
  - {type: global_average_pooling2d}
  - {type: dense, units: 3, activation: softmax}
train:
  recipe: image_folder
  data: photos/
  epochs: 3
  batch_size: 16
  seed: 3
export: {formats: [keras]}
"""


@pytest.mark.build
def test_a_mobilenet_from_scratch_scores_near_its_training_not_at_chance(
    tmp_path: Path,
) -> None:
    """Measured here: 1.0 on its training batches, 0.35 in inference mode
    with the statistics training left (chance is a third; test accuracy
    0.33), 1.0 once recomputed (test accuracy 1.0)."""
    from l2compile import build as builder

    make_image_folder(tmp_path / "photos", channels=3, per_class=60, size=32)
    spec = compiled(tmp_path, SCRATCH_SPEC)
    lines: list[str] = []
    result = builder.build(spec.plan, spec.code, tmp_path / "out", log=lines.append)
    metrics: dict[str, Any] = result.metrics
    trained = metrics["history"]["accuracy"][-1]
    mode = metrics["inference_mode"]
    assert mode["batchnorm_statistics"] == "recomputed"
    assert mode["while_training"] == trained >= 0.9
    # Without the recomputation this very model is near chance (a third) ...
    assert mode["before_recompute"] <= 0.5
    # ... and with it, it scores near its training accuracy.
    assert mode["on_training_data"] >= trained - 0.1
    assert metrics["test_accuracy"] >= trained - 0.1
    assert (
        "recomputed the batch normalization statistics over the training data "
        "(train.batchnorm_statistics: recompute): in inference mode, accuracy on "
        f"training data {mode['before_recompute']:.4f} before, "
        f"{mode['on_training_data']:.4f} after"
    ) in lines
    assert not [line for line in lines if line.startswith("warning: in inference")]
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["inference_mode"] == mode
    # train.backend: auto says what it picked, and why, in one line and in
    # both records (on a GPU it picks JAX).
    reason = metrics["backend_reason"]
    assert f"training on {metrics['backend']} (auto: {reason})" in lines
    if reason != "a GPU":
        assert (metrics["backend"], reason) == (
            "tensorflow",
            "a backbone layer on a CPU",
        )
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (manifest["backend"], manifest["backend_reason"]) == (
        metrics["backend"],
        reason,
    )


# Run on one backend: recompute a batch normalization layer's statistics over
# 2.5 batches (its input is the data itself), and print what it set, what the
# full batches' own statistics average to, and its momentum after.
_RECOMPUTE = """\
import json, sys
import numpy as np
from pathlib import Path
from l2compile.contract import import_generated
module = import_generated(Path(sys.argv[1]), "small_mlp")
import keras
model = keras.Sequential([keras.Input((28, 28)), keras.layers.BatchNormalization()])
x = np.random.default_rng(0).normal(2.0, 3.0, (80, 28, 28)).astype("float32")
y = np.zeros(80, dtype="int64")
module.recompute_batchnorm_statistics(model, x, y)
batches = module.Batches(x, y)
full = [np.asarray(batches[i][0], dtype=np.float64) for i in range(2)]
norm = model.layers[0]
print(json.dumps({
    "mean": np.asarray(norm.moving_mean).tolist(),
    "variance": np.asarray(norm.moving_variance).tolist(),
    "expected_mean": np.mean([b.mean(axis=(0, 1)) for b in full], axis=0).tolist(),
    "expected_variance": np.mean([b.var(axis=(0, 1)) for b in full], axis=0).tolist(),
    "momentum": norm.momentum,
}))
"""


@pytest.mark.build
@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_the_statistics_are_the_average_of_the_full_batches(
    tmp_path: Path, backend: str
) -> None:
    """The compiled pass (jax.jit of a stateless call, or a tf.function) sets
    each layer's moving statistics to its full batches' average, and gives
    the layer its momentum back."""
    module = tmp_path / "small_mlp.py"
    module.write_text(compiled(tmp_path, BN_SPEC).code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-c", _RECOMPUTE, str(module)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.splitlines()[-1])
    np.testing.assert_allclose(found["mean"], found["expected_mean"], rtol=1e-4)
    np.testing.assert_allclose(found["variance"], found["expected_variance"], rtol=1e-4)
    assert found["momentum"] == 0.99
    # Not the statistics of all 80 samples: the partial batch is left out.
    x = np.random.default_rng(0).normal(2.0, 3.0, (80, 28, 28))
    assert not np.allclose(found["mean"], x.mean(axis=(0, 1)), rtol=1e-4)


class _Model:
    """Keras' evaluate as the inference-mode check calls it: the steps asked."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def evaluate(self, batches: object, steps: int, **_: object) -> dict[str, float]:
        self.steps.append(steps)
        return {"accuracy": 0.5}


class _Generated:
    """The generated module's Batches and recomputation, as stand-ins."""

    recomputed = 0

    class Batches:
        def __init__(self, x: list[int], y: list[int]) -> None:
            self.n = len(x)

        def __len__(self) -> int:
            return -(-self.n // 32)

    def recompute_batchnorm_statistics(self, *_: object) -> None:
        self.recomputed += 1


@pytest.mark.unit
@pytest.mark.parametrize(("line", "steps"), [("", [16, 63]), ("keep", [63])])
def test_the_score_before_the_recomputation_is_read_on_fewer_samples(
    tmp_path: Path, line: str, steps: list[int]
) -> None:
    """The score before the recomputation is only reported: 512 training
    samples (16 batches of 32); the one the warning reads, after it or where
    the statistics are kept, 2,000 (63 batches)."""
    from types import SimpleNamespace

    from l2compile import training

    text = _with(BN_SPEC, "batchnorm_statistics: keep") if line else BN_SPEC
    plan = plan_text(text, tmp_path)
    model, generated = _Model(), _Generated()
    train = (list(range(5000)), list(range(5000)))
    history = {"accuracy": [0.5]}
    found = training._inference_mode(
        SimpleNamespace(plan=plan),  # type: ignore[arg-type]
        generated,  # type: ignore[arg-type]
        model,
        train,
        history,
        lambda _: None,
    )
    assert model.steps == steps
    assert generated.recomputed == (0 if line else 1)
    assert found["on_training_data"] == 0.5
