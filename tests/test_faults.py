"""Builds that fail do so at once, clearly, and publish nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from l2compile import build as builder
from l2compile.errors import BuildError

from .conftest import SMALL_SPEC, compile_errors, compiled


@pytest.mark.build
def test_a_diverging_loss_stops_training_and_publishes_nothing(
    tmp_path: Path, tiny_mnist: Path
) -> None:
    text = SMALL_SPEC.replace(
        "  recipe: mnist\n",
        "  recipe: mnist\n  optimizer: {type: sgd, learning_rate: 1.0e+30}\n",
    ).replace("epochs: 1", "epochs: 5")
    spec = compiled(tmp_path, text)
    out = tmp_path / "out"
    with pytest.raises(BuildError) as err:
        builder.build(spec.plan, spec.code, out, data=tiny_mnist, log=lambda m: None)
    message = str(err.value)
    assert message.startswith("training diverged in epoch 1 of 5: the loss became ")
    assert message.endswith(
        "The usual cause is a learning rate too large for the model "
        "(train.optimizer.learning_rate is 1e30), or an l2 that large (l2 is "
        "0.01). Nothing was published."
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "small.yaml"]


@pytest.mark.unit
def test_an_out_folder_that_cannot_be_written_fails_before_training(
    tmp_path: Path, tiny_mnist: Path
) -> None:
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "build"
    spec = compiled(tmp_path)
    with pytest.raises(BuildError) as err:
        builder.build(spec.plan, spec.code, out, data=tiny_mnist, log=lambda m: None)
    assert str(err.value) == (
        f"--out {out}: cannot write the build beside it in {out.parent}: File exists"
    )


@pytest.mark.unit
def test_a_disk_too_full_for_the_artifacts_fails_before_training(
    tmp_path: Path, tiny_mnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10, 10, 2**20))
    spec = compiled(tmp_path)
    with pytest.raises(BuildError) as err:
        builder.build(
            spec.plan, spec.code, tmp_path / "out", data=tiny_mnist, log=lambda m: None
        )
    assert str(err.value) == (
        f"{tmp_path}: 1 MiB free, but the build of 12,730 parameters needs about 21 MiB"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "small.yaml"]


@pytest.mark.unit
def test_a_model_too_large_to_build_is_a_spec_error(tmp_path: Path) -> None:
    text = SMALL_SPEC.replace("units: 16,", "units: 2000000,")
    assert compile_errors(text, tmp_path) == [
        "spec.yaml:7:5: error: layers[1]: the model is too large: 1,570,000,000 "
        "parameters up to this layer (5.8 GiB of float32 weights); l2compile builds "
        "at most 1,073,741,824"
    ]


@pytest.mark.build
def test_two_builds_with_one_seed_agree(tmp_path: Path, tiny_mnist: Path) -> None:
    # The Keras file alone: what is compared is the training (the exports are
    # made from its model.keras by test_build.py).
    spec = compiled(
        tmp_path,
        SMALL_SPEC.replace("epochs: 1", "epochs: 2") + "export: {formats: [keras]}\n",
    )
    results = []
    for name in ("first", "second"):
        builder.build(
            spec.plan, spec.code, tmp_path / name, data=tiny_mnist, log=lambda m: None
        )
        results.append(json.loads((tmp_path / name / "metrics.json").read_text()))
    a, b = results
    assert (tmp_path / "first" / "small_mlp.py").read_bytes() == (
        tmp_path / "second" / "small_mlp.py"
    ).read_bytes()
    for key in ("test_loss", "test_accuracy"):
        assert round(a[key], 4) == round(b[key], 4)
    assert [round(v, 4) for v in a["history"]["loss"]] == [
        round(v, 4) for v in b["history"]["loss"]
    ]


@pytest.mark.build
@pytest.mark.parametrize("switch", [False, True])
def test_deterministic_ops_switches_tensorflows_deterministic_kernels(
    tmp_path: Path, switch: bool
) -> None:
    text = SMALL_SPEC.replace(
        "  seed: 7\n",
        "  seed: 7\n  backend: tensorflow\n"
        f"  deterministic_ops: {str(switch).lower()}\n",
    )
    module = tmp_path / "small_mlp.py"
    module.write_text(compiled(tmp_path, text).code)
    # Only the switch makes the module import TensorFlow.
    assert ("import tensorflow as tf\n" in module.read_text()) == switch
    check = (  # TensorFlow exports no public getter for the switch
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from tensorflow.python.framework import config; "
        "import small_mlp; small_mlp.set_seeds(); "
        "print(config.is_op_determinism_enabled())"
    )
    result = subprocess.run(
        [sys.executable, "-c", check, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == str(switch)
