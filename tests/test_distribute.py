"""train.distribute: mirrored, over two logical CPU devices.

TensorFlow splits a CPU into logical devices only before it starts, so each
test runs in a fresh Python process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, TEST_SPECS, compile_errors, plan_file

_TWO_CPUS = (
    "import json, os, sys\n"
    "from pathlib import Path\n"
    "import tensorflow as tf\n"
    "(cpu,) = tf.config.list_physical_devices('CPU')\n"
    "tf.config.set_logical_device_configuration(\n"
    "    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
)


def two_cpus(code: str, *args: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", _TWO_CPUS + code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_mirrored_training_equals_one_device_l2_included(tmp_path: Path) -> None:
    """Same weights, same data, same batches: the two-replica model ends where
    the one-device model does, so the L2 penalty counts once, not per replica."""
    from l2compile.render import render_module

    plan = plan_file(TEST_SPECS / "mirrored.yaml")
    (tmp_path / "mirrored_mlp.py").write_text(render_module(plan))
    found = two_cpus(
        "import numpy as np, keras\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import mirrored_mlp as m\n"
        "rng = np.random.default_rng(0)\n"
        "x = rng.integers(0, 255, size=(256, 28, 28)).astype(np.uint8)\n"
        "x, y = m.preprocess(x, rng.integers(0, 10, 256))\n"
        "keras.utils.set_random_seed(1)\n"
        "single = m.compile_model(m.build_model())\n"
        "strategy = m.make_strategy()\n"
        "with strategy.scope():\n"
        "    mirrored = m.compile_model(m.build_model())\n"
        "mirrored.set_weights(single.get_weights())\n"
        "fit = dict(batch_size=m.BATCH_SIZE, epochs=2, shuffle=False, verbose=0)\n"
        "one = single.fit(x, y, **fit).history['loss']\n"
        "two = mirrored.fit(x, y, **fit).history['loss']\n"
        "diff = max(float(np.max(np.abs(a - b)))\n"
        "           for a, b in zip(single.get_weights(), mirrored.get_weights()))\n"
        "print(json.dumps({'replicas': strategy.num_replicas_in_sync,\n"
        "                  'one': one, 'two': two, 'diff': diff,\n"
        "                  'penalty': [float(sum(single.losses)),\n"
        "                              float(sum(mirrored.losses))]}))\n",
        str(tmp_path),
    )
    assert found["replicas"] == 2
    for a, b in zip(found["one"], found["two"], strict=True):  # type: ignore[call-overload]
        assert abs(a - b) < 1e-5
    assert found["diff"] < 1e-5  # type: ignore[operator]
    one, two = found["penalty"]  # type: ignore[misc]
    assert abs(one - two) < 1e-6


def test_mirrored_build_trains_and_writes_every_artifact(
    tmp_path: Path, tiny_mnist: Path
) -> None:
    found = two_cpus(
        "from l2compile.generate import compile_spec\n"
        "from l2compile import build\n"
        "c = compile_spec(Path(sys.argv[1]))\n"
        "r = build.build(c.plan, c.code, Path(sys.argv[2]), data=Path(sys.argv[3]),\n"
        "                log=lambda m: None)\n"
        "print(json.dumps({'replicas': r.metrics['replicas'],\n"
        "                  'accuracy': r.metrics['test_accuracy'],\n"
        "                  'tflite': r.metrics['tflite']['files'],\n"
        "                  'artifacts': r.artifacts}))\n",
        str(TEST_SPECS / "mirrored.yaml"),
        str(tmp_path / "out"),
        str(tiny_mnist),
    )
    assert found["replicas"] == 2
    assert found["accuracy"] > 0.5  # type: ignore[operator]  # stripes are easy
    assert found["artifacts"] == [
        "labels.txt",
        "manifest.json",
        "metrics.json",
        "mirrored_mlp.py",
        "model.dynamic.tflite",
        "model.json",
        "model.keras",
        "model.tflite",
        "saved_model/",
    ]
    files = found["tflite"]
    assert abs(files["none"]["accuracy_drop"]) <= 0.001  # type: ignore[index]


def test_mirrored_with_several_steps_per_execution_is_refused(tmp_path: Path) -> None:
    text = (
        (TEST_SPECS / "mirrored.yaml")
        .read_text()
        .replace(
            "  distribute: mirrored", "  distribute: mirrored\n  steps_per_execution: 8"
        )
    )
    assert compile_errors(text, tmp_path) == [
        "spec.yaml:16:24: error: train.steps_per_execution: distribute: mirrored "
        "needs steps_per_execution: 1; Keras 3's multi-step loop fails under "
        "tf.distribute (keras-team/keras issue 19246)"
    ]
