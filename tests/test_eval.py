"""`l2compile eval`: the spec from the build's manifest, and artifacts that do
not fit the spec refused before they run."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from l2compile import build as builder
from l2compile import evaluate
from l2compile import manifest as manifest_
from l2compile.cli import EXIT_FAILURE, EXIT_OK, main
from l2compile.errors import BuildError
from l2compile.generate import compile_spec

from .conftest import make_mnist_npz

CNN = """\
name: tiny_cnn
input: {shape: [28, 28, 1]}
l2: 0.0001
layers:
  - {type: conv2d, filters: 4, kernel_size: 3, activation: relu}
  - {type: max_pooling2d, pool_size: 2}
  - {type: flatten}
  - {type: dense, units: 10, activation: softmax}
train:
  recipe: mnist
  epochs: 1
  batch_size: 32
  seed: 3
export:
  formats: [keras, saved_model, tflite]
  tflite: {quantize: [none]}
"""

# Valid specs that the CNN's artifacts do not fit.
FLAT = CNN.replace("[28, 28, 1]", "[784]").replace(
    "  - {type: conv2d, filters: 4, kernel_size: 3, activation: relu}\n"
    "  - {type: max_pooling2d, pool_size: 2}\n"
    "  - {type: flatten}\n",
    "",
)
# The npz recipe with no data: the check must come before any data is read.
THREE = CNN.replace("recipe: mnist", "recipe: npz\n  num_classes: 3").replace(
    "units: 10", "units: 3"
)

ADVICE = "score it against the spec it was built from"


@dataclass(frozen=True)
class Built:
    root: Path  # the folder the build ran in
    out: Path  # build/tiny_cnn under it
    data: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("eval")
    (root / "specs").mkdir()
    for name, text in (("cnn", CNN), ("flat", FLAT), ("three", THREE)):
        (root / "specs" / f"{name}.yaml").write_text(text, encoding="utf-8")
    data = make_mnist_npz(root / "data" / "mnist.npz")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # so the manifest names specs/cnn.yaml, as a user's would
        compiled = compile_spec(Path("specs/cnn.yaml"))
        assert not isinstance(compiled, list), [str(e) for e in compiled]
        builder.build(
            compiled.plan,
            compiled.code,
            Path("build/tiny_cnn"),
            data=data,
            log=lambda message: None,
        )
    return Built(root, root / "build" / "tiny_cnn", data)


def run(cwd: Path, *args: str) -> tuple[int, str, str]:
    old = Path.cwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, list(args))
    finally:
        os.chdir(old)
    return result.exit_code, result.stdout, result.stderr


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.build
def test_eval_reads_the_spec_from_the_build_manifest(built: Built) -> None:
    metrics = json.loads((built.out / "metrics.json").read_text())
    assert json.loads((built.out / "manifest.json").read_text())["spec"] == {
        "file": "specs/cnn.yaml",
        "from_build": "../../specs/cnn.yaml",
        "sha256": sha256(built.root / "specs" / "cnn.yaml"),
        "set": [],
    }
    for artifact, accuracy in (
        ("model.keras", metrics["test_accuracy"]),
        ("saved_model", metrics["test_accuracy"]),
        ("model.tflite", metrics["tflite"]["files"]["none"]["test_accuracy"]),
    ):
        path = f"build/tiny_cnn/{artifact}"
        code, out, err = run(built.root, "eval", path, "--data", str(built.data))
        assert code == EXIT_OK, err
        lines = out.splitlines()
        assert lines[:2] == [
            f"artifact:  {path} ({evaluate.kind_of(built.out / artifact)})",
            "spec:      specs/cnn.yaml (named by build/tiny_cnn/manifest.json)",
        ]
        scores = dict(line.split(":", 1) for line in lines if not line.startswith(" "))
        assert float(scores["accuracy"]) == pytest.approx(accuracy, abs=1e-4)


@pytest.mark.build
def test_eval_with_spec_names_it_without_a_manifest(built: Built) -> None:
    code, out, _ = run(
        built.root,
        "eval",
        "build/tiny_cnn/model.tflite",
        "--spec",
        "specs/cnn.yaml",
        "--data",
        str(built.data),
    )
    assert code == EXIT_OK
    assert out.splitlines()[1] == "spec:      specs/cnn.yaml"


@pytest.mark.build
def test_eval_from_another_folder_finds_the_spec_from_the_build_folder(
    built: Built, tmp_path: Path
) -> None:
    artifact = built.out / "model.keras"
    code, out, _ = run(tmp_path, "eval", str(artifact), "--data", str(built.data))
    assert code == EXIT_OK
    assert out.splitlines()[1] == (
        f"spec:      {built.root / 'specs' / 'cnn.yaml'} (named by "
        f"{built.out / 'manifest.json'})"
    )


@pytest.mark.build
def test_eval_of_a_build_moved_away_from_its_spec_asks_for_the_spec(
    built: Built, tmp_path: Path
) -> None:
    moved = tmp_path / "moved" / "tiny_cnn"
    shutil.copytree(built.out, moved)
    code, out, err = run(tmp_path, "eval", str(moved / "model.keras"))
    assert code == EXIT_FAILURE
    assert out == ""
    assert err == (
        f"error: the build's manifest ({moved / 'manifest.json'}) names "
        "specs/cnn.yaml, which is not there from here; pass --spec\n"
    )


@pytest.mark.build
def test_eval_refuses_a_spec_changed_since_the_build(
    built: Built, tmp_path: Path
) -> None:
    changed = tmp_path / "specs" / "cnn.yaml"
    changed.parent.mkdir()
    changed.write_text(CNN.replace("epochs: 1", "epochs: 2"), encoding="utf-8")
    then = sha256(built.root / "specs" / "cnn.yaml")
    code, _, err = run(tmp_path, "eval", str(built.out / "saved_model"))
    assert code == EXIT_FAILURE
    assert err == (
        f"error: specs/cnn.yaml changed since the build (sha256 {then[:12]} then, "
        f"{sha256(changed)[:12]} now); pass --spec to score against it anyway\n"
    )


def _manifest_missing(manifest: Path) -> None:
    pass


def _manifest_not_json(manifest: Path) -> None:
    manifest.write_text("{'spec': 'specs/cnn.yaml'}")


def _manifest_without_spec(manifest: Path) -> None:
    manifest.write_text(json.dumps({"name": "tiny_cnn", "spec": {"file": 3}}))


def _manifest_too_large(manifest: Path) -> None:
    manifest.write_text(" " * (manifest_.MAX_BYTES + 1))


def _manifest_a_device(manifest: Path) -> None:
    manifest.symlink_to("/dev/zero")


def _manifest_a_folder(manifest: Path) -> None:
    manifest.mkdir()


@pytest.mark.build
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            _manifest_missing,
            "{artifact} has no build manifest beside it ({manifest}) to name the "
            "spec it was built from; pass --spec",
        ),
        (
            _manifest_not_json,
            "{manifest} is not a build manifest (not JSON: Expecting property "
            "name enclosed in double quotes: line 1 column 2 (char 1)); pass --spec",
        ),
        (
            _manifest_without_spec,
            "{manifest} is not a build manifest (it names no spec.file and "
            "spec.sha256); pass --spec",
        ),
        (
            _manifest_too_large,
            "{manifest} is not a build manifest (more than 1,048,576 bytes); "
            "pass --spec",
        ),
        (
            _manifest_a_device,
            "{manifest} is a character device, not a regular file; pass --spec",
        ),
        (_manifest_a_folder, "{manifest} is a folder, not a regular file; pass --spec"),
    ],
)
def test_eval_refuses_a_manifest_it_cannot_use(
    built: Built, tmp_path: Path, make: Callable[[Path], None], message: str
) -> None:
    artifact = tmp_path / "model.tflite"
    shutil.copy(built.out / "model.tflite", artifact)
    manifest = tmp_path / "manifest.json"
    make(manifest)
    code, out, err = run(tmp_path, "eval", str(artifact))
    assert code == EXIT_FAILURE
    assert out == ""
    assert err == f"error: {message.format(artifact=artifact, manifest=manifest)}\n"


@pytest.mark.build
def test_a_manifest_can_name_the_spec_from_the_build_folder(
    built: Built, tmp_path: Path
) -> None:
    spec = built.root / "specs" / "cnn.yaml"
    folder = built.root / "copy"
    folder.mkdir()
    shutil.copy(built.out / "model.tflite", folder / "model.tflite")
    (folder / "manifest.json").write_text(
        json.dumps(
            {
                "spec": {
                    "file": "specs/cnn.yaml",
                    "from_build": "../specs/cnn.yaml",
                    "sha256": sha256(spec),
                }
            }
        )
    )
    old = Path.cwd()
    os.chdir(tmp_path)  # where specs/cnn.yaml is not
    try:
        found = evaluate.spec_of_build(folder / "model.tflite")
    finally:
        os.chdir(old)
    assert found == evaluate.BuildSpec(spec, folder / "manifest.json")


@pytest.mark.build
@pytest.mark.parametrize(
    ("artifact", "shape"),
    [("model.keras", "(None, 28, 28, 1)"), ("model.tflite", "(1, 28, 28, 1)")],
)
def test_eval_refuses_an_artifact_of_another_input_shape(
    built: Built, artifact: str, shape: str
) -> None:
    path = f"build/tiny_cnn/{artifact}"
    code, out, err = run(
        built.root, "eval", path, "--spec", "specs/flat.yaml", "--data", "nowhere"
    )
    assert code == EXIT_FAILURE
    assert out == ""
    assert err == (
        f"error: {path} takes input of shape {shape}, but specs/flat.yaml's "
        f"input.shape is [784]; {ADVICE}\n"
    )


@pytest.mark.build
def test_a_saved_model_of_another_input_shape_is_refused_not_run(
    built: Built,
) -> None:
    # Fed the wrong shape, this SavedModel aborts the process inside
    # TensorFlow (exit 134): run it in a process of its own.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "l2compile",
            "eval",
            "build/tiny_cnn/saved_model",
            "--spec",
            "specs/flat.yaml",
            "--data",
            str(built.data),
        ],
        cwd=built.root,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
        check=False,
    )
    assert done.returncode == EXIT_FAILURE, done.stderr[-2000:]
    assert done.stdout == ""
    assert (
        "error: build/tiny_cnn/saved_model takes input of shape (None, 28, 28, 1), "
        f"but specs/flat.yaml's input.shape is [784]; {ADVICE}"
    ) in done.stderr.splitlines()


@pytest.mark.build
@pytest.mark.parametrize(
    ("artifact", "shape"),
    [
        ("model.keras", "(None, 10)"),
        ("saved_model", "(None, 10)"),
        ("model.tflite", "(1, 10)"),
    ],
)
def test_eval_refuses_an_artifact_with_another_number_of_classes(
    built: Built, artifact: str, shape: str
) -> None:
    path = f"build/tiny_cnn/{artifact}"
    code, out, err = run(built.root, "eval", path, "--spec", "specs/three.yaml")
    assert code == EXIT_FAILURE
    assert out == ""
    assert err == (
        f"error: {path} gives output of shape {shape}, but specs/three.yaml's "
        f"train.num_classes is 3; {ADVICE}\n"
    )


@pytest.mark.unit
def test_check_signature_names_a_builtin_recipe_and_its_classes(
    tmp_path: Path,
) -> None:
    from .conftest import plan_text

    plan = plan_text(CNN, tmp_path)
    with pytest.raises(BuildError) as raised:
        evaluate.check_signature(Path("m.tflite"), plan, [(1, 28, 28, 1)], [(1, 5)])
    assert str(raised.value) == (
        "m.tflite gives output of shape (1, 5), but spec.yaml's recipe 'mnist' has "
        f"10 classes; {ADVICE}"
    )
    with pytest.raises(BuildError) as raised:
        evaluate.check_signature(Path("m.tflite"), plan, [(1, 784), (1, 3)], [(1, 10)])
    assert str(raised.value) == (
        f"m.tflite takes 2 inputs, but spec.yaml's model takes one; {ADVICE}"
    )
    evaluate.check_signature(Path("m.keras"), plan, [(None, 28, 28, None)], [None])
