"""`l2compile import`: a spec written from a Keras model file.

The round trip is the proof: spec -> generate -> build_model() -> save .keras
-> import -> a spec that plans to the same model (layers, wiring, shapes,
arguments, regularized weights, parameters), for every spec l2compile ships
or tests, and for random graphs.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings

from l2compile.cli import main
from l2compile.contract import import_generated
from l2compile.import_check import import_model
from l2compile.importing import MAX_CONFIG_BYTES, ImportFailed, read_model
from l2compile.layers.base import INPUT
from l2compile.nodes import ModelPlan
from l2compile.overrides import parse
from l2compile.plan import plan_spec
from l2compile.render import render_module
from l2compile.spec import load_spec

from .conftest import SPECS, TEST_SPECS, plan_file
from .test_graph_properties import graphs
from .test_properties import compile_text

ROUND_TRIP = sorted(SPECS.glob("*.yaml")) + sorted(TEST_SPECS.glob("*.yaml"))


def signature(plan: ModelPlan) -> dict[str, Any]:
    """What makes two plans the same model: each layer (but the ones that
    augment the training images in the input pipeline, which no model
    holds) with its kind, arguments, shapes, wiring and weights, each weight
    with its L2 coefficient and whether it trains."""
    augmenting = {layer.name for layer in plan.layers if layer.augments}
    return {
        "input": plan.input_shape,
        # By name: a graph's layers come in the order Keras saves them.
        "layers": sorted(
            (
                layer.name,
                layer.type,
                layer.args,
                layer.output_shape,
                tuple(INPUT if i in augmenting else i for i in layer.inputs),
                tuple(
                    (w.name, w.shape, w.role, w.l2, w.trainable) for w in layer.weights
                ),
            )
            for layer in plan.layers
            if not layer.augments
        ),
        "params": plan.params,
        "regularized": sum(1 for lay in plan.layers for w in lay.weights if w.l2 > 0),
    }


def _offline(path: Path) -> list[Any]:
    """Overrides that build a spec's model offline: a backbone's ImageNet
    weights are not in the tests' Keras cache, and its layers are the same
    with weights: none."""
    data = yaml.safe_load(path.read_text())
    return [
        parse(f"layers.{i}.weights=none")
        for i, layer in enumerate(data["layers"])
        if layer.get("type") == "backbone"
        and layer.get("weights", "imagenet") == "imagenet"
    ]


def _saved_model(plan: ModelPlan, folder: Path) -> Path:
    """The plan's generated model, built and saved as a .keras file."""
    module_path = folder / f"{plan.name}.py"
    module_path.write_text(render_module(plan))
    module = import_generated(module_path, f"round_trip_{plan.name}")
    width = plan.input_shape[0]
    # A table's model is built for its columns: planned with numbers only.
    columns = [{"name": f"x{i}", "kind": "number", "fill": 0.0} for i in range(width)]
    model = module.build_model(*([columns] if plan.recipe.encodes else []))
    path = folder / "model.keras"
    model.save(path)
    return path


def _imported_plan(path: Path, out: Path) -> ModelPlan:
    done = import_model(path, out)
    return plan_file(done.spec)


@pytest.mark.build
@pytest.mark.parametrize("spec", ROUND_TRIP, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_spec_round_trips_through_a_keras_file(
    spec: Path, tmp_path: Path
) -> None:
    loaded = load_spec(spec, overrides=_offline(spec))
    assert not isinstance(loaded, list), loaded
    plan = plan_spec(loaded, spec.parent)
    assert not isinstance(plan, list), plan
    saved = _saved_model(plan, tmp_path)
    again = _imported_plan(saved, tmp_path / "imported.yaml")
    assert signature(again) == signature(plan)


@pytest.mark.build
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=graphs())
def test_random_graphs_round_trip(spec: dict[str, Any], tmp_path_factory: Any) -> None:
    plan = compile_text(yaml.safe_dump(spec))
    assert not isinstance(plan, list), plan
    folder = tmp_path_factory.mktemp("graph")
    saved = _saved_model(plan, folder)
    again = _imported_plan(saved, folder / "imported.yaml")
    assert signature(again) == signature(plan)


# --- a model from keras.applications with a new head ----------------------------


def _penalties_are_l2_of_each_planned_weight(plan: ModelPlan, model: Any) -> None:
    """One regularization loss per weight the plan regularizes (and no
    other), summing to l2 * sum(w^2) over exactly those weights."""
    from l2compile import report

    variables = {v.path: v for v in model.weights}
    # A Sequential model builds its layers under its name; loaded from a
    # file, it does not.
    variables |= {f"{plan.name}/{path}": v for path, v in variables.items()}
    expected = [w for w in report.weights(plan) if w["l2"] > 0 and w["trainable"]]
    assert len(model.losses) == len(expected) > 0
    for record in expected:
        regularizer = variables[record["path"]].regularizer
        assert regularizer is not None, record["path"]
        assert regularizer.l2 == pytest.approx(record["l2"]), record["path"]
    penalty = sum(
        record["l2"]
        * float(np.sum(np.asarray(variables[record["path"]], dtype=np.float64) ** 2))
        for record in expected
    )
    total = float(sum(float(loss) for loss in model.losses))
    assert total == pytest.approx(penalty, rel=1e-4)


@pytest.mark.build
def test_a_mobilenet_with_a_dense_head_becomes_a_backbone_that_penalizes_every_kernel(
    tmp_path: Path,
) -> None:
    import keras

    base = keras.applications.MobileNetV3Small(include_top=False, weights=None)
    model = keras.Sequential(
        [
            keras.Input((64, 64, 3)),
            base,
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ],
        name="flowers",
    )
    model.save(tmp_path / "flowers.keras")
    done = import_model(tmp_path / "flowers.keras", tmp_path / "flowers.yaml", l2=1e-4)
    spec = yaml.safe_load(done.spec.read_text())
    assert spec["l2"] == 1e-4
    backbone = spec["layers"][0]
    assert (backbone["type"], backbone["model"], backbone["trainable"]) == (
        "backbone",
        "mobilenet_v3_small",
        True,
    )
    plan = plan_file(done.spec)
    kernels = [w for lay in plan.layers for w in lay.weights if w.role == "kernel"]
    assert kernels and all(w.l2 == 1e-4 for w in kernels)  # every one of them
    saved = _saved_model(plan, tmp_path)
    built = keras.saving.load_model(saved)  # the build, saved and loaded again
    module = import_generated(tmp_path / f"{plan.name}.py", "flowers_again")
    _penalties_are_l2_of_each_planned_weight(plan, module.build_model())
    _penalties_are_l2_of_each_planned_weight(plan, built)


# --- what the spec cannot express ------------------------------------------------


@pytest.mark.build
def test_every_layer_the_spec_cannot_express_is_listed_once_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    import keras
    from keras import layers

    @keras.saving.register_keras_serializable(package="mine")
    class Doubling(layers.Layer):
        def call(self, x: Any) -> Any:
            return x * 2

    inputs = keras.Input((8,), name="input")
    x = layers.Dense(4, kernel_initializer="he_normal", name="he")(inputs)
    x = layers.Lambda(lambda t: t + 1, name="plus_one")(x)
    x = Doubling(name="doubling")(x)
    x = layers.Dense(4, activation="gelu", kernel_constraint="max_norm", name="kept")(x)
    x = layers.Dense(4, kernel_regularizer=keras.regularizers.L1(0.1), name="l1")(x)
    x = layers.Dense(2, activation="softmax", name="out")(x)
    keras.Model(inputs, x).save(tmp_path / "odd.keras")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = CliRunner().invoke(
        main, ["import", str(tmp_path / "odd.keras"), "-o", str(tmp_path / "odd.yaml")]
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("  - ")]
    assert [line.split(" ")[3] for line in lines] == [
        "he",
        "plus_one",
        "doubling",
        "kept",
        "l1",
    ]
    assert "kernel_initializer=HeNormal" in lines[0]
    assert "Lambda" in lines[1] and "custom layer (mine>Doubling)" in lines[2]
    assert "kernel_constraint=MaxNorm" in lines[3]
    assert "L1 is not an L2 penalty" in lines[4]
    assert "5 layers the spec cannot express, so nothing was written" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def _archive(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


@pytest.mark.unit
@pytest.mark.parametrize(
    ("files", "said"),
    [
        ({"metadata.json": b"{}"}, "holds no config.json"),
        ({"config.json": b"{not json"}, "its config.json is not JSON"),
        ({"config.json": b"[1, 2]"}, "does not describe a model"),
        (
            {
                "config.json": json.dumps(
                    {"class_name": "MyModel", "config": {"layers": []}}
                ).encode()
            },
            "a subclassed model",
        ),
        (
            {
                "config.json": json.dumps(
                    {
                        "class_name": "Sequential",
                        "config": {"layers": [{"class_name": "Dense", "config": {}}]},
                    }
                ).encode()
            },
            "never built: no input shape",
        ),
        (
            {
                "config.json": json.dumps(
                    {
                        "class_name": "Functional",
                        "config": {
                            "layers": [
                                {
                                    "class_name": "InputLayer",
                                    "name": "a",
                                    "config": {"batch_shape": [None, 2]},
                                },
                                {
                                    "class_name": "InputLayer",
                                    "name": "b",
                                    "config": {"batch_shape": [None, 2]},
                                },
                            ],
                            "output_layers": [["a", 0, 0]],
                        },
                    }
                ).encode()
            },
            "2 inputs: a spec's model reads one",
        ),
    ],
)
def test_a_file_that_is_no_model_the_spec_can_hold_says_why_in_one_line(
    files: dict[str, bytes], said: str, tmp_path: Path
) -> None:
    path = _archive(tmp_path / "model.keras", files)
    with pytest.raises(ImportFailed) as error:
        read_model(path)
    assert said in str(error.value)
    assert str(error.value).startswith(f"{path}: ")


@pytest.mark.unit
def test_a_file_that_is_no_archive_and_an_oversized_config_are_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    legacy = tmp_path / "model.h5"
    legacy.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    with pytest.raises(ImportFailed, match=r"legacy HDF5 model; load it with Keras"):
        read_model(legacy)
    big = _archive(tmp_path / "big.keras", {"config.json": b" " * 4096})
    monkeypatch.setattr("l2compile.importing.MAX_CONFIG_BYTES", 1024)
    with pytest.raises(ImportFailed, match=r"its config\.json is 4,096 bytes"):
        read_model(big)
    assert MAX_CONFIG_BYTES >= 64 * 1024 * 1024


@pytest.mark.unit
def test_the_cli_refuses_to_write_over_a_file_and_checks_its_name(
    tmp_path: Path,
) -> None:
    model = _archive(tmp_path / "m.keras", {"config.json": b"{}"})
    spec = tmp_path / "m.yaml"
    spec.write_text("mine\n")
    runner = CliRunner()
    result = runner.invoke(main, ["import", str(model), "-o", str(spec)])
    assert result.exit_code == 2 and "exists" in result.output
    assert spec.read_text() == "mine\n"
    result = runner.invoke(main, ["import", str(model), "--name", "Not A Name"])
    assert result.exit_code == 2 and "'not_a_name'" in result.output
    result = runner.invoke(main, ["import", str(tmp_path / "none.keras")])
    assert result.exit_code == 2 and "no such file" in result.output


# --- the model's weights: --weights-from-model and train.initial_weights --------

SMALL_SPEC = """\
name: small
input: {shape: [6]}
l2: 0.001
layers:
  - {type: dense, units: 5, activation: relu}
  - {type: dense, units: 3, activation: softmax}
train:
  recipe: npz
  data: data.npz
  num_classes: 3
  initial_weights: %s
  epochs: 1
  batch_size: 8
"""


def _small_model(path: Path) -> Any:
    import keras

    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(5, activation="relu", name="hidden"),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ],
        name="small",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy"
    )
    model.save(path)
    return model


@pytest.mark.build
def test_weights_from_the_model_are_what_the_generated_build_model_starts_from(
    tmp_path: Path,
) -> None:
    original = _small_model(tmp_path / "small.keras")
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "import",
            str(tmp_path / "small.keras"),
            "-o",
            str(tmp_path / "small.yaml"),
            "--weights-from-model",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "wrote " + str(tmp_path / "small.weights.h5") in result.output
    spec = yaml.safe_load((tmp_path / "small.yaml").read_text())
    assert spec["train"]["initial_weights"] == "small.weights.h5"
    assert spec["train"]["optimizer"] == {"type": "adam", "learning_rate": 0.001}
    assert spec["train"]["loss"] == "sparse_categorical_crossentropy"
    plan = plan_file(tmp_path / "small.yaml")
    module_path = tmp_path / "small.py"
    module_path.write_text(render_module(plan))
    module = import_generated(module_path, "small_weights")
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    rebuilt = module.build_model(str(tmp_path / "small.weights.h5"))
    np.testing.assert_allclose(
        rebuilt.predict(x, verbose=0), original.predict(x, verbose=0), rtol=1e-6
    )
    fresh = module.build_model(None)  # without them: Keras' initializers
    assert not np.allclose(fresh.predict(x, verbose=0), original.predict(x, verbose=0))


@pytest.mark.unit
def test_initial_weights_of_another_model_a_missing_file_or_nan_are_located_errors(
    tmp_path: Path,
) -> None:
    import h5py

    def errors(name: str) -> list[str]:
        (tmp_path / "spec.yaml").write_text(SMALL_SPEC % name)
        loaded = load_spec(tmp_path / "spec.yaml")
        assert not isinstance(loaded, list)
        plan = plan_spec(loaded, tmp_path)
        assert isinstance(plan, list)
        return [f"{e.line}: {e.message}" for e in plan]

    (found,) = errors("none.weights.h5")
    assert found.startswith("11: ") and "is not a file" in found
    (tmp_path / "small.h5").write_bytes(b"")
    (found,) = errors("small.h5")
    assert "is not named as a Keras weights file (.weights.h5" in found
    with h5py.File(tmp_path / "other.weights.h5", "w") as file:
        file["a"] = np.zeros((6, 4), "float32")
        file["b"] = np.zeros((4,), "float32")
    (found,) = errors("other.weights.h5")
    assert "saved from another model: it holds 2 weights and the model has 4" in found
    with h5py.File(tmp_path / "nan.weights.h5", "w") as file:
        for i, shape in enumerate([(6, 5), (5,), (5, 3), (3,)]):
            file[f"w{i}"] = np.full(shape, np.nan if i == 2 else 0.0, "float32")
    (found,) = errors("nan.weights.h5")
    assert "NaN or infinite values" in found
    with h5py.File(tmp_path / "good.weights.h5", "w") as file:
        for i, shape in enumerate([(6, 5), (5,), (5, 3), (3,)]):
            file[f"w{i}"] = np.zeros(shape, "float32")
    (tmp_path / "spec.yaml").write_text(SMALL_SPEC % "good.weights.h5")
    loaded = load_spec(tmp_path / "spec.yaml")
    assert not isinstance(loaded, list)
    plan = plan_spec(loaded, tmp_path)
    assert not isinstance(plan, list), plan
    assert plan.initial_weights is not None


@pytest.mark.training
def test_a_build_starts_from_its_initial_weights(tmp_path: Path) -> None:
    """Trained at a rate too small to move them, the built model is the
    model whose weights the build started from."""
    original = _small_model(tmp_path / "small.keras")
    assert (
        CliRunner()
        .invoke(
            main,
            [
                "import",
                str(tmp_path / "small.keras"),
                "-o",
                str(tmp_path / "spec.yaml"),
                "--weights-from-model",
            ],
        )
        .exit_code
        == 0
    )
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.integers(0, 3, size=64)
    np.savez(
        tmp_path / "data.npz",
        x_train=x[:48],
        y_train=y[:48],
        x_test=x[48:],
        y_test=y[48:],
    )
    spec = tmp_path / "spec.yaml"
    result = CliRunner().invoke(
        main,
        [
            "build",
            str(spec),
            "--out",
            str(tmp_path / "out"),
            "--set",
            "train.optimizer.learning_rate=1e-12",
            "--set",
            "train.epochs=1",
            "--set",
            "l2=0",
        ],
    )
    assert result.exit_code == 0, result.output
    import keras

    built = keras.saving.load_model(tmp_path / "out" / "model.keras")
    np.testing.assert_allclose(
        built.predict(x, verbose=0), original.predict(x, verbose=0), atol=1e-5
    )


@pytest.mark.build
def test_names_from_the_file_never_become_fields_or_lines_of_the_spec(
    tmp_path: Path,
) -> None:
    """A model's and a layer's names are the file's text: in the spec they are
    quoted ASCII in comments, or made spec names."""
    import keras

    hostile = "pets\nl2: 5\n# \u2028x: 1"
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, activation="softmax", name="Out Layer: {x}"),
        ],
        name=hostile,
    )
    model.save(tmp_path / "odd name\n.keras")
    done = import_model(tmp_path / "odd name\n.keras", tmp_path / "odd.yaml")
    text = done.spec.read_text()
    assert text.isascii()
    spec = yaml.safe_load(text)
    assert spec["l2"] == 0.0 and "x" not in spec
    assert spec["name"] == "pets_l2_5_x_1"
    assert spec["description"] == 'Imported from "odd name\\n.keras"'
    assert spec["layers"] == [
        {"type": "dense", "name": "out_layer_x", "units": 3, "activation": "softmax"}
    ]
    assert '"pets\\nl2: 5\\n# \\u2028x: 1"' in text.splitlines()[0]


@pytest.mark.build
def test_a_module_that_starts_from_weights_passes_ruff_and_mypy_strict(
    tmp_path: Path,
) -> None:
    import h5py

    from .test_codegen import mypy_strict, tool

    with h5py.File(tmp_path / "start.weights.h5", "w") as file:
        for i, shape in enumerate([(6, 5), (5,), (5, 3), (3,)]):
            file[f"w{i}"] = np.zeros(shape, "float32")
    (tmp_path / "spec.yaml").write_text(SMALL_SPEC % "start.weights.h5")
    loaded = load_spec(tmp_path / "spec.yaml", "spec.yaml")
    assert not isinstance(loaded, list)
    plan = plan_spec(loaded, tmp_path)
    assert not isinstance(plan, list), plan
    code = render_module(plan)
    assert "def build_model(initial_weights: str | None = INITIAL_WEIGHTS)" in code
    assert 'INITIAL_WEIGHTS = "start.weights.h5"' in code
    module = tmp_path / "small.py"
    module.write_text(code)
    for check in (("ruff", "format", "--check"), ("ruff", "check")):
        result = tool(*check, "--no-cache", str(module))
        assert result.returncode == 0, result.stdout + result.stderr
    result = mypy_strict(tmp_path, str(module))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.build
def test_the_guides_rescaling_before_a_bare_application_is_left_out_and_said(
    tmp_path: Path,
) -> None:
    """Keras' transfer-learning guide scales [0, 255] pixels to MobileNetV2's
    [-1, 1] before it: the spec's backbone scales l2compile's [0, 1] images
    itself, so that layer is left out (not applied twice), and the spec says
    so. Any other layer before a bare application is refused."""
    import keras
    from keras import layers

    base = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(32, 32, 3)
    )
    inputs = keras.Input((32, 32, 3))
    x = layers.Rescaling(1 / 127.5, offset=-1, name="to_unit")(inputs)
    x = layers.GlobalAveragePooling2D()(base(x))
    keras.Model(inputs, layers.Dense(2, activation="softmax")(x)).save(
        tmp_path / "guide.keras"
    )
    done = import_model(tmp_path / "guide.keras", tmp_path / "guide.yaml")
    spec = yaml.safe_load(done.spec.read_text())
    assert [layer["type"] for layer in spec["layers"]] == [
        "backbone",
        "global_average_pooling2d",
        "dense",
    ]
    assert "inputs" not in spec["layers"][0]
    comments = [
        line[2:] for line in done.spec.read_text().splitlines() if line[:2] == "# "
    ]
    assert 'scaled them for mobilenet_v2 ("to_unit")' in " ".join(comments)
    inputs = keras.Input((32, 32, 3))
    x = layers.Rescaling(1 / 255, name="to_one")(inputs)  # not MobileNetV2's range
    x = layers.GlobalAveragePooling2D()(base(x))
    keras.Model(inputs, layers.Dense(2, activation="softmax")(x)).save(
        tmp_path / "other.keras"
    )
    with pytest.raises(ImportFailed) as error:
        import_model(tmp_path / "other.keras", tmp_path / "other.yaml")
    assert "to_one (Rescaling): it prepares the input of mobilenet_v2" in str(
        error.value
    )
    assert not (tmp_path / "other.yaml").exists()


@pytest.mark.build
def test_penalties_the_spec_lacks_are_explained_and_import_l2_sets_them_aside(
    tmp_path: Path,
) -> None:
    import keras
    from keras import layers, regularizers

    def save(second: Any, name: str) -> Path:
        keras.Sequential(
            [
                keras.Input((4,)),
                layers.Dense(8, kernel_regularizer=regularizers.L1L2(l1=0.0, l2=1e-3)),
                layers.Dense(8, kernel_regularizer=second),
                layers.Dense(
                    2,
                    activation="softmax",
                    kernel_regularizer=regularizers.L2(1e-3),
                    bias_regularizer=regularizers.L2(1e-5),
                ),
            ],
            name="test",  # shadows Python's own test package
        ).save(tmp_path / name)
        return tmp_path / name

    with pytest.raises(ImportFailed) as error:
        import_model(save(regularizers.L1(1e-3), "m.keras"), tmp_path / "m.yaml")
    assert "kernel_regularizer: L1 is not an L2 penalty" in str(error.value)
    with pytest.raises(ImportFailed) as error:
        import_model(save(regularizers.L2(1e-3), "l2.keras"), tmp_path / "m.yaml")
    said = str(error.value)
    assert "bias_regularizer=L2(1e-05)" in said and "import --l2 VALUE" in said
    assert "dense (Dense)" not in said  # L1L2(l1=0) is an L2 penalty
    done = import_model(tmp_path / "m.keras", tmp_path / "m.yaml", l2=1e-4)
    spec = yaml.safe_load(done.spec.read_text())
    assert spec["name"] == "test_model" and spec["l2"] == 1e-4
    assert "The file was saved without compile()" in done.spec.read_text()
    result = CliRunner().invoke(
        main,
        [
            "import",
            str(tmp_path / "m.keras"),
            "-o",
            str(tmp_path / "m2.yaml"),
            "--weights-from-model",
            "--l2",
            "1e-4",
        ],
    )
    assert result.exit_code == 0, result.output
    before = (tmp_path / "m2.weights.h5").read_bytes()
    (tmp_path / "m2.yaml").unlink()
    result = CliRunner().invoke(
        main,
        [
            "import",
            str(tmp_path / "m.keras"),
            "-o",
            str(tmp_path / "m2.yaml"),
            "--weights-from-model",
        ],
    )
    assert result.exit_code == 2 and "m2.weights.h5 exists" in result.output
    assert (tmp_path / "m2.weights.h5").read_bytes() == before
