"""Mistakes that once slipped through: each now gets a clear, located error."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from l2compile.cli import EXIT_FAILURE, EXIT_OK, EXIT_SPEC_ERROR, main
from l2compile.contract import GeneratedModule, import_generated
from l2compile.generate import compile_spec

from .conftest import SMALL_SPEC, SPECS, compile_errors, plan_text

GOOD = (SPECS / "mnist.yaml").read_text(encoding="utf-8").split("\n", 1)[1]
NPZ_TRAIN = "train:\n  recipe: npz\n  num_classes: 3\n  epochs: 1\n  batch_size: 8\n"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.unit
@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "units: 128,",
            "units: true,",
            "spec.yaml:9:26: error: layers[0].units: must be a valid integer, got True",
        ),
        (
            "units: 128,",
            "units: '128',",
            "spec.yaml:9:26: error: layers[0].units: must be a valid integer, "
            "got '128'",
        ),
        (
            "l2: 0.01",
            "l2: !!binary aGVsbG8=",
            "spec.yaml:7:5: error: l2: unsupported YAML tag "
            "'tag:yaml.org,2002:binary'; specs are plain data",
        ),
        (
            "recipe: mnist",
            "recipe: mnist\n  num_classes: 10",
            "spec.yaml:13:3: error: train: num_classes is only for the npz, csv "
            "and parquet recipes; 'mnist' knows its classes",
        ),
        (
            "recipe: mnist",
            "recipe: mnist\n  data: x.npz",
            "spec.yaml:13:3: error: train: data is only for the npz, csv, parquet, "
            "image_folder and text_folder recipes; 'mnist' is found as "
            "docs/data.md says, or with --data",
        ),
        (
            "name: mnist_mlp",
            "name: rich",
            "spec.yaml:4:7: error: name: 'rich' would shadow the installed Python "
            "module of the same name when the generated code runs; choose another name",
        ),
    ],
)
def test_values_are_taken_as_yaml_typed_them(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    assert compile_errors(GOOD.replace(old, new), tmp_path) == [message]


@pytest.mark.unit
def test_exponent_without_a_dot_is_a_number(tmp_path: Path) -> None:
    plan = plan_text(GOOD.replace("l2: 0.01", "l2: 1e-2"), tmp_path)
    assert plan.l2 == 0.01


@pytest.mark.unit
def test_labels_must_be_one_printable_line(tmp_path: Path) -> None:
    text = (
        "name: m\ninput: {shape: [4]}\nlayers:\n"
        "  - {type: dense, units: 3, activation: softmax}\n"
        + NPZ_TRAIN
        + '  labels: [a, "b\\nc", d]\n'
    )
    assert compile_errors(text, tmp_path) == [
        "spec.yaml:10:15: error: train.labels[1]: must be printable text on one "
        "line (it is a line of labels.txt)"
    ]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("layers", "message"),
    [
        (
            "  - {type: dense, units: 10, activation: softmax}\n"
            "  - {type: layer_normalization}\n",
            "spec.yaml:5:5: error: layers[1]: the model ends with a "
            "layer_normalization layer, but loss 'sparse_categorical_crossentropy' "
            "expects class probabilities: end with a dense or activation layer with "
            "activation 'softmax'",
        ),
        (
            "  - {type: reshape, target_shape: [28, 28]}\n"
            "  - {type: lstm, units: 10, activation: softmax}\n",
            "spec.yaml:5:5: error: layers[1]: the model ends with a lstm layer, but "
            "loss 'sparse_categorical_crossentropy' expects class probabilities: end "
            "with a dense or activation layer with activation 'softmax'",
        ),
        (
            "  - {type: embedding, input_dim: 256, output_dim: 1}\n"
            "  - {type: flatten}\n"
            "  - {type: dense, units: 10, activation: softmax}\n",
            "spec.yaml:4:12: error: layers[0].type: an embedding looks up integer ids, "
            "so it must read the model's input (as the first layer of a stack, or with "
            "inputs: [input]) and an npz recipe's integers; recipe 'mnist' gives "
            "scaled pixels",
        ),
    ],
)
def test_models_that_cannot_train_as_specified(
    tmp_path: Path, layers: str, message: str
) -> None:
    text = (
        "name: m\ninput: {shape: [784]}\nlayers:\n"
        + layers
        + "train: {recipe: mnist, epochs: 1, batch_size: 8}\n"
    )
    assert compile_errors(text, tmp_path) == [message]


@pytest.mark.build
def test_embedding_reads_its_ids_unscaled(tmp_path: Path) -> None:
    text = (
        "name: ids\ninput: {shape: [3]}\nlayers:\n"
        "  - {type: embedding, input_dim: 300, output_dim: 2}\n"
        "  - {type: flatten}\n"
        "  - {type: dense, units: 3, activation: softmax}\n" + NPZ_TRAIN
    )
    plan = plan_text(text, tmp_path)
    result = compile_spec(tmp_path / "spec.yaml")
    assert not isinstance(result, list)
    (tmp_path / "ids.py").write_text(result.code)
    module: GeneratedModule = import_generated(tmp_path / "ids.py", "ids_unscaled")
    x, _ = module.preprocess(np.array([[0, 7, 255]], np.uint8), np.array([1]))
    assert x.tolist() == [[0, 7, 255]]
    assert plan.integer_input


@pytest.mark.unit
def test_recurrent_specs_default_to_the_modes_that_convert(tmp_path: Path) -> None:
    text = GOOD.replace("shape: [784]", "shape: [28, 28]").replace(
        "  - {type: dense, units: 128,",
        "  - {type: lstm, units: 8}\n  - {type: dense, units: 128,",
    )
    plan = plan_text(
        text.replace("export: {formats: [keras, saved_model, tflite]}", ""), tmp_path
    )
    assert plan.export_plans.get("tflite") is not None
    assert plan.export_plans.get("tflite").quantize == ("none", "float16", "dynamic")


@pytest.mark.unit
def test_inspect_a_model_without_weights(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(
        "name: m\ninput: {shape: [3]}\n"
        "layers: [{type: activation, activation: softmax}]\n" + NPZ_TRAIN
    )
    code, out, _ = run("inspect", str(tmp_path / "s.yaml"))
    assert code == EXIT_OK
    assert "parameters:             0" in out


@pytest.mark.unit
def test_generated_files_follow_the_umask_and_keep_their_mode(tmp_path: Path) -> None:
    spec = str(SPECS / "mnist.yaml")
    old = os.umask(0o022)
    try:
        assert run("generate", spec, "-o", str(tmp_path / "new.py"))[0] == EXIT_OK
        assert stat.S_IMODE((tmp_path / "new.py").stat().st_mode) == 0o644
        (tmp_path / "kept.py").write_text("")
        (tmp_path / "kept.py").chmod(0o664)
        assert run("generate", spec, "-o", str(tmp_path / "kept.py"))[0] == EXIT_OK
        assert stat.S_IMODE((tmp_path / "kept.py").stat().st_mode) == 0o664
    finally:
        os.umask(old)


@pytest.mark.unit
def test_generate_never_overwrites_the_spec(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(GOOD)
    code, _, err = run("generate", str(spec), "-o", str(spec))
    assert code == EXIT_SPEC_ERROR
    assert err == f"error: -o {spec} is the spec itself; write the module elsewhere\n"
    assert spec.read_text() == GOOD


@pytest.mark.unit
def test_validate_takes_folders(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    code, out, _ = run("validate", str(tmp_path))
    assert code == EXIT_OK
    assert out.startswith(f"{tmp_path / 'a.yaml'}: ok")


@pytest.mark.unit
def test_eval_of_a_broken_file_is_a_clear_failure(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_text("garbage")
    code, _, err = run(
        "eval",
        str(bad),
        "--spec",
        str(SPECS / "mnist.yaml"),
        "--data",
        str(tmp_path / "data"),
    )
    assert code == EXIT_FAILURE
    assert err.startswith("error: ")
    assert "Traceback" not in err


@pytest.mark.unit
def test_a_quoted_number_where_a_number_is_meant_says_so(tmp_path: Path) -> None:
    text = SMALL_SPEC + "export:\n  formats: [tflite]\n  tflite: {batch: '1'}\n"
    assert compile_errors(text, tmp_path) == [
        "spec.yaml:18:19: error: export.tflite.batch: '1' is a string here; write "
        "it without quotes: 1"
    ]
