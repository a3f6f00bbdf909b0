"""What a user reads: l2compile's lines and Keras' progress, not the native
libraries' start-up and converter logging (unless asked for)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from l2compile import callbacks

from .conftest import SMALL_SPEC

pytestmark = pytest.mark.build


@pytest.mark.parametrize("verbose", [False, True])
def test_a_build_prints_only_its_own_lines_unless_verbose(
    tmp_path: Path, tiny_mnist: Path, verbose: bool
) -> None:
    spec = tmp_path / "small.yaml"
    spec.write_text(
        SMALL_SPEC + "export:\n  formats: [tflite]\n  tflite: {quantize: [int8]}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("L2COMPILE_DEBUG")}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "l2compile",
            "build",
            str(spec),
            "--out",
            str(tmp_path / "out"),
            "--data",
            str(tiny_mnist),
            *(["--verbose"] if verbose else []),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    assert "l2compile: converting model.int8.tflite (full integer, calibrated)" in lines
    others = [line for line in lines if not line.startswith("l2compile: ")]
    if verbose:
        # TensorFlow's converter prints this from C++ for every int8 file.
        assert any(line.startswith("fully_quantize: ") for line in others), others
    else:
        assert others == []
    assert result.stdout.splitlines()[-1] == f"  {tmp_path / 'out' / 'small_mlp.py'}"
    if verbose:
        return
    scored = subprocess.run(
        [
            sys.executable,
            "-m",
            "l2compile",
            "eval",
            str(tmp_path / "out" / "model.int8.tflite"),
            "--data",
            str(tiny_mnist),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (scored.returncode, scored.stderr) == (0, "")
    assert scored.stdout.startswith(f"artifact:  {tmp_path / 'out'}")


def test_the_progress_bar_never_counts_past_the_epochs_steps() -> None:
    import keras

    bar = callbacks.progress_bar(keras)
    bar.set_params({"verbose": 1, "epochs": 1, "steps": 94})
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        bar.on_train_begin()
        bar.on_epoch_begin(0)
        # With steps_per_execution 64, Keras reports steps 63 and then 127.
        bar.on_train_batch_end(63, {"loss": 1.0})
        bar.on_train_batch_end(127, {"loss": 1.0})
        bar.on_epoch_end(0, {"loss": 1.0})
    text = printed.getvalue()
    assert "64/94" in text and "94/94" in text
    assert "128/94" not in text
