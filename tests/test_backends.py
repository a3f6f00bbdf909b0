"""Keras backends: generated code that runs on any of them, builds that train
on the spec's backend and export on TensorFlow, and TensorFlow-only settings
refused elsewhere."""

from __future__ import annotations

import ast
import importlib.machinery
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from l2compile import backends, processes
from l2compile import build as builder
from l2compile.datasets import load_dataset
from l2compile.errors import BuildError
from l2compile.sources import RECIPES

from .conftest import GOLDEN, SMALL_SPEC, compiled, plan_file
from .update_golden import all_specs

#: Runs a generated module's main() in a process where TensorFlow cannot be
#: imported, as if only keras and jax were installed; prints what it saw.
_WITHOUT_TENSORFLOW = """\
import importlib.abc, importlib.util, json, sys

class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoTensorFlow())
spec = importlib.util.spec_from_file_location("generated", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.main(sys.argv[2:])
import keras
loaded = [m for m in sys.modules if m.split(".")[0] == "tensorflow"]
print(json.dumps({"backend": keras.backend.backend(), "tensorflow": loaded}))
"""


def _imports(nodes: list[ast.stmt] | list[ast.AST]) -> set[str]:
    names = {a.name for n in nodes if isinstance(n, ast.Import) for a in n.names}
    return names | {n.module or "" for n in nodes if isinstance(n, ast.ImportFrom)}


def _functions_importing(tree: ast.Module, module: str) -> list[str]:
    """The functions that import `module` in their body."""
    return [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        and module in _imports(list(ast.walk(node)))
    ]


@pytest.mark.unit
def test_only_tensorflow_only_specs_generate_a_tensorflow_import() -> None:
    """TensorFlow is imported where the module trains with it, where it
    reads an image folder with its image ops, and where it augments images
    as a TensorFlow graph (on any backend). Elsewhere only the batch-norm
    recomputation's compiled pass imports it, in a function, where Keras runs
    on TensorFlow already."""
    specs = all_specs()
    assert len(specs) > 10
    assert any(plan_file(spec).tensorflow_only for spec in specs)
    for spec in specs:
        plan = plan_file(spec)
        golden = GOLDEN / f"{plan.name}.py"
        code = golden.read_text(encoding="utf-8")
        tree = ast.parse(code)
        uses_tf = {"tensorflow"} & _imports(tree.body)
        needs_tf = bool(
            plan.tensorflow_only or plan.recipe.streamed or plan.augmentation
        )
        assert bool(uses_tf) == needs_tf, golden.name
        assert ("tf." in code) == needs_tf, golden.name
        functions = _functions_importing(tree, "tensorflow")
        assert functions == (["training_forward"] if plan.batchnorm_statistics else [])
        if functions:
            assert 'if backend == "tensorflow":  # imported already' in code


@pytest.mark.build
def test_a_generated_module_trains_with_only_keras_and_jax(
    tmp_path: Path, tiny_mnist: Path
) -> None:
    module = tmp_path / "small_mlp.py"
    module.write_text(compiled(tmp_path).code, encoding="utf-8")
    out = tmp_path / "small.keras"
    arguments = ["--data", str(tiny_mnist), "--epochs", "1", "--out", str(out)]
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TENSORFLOW, str(module), *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert any(line.startswith("Test accuracy: ") for line in lines)
    assert json.loads(lines[-1]) == {"backend": "jax", "tensorflow": []}
    assert out.is_file()


@pytest.mark.unit
def test_a_backend_that_is_not_installed_names_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.machinery.PathFinder.find_spec
    monkeypatch.setattr(
        importlib.machinery.PathFinder,
        "find_spec",
        lambda name, *a: None if name == "torch" else real(name, *a),
    )
    with pytest.raises(BuildError) as err:
        backends.check_installed("torch")
    assert str(err.value) == (
        "Keras' torch backend needs the torch package, which is not installed: "
        "pip install 'l2compile[torch]'"
    )


@pytest.mark.unit
def test_build_backend_overrides_the_spec_and_tensorflow_only_settings_say_so(
    tmp_path: Path,
) -> None:
    from l2compile.generate import compile_spec

    text = SMALL_SPEC.replace(
        "  seed: 7\n", "  seed: 7\n  backend: tensorflow\n  deterministic_ops: true\n"
    )
    path = tmp_path / "small.yaml"
    path.write_text(text, encoding="utf-8")
    result = compile_spec(path)
    assert not isinstance(result, list)
    assert result.plan.backend == "tensorflow"
    errors = compile_spec(path, backend="jax")
    assert isinstance(errors, list)
    assert [str(e) for e in errors] == [
        f"{path}:16:22: error: train.deterministic_ops: true makes TensorFlow's "
        "kernels deterministic, which only Keras' TensorFlow backend has, but "
        "build --backend jax trains on jax: build with --backend tensorflow"
    ]
    plain = tmp_path / "plain.yaml"
    plain.write_text(SMALL_SPEC, encoding="utf-8")
    for backend in backends.NAMES:
        planned = compile_spec(plain, backend=backend)
        assert not isinstance(planned, list)
        assert planned.plan.backend == backend
        assert planned.code == compile_spec(plain).code  # the code is the same


CNN_SPEC = SMALL_SPEC.replace(
    "  - {type: flatten}\n",
    "  - {type: reshape, target_shape: [28, 28, 1]}\n"
    "  - {type: conv2d, filters: 4, kernel_size: 3}\n"
    "  - {type: flatten}\n",
)


def _planned(
    tmp_path: Path,
    text: str,
    device: backends.Device,
    backend: backends.Choice | None = None,
) -> Any:
    from l2compile.plan import plan_spec
    from l2compile.spec import load_spec

    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    loaded = load_spec(path, "spec.yaml")
    assert not isinstance(loaded, list)
    return plan_spec(loaded, backend=backend, device=device)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "device", "backend", "reason"),
    [
        (SMALL_SPEC, "cpu", "jax", "no convolutions"),
        (CNN_SPEC, "cpu", "tensorflow", "a conv2d layer on a CPU"),
        (CNN_SPEC, "gpu", "jax", "a GPU"),
        (
            SMALL_SPEC.replace("  seed: 7\n", "  seed: 7\n  deterministic_ops: true\n"),
            "gpu",
            "tensorflow",
            "deterministic_ops: true, which needs TensorFlow",
        ),
        (
            CNN_SPEC.replace("  seed: 7\n", "  seed: 7\n  distribute: mirrored\n"),
            "cpu",
            "tensorflow",
            "distribute: mirrored, which needs TensorFlow",
        ),
    ],
    ids=["mlp-cpu", "cnn-cpu", "cnn-gpu", "deterministic-gpu", "mirrored-cpu"],
)
def test_auto_picks_the_backend_for_the_model_and_the_machine_and_says_why(
    tmp_path: Path, text: str, device: backends.Device, backend: str, reason: str
) -> None:
    plan = _planned(tmp_path, text, device)
    assert (plan.backend, plan.backend_reason) == (backend, reason)
    # The code is the same on every machine, and runs beside keras and jax
    # alone (a TensorFlow-only setting makes a TensorFlow module anyway).
    needs_tensorflow = "distribute" in text or "deterministic" in text
    assert plan.module_backend == ("tensorflow" if needs_tensorflow else "jax")


@pytest.mark.unit
def test_every_kind_that_convolves_says_so_and_auto_trains_it_on_tensorflow() -> None:
    from l2compile.layers import KINDS

    convolving = sorted(name for name, kind in KINDS.items() if kind.convolves)
    assert convolving == [
        "backbone",
        "conv1d",
        "conv2d",
        "conv2d_transpose",
        "depthwise_conv2d",
        "separable_conv2d",
    ]
    from l2compile.plan import plan_spec
    from l2compile.spec import load_spec

    loaded = load_spec(GOLDEN.parent / "specs" / "frozen_backbone.yaml")
    assert not isinstance(loaded, list)
    plan = plan_spec(loaded, device="cpu")
    assert not isinstance(plan, list)
    assert (plan.backend, plan.backend_reason) == (
        "tensorflow",
        "a backbone layer on a CPU",
    )


@pytest.mark.unit
def test_a_named_backend_is_kept_as_written_and_has_no_reason(tmp_path: Path) -> None:
    for named in backends.NAMES:
        spec = CNN_SPEC.replace("  seed: 7\n", f"  seed: 7\n  backend: {named}\n")
        for device in ("cpu", "gpu"):
            plan = _planned(tmp_path, spec, device)
            assert (plan.backend, plan.backend_reason) == (named, None)
            assert plan.module_backend == named
            by_option = _planned(tmp_path, CNN_SPEC, device, backend=named)
            assert (by_option.backend, by_option.backend_reason) == (named, None)
            # build --backend leaves the code as the spec's auto makes it.
            assert by_option.module_backend == "jax"


@pytest.mark.unit
def test_the_machine_has_a_gpu_where_its_device_files_say_so(tmp_path: Path) -> None:
    (tmp_path / "nvidiactl").touch()  # the driver alone is not a GPU
    assert backends.device(tmp_path) == "cpu"
    (tmp_path / "nvidia0").touch()
    assert backends.device(tmp_path) == "gpu"


@pytest.mark.build
def test_an_error_in_a_child_process_reaches_the_build_as_itself(
    tmp_path: Path, tiny_mnist: Path
) -> None:
    """This test process runs Keras on JAX, so a TensorFlow build trains in a
    child process; its error comes back whole, and nothing is published."""
    assert processes.keras_backend() in (None, "jax")
    text = SMALL_SPEC.replace(
        "  seed: 7\n",
        "  seed: 7\n  backend: tensorflow\n"
        "  optimizer: {type: sgd, learning_rate: 1.0e+30}\n",
    ).replace("epochs: 1", "epochs: 3")
    spec = compiled(tmp_path, text)
    lines: list[str] = []
    with pytest.raises(BuildError) as err:
        builder.build(
            spec.plan, spec.code, tmp_path / "out", data=tiny_mnist, log=lines.append
        )
    assert type(err.value).__name__ == "Diverged"
    assert str(err.value).startswith("training diverged in epoch 1 of 3: ")
    assert any("on Keras' tensorflow backend" in line for line in lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "small.yaml"]
    # The export process, started before training, did not outlive the build.
    assert _children_running("l2compile.processes") == []


def _children_running(marker: str) -> list[int]:
    """This process's live children whose command line holds `marker`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue  # ended meanwhile
        mine = int(fields[1]) == os.getpid() and fields[0] != "Z"
        if mine and marker.encode() in command:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.build
@pytest.mark.needs_mnist
def test_the_same_spec_trains_alike_on_jax_and_on_tensorflow(tmp_path: Path) -> None:
    """A slice of the real MNIST, two epochs: the backends draw other initial
    weights and dropout masks, so the scores differ a little, not more."""
    mnist = load_dataset(RECIPES["mnist"], None)
    small = tmp_path / "data" / "mnist.npz"
    small.parent.mkdir()
    np.savez(
        small,
        x_train=mnist.x_train[:6000],
        y_train=mnist.y_train[:6000],
        x_test=mnist.x_test[:2000],
        y_test=mnist.y_test[:2000],
    )
    text = SMALL_SPEC.replace("epochs: 1", "epochs: 2") + "export: {formats: [keras]}\n"
    scores = {}
    for backend in ("jax", "tensorflow"):
        on = text.replace("  seed: 7\n", f"  seed: 7\n  backend: {backend}\n")
        spec = compiled(tmp_path, on)
        result = builder.build(
            spec.plan, spec.code, tmp_path / backend, data=small, log=lambda m: None
        )
        manifest = json.loads((result.out / "manifest.json").read_text())
        assert manifest["backend"] == result.metrics["backend"] == backend
        scores[backend] = result.metrics["test_accuracy"]
    assert min(scores.values()) > 0.8, scores
    assert abs(scores["jax"] - scores["tensorflow"]) < 0.03, scores


#: `l2compile build`, reporting as it exits whether its own process loaded
#: TensorFlow (the export runs in a child, which does).
_WATCHED = """
import os, sys

exit_now = os._exit


def report(code):
    loaded = sys.modules.get("tensorflow") is not None
    backend = sys.modules["keras"].backend.backend()
    print("tensorflow loaded:", loaded, "keras backend:", backend, flush=True)
    exit_now(code)


os._exit = report
sys.argv[0] = "l2compile"
from l2compile.__main__ import run
run()
"""


@pytest.mark.build
@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_the_command_trains_in_its_own_process_and_only_tensorflow_loads_it(
    tmp_path: Path, tiny_mnist: Path, backend: str
) -> None:
    spec = tmp_path / "small.yaml"
    spec.write_text(SMALL_SPEC + "export: {formats: [keras, tflite]}\n")
    out = tmp_path / "out"
    arguments = ["--out", str(out), "--data", str(tiny_mnist), "--backend", backend]
    result = subprocess.run(
        [sys.executable, "-c", _WATCHED, "build", str(spec), *arguments],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "KERAS_BACKEND": "torch"},  # the spec decides, not this
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == (
        f"tensorflow loaded: {backend == 'tensorflow'} keras backend: {backend}"
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["backend"] == backend
    assert abs(metrics["tflite"]["files"]["none"]["accuracy_drop"]) <= 0.001


#: Makes the SavedModel export fail with TensorFlow's own error, in the
#: TensorFlow process only: the JAX process that trains cannot even import
#: that error's class.
_FAILING_EXPORT = """
import os

if os.environ.get("KERAS_BACKEND") == "tensorflow":
    from l2compile.formats import saved_model

    def broken(model, path):
        import tensorflow as tf

        raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")

    saved_model.export_saved_model = broken
"""


@pytest.mark.build
def test_an_error_of_tensorflows_own_in_the_export_process_is_reported_by_name(
    tmp_path: Path, tiny_mnist: Path
) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(_FAILING_EXPORT)
    spec = tmp_path / "small.yaml"
    spec.write_text(SMALL_SPEC)
    out = tmp_path / "out"
    path = os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])
    arguments = ["--out", str(out), "--data", str(tiny_mnist)]
    result = subprocess.run(
        [sys.executable, "-m", "l2compile", "build", str(spec), *arguments],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": path, "KERAS_BACKEND": "jax"},
    )
    assert result.returncode == 3, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert errors == [
        "error: the build failed: ResourceExhaustedError: No space left on device"
    ]
    assert not out.exists()


_IMPORT_KERAS = """
import json, sys
from l2compile import processes

processes.import_keras()
import keras

optional = {"matplotlib", "pandas", "sklearn", "cv2", "jax"}
seen = sorted({m.split(".")[0] for m in sys.modules} & optional)
import matplotlib.pyplot, pandas  # still there for whoever asks afterwards
print(json.dumps({"backend": keras.backend.backend(), "seen": seen}))
"""


@pytest.mark.build
@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_a_builds_keras_comes_without_the_packages_it_never_uses(backend: str) -> None:
    """Keras imports matplotlib, pandas, scikit-learn and OpenCV where they are
    installed (and TensorFlow imports JAX), for features a build never calls:
    a build's processes import Keras without them, and they stay importable."""
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_KERAS],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KERAS_BACKEND": backend},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1]) == {
        "backend": backend,
        "seen": ["jax"] if backend == "jax" else [],
    }
