"""train.distribute: mirrored, over two logical CPU devices.

TensorFlow splits a CPU into logical devices only before it starts, so each
test runs in a fresh Python process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

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
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.build
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


@pytest.mark.build
def test_mirrored_build_trains_and_writes_every_artifact(
    tmp_path: Path, tiny_mnist: Path
) -> None:
    found = two_cpus(
        "from l2compile.generate import compile_spec\n"
        "from l2compile import build, callbacks\n"
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
        "report.html",
        "saved_model/",
    ]
    files = found["tflite"]
    assert abs(files["none"]["accuracy_drop"]) <= 0.001  # type: ignore[index]


@pytest.mark.unit
def test_mirrored_with_several_steps_per_execution_is_refused(tmp_path: Path) -> None:
    text = (
        (TEST_SPECS / "mirrored.yaml")
        .read_text()
        .replace(
            "  distribute: mirrored", "  distribute: mirrored\n  steps_per_execution: 8"
        )
    )
    assert compile_errors(text, tmp_path) == [
        "spec.yaml:17:24: error: train.steps_per_execution: distribute: mirrored "
        "needs steps_per_execution: 1; Keras 3's multi-step loop fails under "
        "tf.distribute (keras-team/keras issue 19246)"
    ]


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.build
def test_two_workers_train_in_lockstep_and_only_the_chief_publishes(
    tmp_path: Path, tiny_mnist: Path
) -> None:
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    out = tmp_path / "build"
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "l2compile",
                "build",
                str(TEST_SPECS / "multi_worker.yaml"),
                "--out",
                str(out),
                "--data",
                str(tiny_mnist),
            ],
            cwd=ROOT,
            env={
                **os.environ,
                "TF_CPP_MIN_LOG_LEVEL": "2",
                "TF_CONFIG": json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": index}}
                ),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
    chief, other = (stdout.splitlines() for stdout, _ in outputs)
    assert other[-1] == "Not the chief worker: the chief publishes the artifacts."
    # Both replicas of the model end with the same scores: they trained together.
    scores = [line for line in chief if line.startswith("Test ")]
    assert scores == [line for line in other if line.startswith("Test ")]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["replicas"] == 2
    assert metrics["test_accuracy"] > 0.5
    assert abs(metrics["tflite"]["files"]["none"]["accuracy_drop"]) <= 0.001
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build", "data"]


@pytest.mark.build
def test_custom_step_keeps_fits_math_l2_included(tmp_path: Path) -> None:
    """The multi-worker custom step and fit, from the same weights on the same
    single batch per epoch, end with the same weights and penalty."""
    from l2compile.render import render_module

    plan = plan_file(TEST_SPECS / "multi_worker.yaml")
    (tmp_path / "custom.py").write_text(render_module(plan))
    fitted = dataclasses.replace(plan, distribute="none")
    (tmp_path / "fitted.py").write_text(render_module(fitted))
    found = two_cpus(
        "import numpy as np, keras\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import custom, fitted\n"
        "rng = np.random.default_rng(0)\n"
        "x = rng.integers(0, 255, size=(custom.BATCH_SIZE, 28, 28)).astype(np.uint8)\n"
        "x, y = custom.preprocess(x, rng.integers(0, 10, custom.BATCH_SIZE))\n"
        "keras.utils.set_random_seed(1)\n"
        "plain = fitted.compile_model(fitted.build_model())\n"
        "with custom.make_strategy().scope():\n"
        "    model = custom.compile_model(custom.build_model())\n"
        "model.set_weights(plain.get_weights())\n"
        "plain.fit(x, y, batch_size=fitted.BATCH_SIZE, epochs=3, verbose=0)\n"
        "custom.train(model, x, y, x, y, epochs=3, verbose=0)\n"
        "diff = max(float(np.max(np.abs(a - b)))\n"
        "           for a, b in zip(plain.get_weights(), model.get_weights()))\n"
        "print(json.dumps({'diff': diff, 'penalty': [float(sum(plain.losses)),\n"
        "                  float(sum(model.losses))]}))\n",
        str(tmp_path),
    )
    assert found["diff"] < 1e-5  # type: ignore[operator]
    one, two = found["penalty"]  # type: ignore[misc]
    assert abs(one - two) < 1e-6


@pytest.mark.build
def test_mirrored_build_resumes_to_the_same_metrics(
    tmp_path: Path, tiny_mnist: Path
) -> None:
    spec = tmp_path / "mirrored.yaml"
    # Resuming is about training: the Keras file alone is exported (the other
    # formats of a mirrored build are the test above's).
    spec.write_text(
        (TEST_SPECS / "mirrored.yaml")
        .read_text()
        .replace("epochs: 2", "epochs: 4")
        .replace(
            "export:\n  tflite: {quantize: [none, dynamic]}\n",
            "export: {formats: [keras]}\n",
        )
    )
    assert "formats: [keras]" in spec.read_text()
    found = two_cpus(
        "from l2compile.generate import compile_spec\n"
        "from l2compile import build, callbacks\n"
        "from l2compile.errors import Interrupted\n"
        "c = compile_spec(Path(sys.argv[1]))\n"
        "tmp, data = Path(sys.argv[2]), Path(sys.argv[3])\n"
        "def run(out, **more):\n"
        "    return build.build(c.plan, c.code, tmp / out, data=data,\n"
        "                       log=lambda m: None, **more).metrics\n"
        "full = run('full')\n"
        "real = callbacks.penalty_recorder\n"
        "def stopping(keras, penalties):\n"
        "    recorder = real(keras, penalties)\n"
        "    def on_epoch_begin(epoch, logs=None):\n"
        "        if epoch == 2:\n"
        "            raise KeyboardInterrupt\n"
        "    recorder.on_epoch_begin = on_epoch_begin\n"
        "    return recorder\n"
        "callbacks.penalty_recorder = stopping\n"
        "try:\n"
        "    run('out')\n"
        "except Interrupted as stopped:\n"
        "    kept = stopped.epoch\n"
        "callbacks.penalty_recorder = real\n"
        "again = run('out', resume=True)\n"
        "print(json.dumps({'kept': kept, 'full': full, 'again': again}))\n",
        str(spec),
        str(tmp_path),
        str(tiny_mnist),
    )
    full, again = found["full"], found["again"]
    assert found["kept"] == 2
    assert again["replicas"] == 2  # type: ignore[index]
    assert again["resumed_after_epoch"] == 2  # type: ignore[index]
    for key in ("test_loss", "test_accuracy"):
        assert abs(full[key] - again[key]) <= 1e-4  # type: ignore[index]
    for a, b in zip(
        full["history"]["loss"],  # type: ignore[index]
        again["history"]["loss"],  # type: ignore[index]
        strict=True,
    ):
        assert abs(a - b) <= 1e-4
