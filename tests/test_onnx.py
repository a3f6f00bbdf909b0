"""export.formats: onnx. Every example spec in specs/ that can export ONNX is
exported the way a build exports it (on TensorFlow, from a .keras file, the
JAX route in its child process) and run in ONNX Runtime on its test data,
within the float32 TFLite file's tolerance of the Keras model; a model that
neither route exports is refused by validate, naming its layers; a build
without the extra stops before training; and `eval` of a built model.onnx
gives the build's scores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from l2compile import build as builder
from l2compile.errors import BuildError, SpecError
from l2compile.evaluate import evaluate_artifact
from l2compile.formats import onnx as onnx_format
from l2compile.generate import Compiled, compile_spec

from .conftest import (
    NEEDS_MNIST,
    ROOT,
    SPECS,
    make_example_data,
    make_fashion_idx,
    make_image_folder,
)

pytest.importorskip(
    "onnxruntime", reason='the onnx extra: pip install "l2compile[onnx]"'
)

MLP = """\
name: {name}
task: regression
input: {{shape: [6]}}
layers:
{layers}
  - {{type: dense, units: 8, activation: relu}}
  - {{type: dense, units: 1}}
train: {{recipe: npz, data: wide.npz, labels: [value], loss: mse, metrics: [mae],
  epochs: 3, batch_size: 32}}
export: {{formats: [keras, onnx]}}
"""


def _compile(folder: Path, name: str, layers: str) -> Compiled | list[SpecError]:
    spec = folder / f"{name}.yaml"
    spec.write_text(MLP.format(name=name, layers=layers), encoding="utf-8")
    return compile_spec(spec)


def _wide(path: Path) -> Path:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(400, 6)).astype(np.float32)
    y = (x[:, 0] - 0.5 * x[:, 1] + 0.2 * x[:, 2] * x[:, 3]).astype(np.float32)
    np.savez(path, x_train=x[:300], y_train=y[:300], x_test=x[300:], y_test=y[300:])
    return path


# --- validate, and the extra ----------------------------------------------------------


@pytest.mark.unit
def test_each_model_takes_a_route_its_layers_allow(tmp_path: Path) -> None:
    norm = "  - {type: normalization}"
    pool = (
        "  - {type: reshape, target_shape: [2, 3, 1]}\n"
        "  - {type: max_pooling2d, pool_size: 1}\n  - {type: flatten}"
    )
    routes = {}
    for name, layers in (("plain", ""), ("norm", norm), ("pool", pool)):
        compiled = _compile(tmp_path, name, layers)
        assert not isinstance(compiled, list), [str(e) for e in compiled]
        routes[name] = compiled.plan.export_plans["onnx"].route
    assert routes == {"plain": "tensorflow", "norm": "jax", "pool": "tensorflow"}
    errors = _compile(tmp_path, "both", f"{norm}\n{pool}")
    assert isinstance(errors, list)
    (error,) = [str(e) for e in errors]
    assert "Keras cannot export this model to ONNX" in error
    assert "through tensorflow: layers[0] (normalization): tf2onnx" in error
    assert "through jax: layers[2] (max_pooling2d): jax2onnx" in error


@pytest.mark.unit
def test_a_build_without_the_extra_stops_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled = _compile(tmp_path, "plain", "")
    assert not isinstance(compiled, list)
    monkeypatch.setattr(onnx_format, "missing_packages", lambda: ["jax2onnx"])
    said: list[str] = []
    with pytest.raises(BuildError, match=r'needs jax2onnx.*"l2compile\[onnx\]"'):
        builder.build(
            compiled.plan,
            compiled.code,
            tmp_path / "out",
            data=_wide(tmp_path / "wide.npz"),
            log=said.append,
        )
    assert said == [] and not (tmp_path / "out").exists()


# --- a build, and eval ----------------------------------------------------------------


@pytest.mark.build
@pytest.mark.parametrize("layers", ["", "  - {type: normalization}"])
def test_eval_of_the_onnx_file_gives_the_builds_scores(
    tmp_path: Path, layers: str
) -> None:
    compiled = _compile(tmp_path, "table", layers)
    assert not isinstance(compiled, list), [str(e) for e in compiled]
    plan, code = compiled.plan, compiled.code
    data = _wide(tmp_path / "wide.npz")
    out = tmp_path / "out"
    metrics = builder.build(plan, code, out, data=data, log=print).metrics
    found = metrics["onnx"]
    assert found["exported_through"] == ("jax2onnx" if layers else "tf2onnx")
    assert abs(found["relative_max_difference"]) <= 0.001
    assert found["opset"] >= 15
    described = json.loads((out / "model.json").read_text())["onnx"]
    assert described["inputs"] == [{"name": "input", "shape": [-1, 6]}]
    assert described["outputs"] == [{"name": "values", "shape": [-1, 1]}]
    assert "model.onnx" in (out / "manifest.json").read_text()
    assert "ONNX file" in (out / "report.html").read_text(encoding="utf-8")
    scored = evaluate_artifact(out / "model.onnx", plan, code, data=data)
    assert scored.scores["mae"] == pytest.approx(found["test_mae"], rel=1e-6)
    assert scored.scores["mae"] == pytest.approx(metrics["test_mae"], rel=1e-4)


# --- every example spec ---------------------------------------------------------------

#: Exports one spec's (untrained, seeded) model as the build's export stage
#: does, on TensorFlow from a .keras file, and checks it on the test split.
EXPORT = """
import json, sys
from pathlib import Path
import keras
from l2compile import formats
from l2compile.contract import import_generated
from l2compile.datasets import load_dataset
from l2compile.formats.base import ExportJob
from l2compile.generate import Compiled, compile_spec
from l2compile.overrides import parse
spec, data, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
sets = ["export.formats=[keras, tflite, onnx]", *sys.argv[4:]]
compiled = compile_spec(spec, overrides=[parse(s) for s in sets])
plan = compiled.plan
out.mkdir(parents=True)
module = out / f"{plan.name}.py"
module.write_text(compiled.code)
generated = import_generated(module, plan.name, plan.distribute, plan.optional_members)
dataset = load_dataset(plan.recipe, Path(data) if data else None,
    spec_path=plan.data_path, model_input=plan.model_input, seed=plan.split_seed,
    test_path=plan.test_path)
keras.utils.set_random_seed(0)
model = generated.build_model()
model.save(out / "model.keras")
calibrated = formats.calibration(plan, dataset)
job = ExportJob(plan, module, calibrated, out / "model.keras", out)
found = formats.FORMATS["onnx"].export(job, model, generated, print)
print("RESULT " + json.dumps(found))
"""

EXAMPLES = sorted(path.name for path in SPECS.glob("*.yaml"))


@pytest.fixture(scope="module")
def example_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("sklearn", reason="the example data comes from scikit-learn")
    return make_example_data(tmp_path_factory.mktemp("example_data"))


def _small_weights(folder: Path) -> Path:
    """MobileNetV3-Small's weights file, random (ImageNet's is a download)."""
    import keras

    path = folder / "small.weights.h5"
    keras.applications.MobileNetV3Small(
        input_shape=(224, 224, 3), include_top=False, weights=None
    ).save_weights(path)
    return path


@pytest.mark.build
@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_spec_exports_onnx_with_parity(
    name: str, tmp_path: Path, example_data: Path
) -> None:
    data, sets = "", []
    if name == "phone_classifier.yaml":  # stand-in weights: no download here
        data = str(
            make_image_folder(
                tmp_path / "photos", channels=3, split=False, per_class=8, size=64
            )
        )
        sets = [f"layers[3].weights={_small_weights(tmp_path)}", "layers[6].units=3"]
    elif name.startswith("mnist"):
        if not (Path(os.environ.get("L2COMPILE_DATA", "")) / "mnist.npz").is_file():
            pytest.skip(NEEDS_MNIST)
    elif name == "fashion_mnist.yaml":  # not offline: small files of its format
        data = str(make_fashion_idx(tmp_path / "fashion-mnist", 64, 256))
    elif name == "text_classifier.yaml":
        data = str(example_data / "tickets")
    else:
        data = str(example_data / f"{Path(name).stem}.npz")
    command = [sys.executable, "-c", EXPORT, f"specs/{name}", data]
    result = subprocess.run(
        [*command, str(tmp_path / "out"), *sets],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "KERAS_BACKEND": "tensorflow"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("RESULT ")]
    found = json.loads(line.removeprefix("RESULT "))
    parity = [k for k in found if k.endswith(("_drop", "_difference", "_disagreement"))]
    assert parity and all(abs(found[k]) <= 0.001 for k in parity), found
    assert (tmp_path / "out" / "model.onnx").is_file()
