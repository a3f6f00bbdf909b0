"""Image augmentation layers: what the spec takes and refuses, the Keras
arguments they get (each its own seed), and that they act only while training:
reproducibly, and not at all in the exported files."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from .conftest import compile_errors, compiled, plan_text

AUGMENTED = """\
name: augmented
description: augmentation in front of a small convnet
input: {shape: [28, 28, 1]}
layers:
  - LAYER
  - {type: conv2d, filters: 4, kernel_size: 3, activation: relu}
  - {type: flatten}
  - {type: dense, units: 10, activation: softmax}
train: {recipe: mnist, epochs: 1, batch_size: 32, seed: 7}
"""
#: Where the layer under test starts: line 5, column 5 (after "  - ").
AT = "spec.yaml:5"

EVERY_KIND = [
    "{type: random_flip, mode: horizontal}",
    "{type: random_rotation, factor: 0.1}",
    "{type: random_zoom, height_factor: [-0.1, 0.2], width_factor: 0.1}",
    "{type: random_translation, height_factor: 0.1, width_factor: 0.1}",
    "{type: random_contrast, factor: 0.2}",
    "{type: random_brightness, factor: 0.1}",
]


def spec_with(*layers: str) -> str:
    return AUGMENTED.replace("  - LAYER\n", "".join(f"  - {x}\n" for x in layers))


# --- the Keras arguments ------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("layer", "args"),
    [
        ("{type: random_flip}", ()),
        ("{type: random_flip, mode: horizontal}", ('"horizontal"',)),
        ("{type: random_rotation, factor: 0.1}", ("0.1",)),
        (
            "{type: random_rotation, factor: [-0.1, 0.25], fill_mode: constant, "
            "fill_value: 0.5, interpolation: nearest}",
            (
                "(-0.1, 0.25)",
                'fill_mode="constant"',
                'interpolation="nearest"',
                "fill_value=0.5",
            ),
        ),
        ("{type: random_zoom, height_factor: 0.2}", ("height_factor=0.2",)),
        (
            "{type: random_zoom, height_factor: [-0.3, -0.1], width_factor: 0.2, "
            "fill_mode: nearest}",
            (
                "height_factor=(-0.3, -0.1)",
                "width_factor=0.2",
                'fill_mode="nearest"',
            ),
        ),
        (
            "{type: random_translation, height_factor: 0.1, width_factor: [0, 1], "
            "fill_mode: wrap}",
            ("height_factor=0.1", "width_factor=(0.0, 1.0)", 'fill_mode="wrap"'),
        ),
        # A single number is the range Keras documents, [1 - f, 1 + f]: Keras
        # itself draws it from [1, 1 + f].
        (
            "{type: random_contrast, factor: 0.2}",
            ("(0.2, 0.2)", "value_range=(0.0, 1.0)"),
        ),
        (
            "{type: random_contrast, factor: [0.1, 0.5], value_range: [0, 255]}",
            ("(0.1, 0.5)",),
        ),
        ("{type: random_brightness, factor: 0.2}", ("0.2", "value_range=(0.0, 1.0)")),
        (
            "{type: random_brightness, factor: [-0.1, 0.3], value_range: [-1, 1]}",
            ("(-0.1, 0.3)", "value_range=(-1.0, 1.0)"),
        ),
    ],
)
def test_each_kind_writes_only_the_arguments_that_differ_from_keras(
    layer: str, args: tuple[str, ...], tmp_path: Path
) -> None:
    (first, *_) = plan_text(spec_with(layer), tmp_path).layers
    kind = layer.split(",")[0].removeprefix("{type: ").rstrip("}")
    assert first.args == (*args, "seed=seed", f'name="{kind}_1"')


@pytest.mark.unit
def test_each_augmentation_layer_gets_its_own_seed_and_passes_its_shape_on(
    tmp_path: Path,
) -> None:
    text = spec_with(*EVERY_KIND).replace(
        "  - {type: flatten}\n", "  - {type: dropout, rate: 0.1}\n  - {type: flatten}\n"
    )
    plan = plan_text(text, tmp_path)
    seeds = [[a for a in lay.args if a.startswith("seed=")] for lay in plan.layers]
    assert seeds == [
        ["seed=seed"],
        ["seed=seed + 1"],
        ["seed=seed + 2"],
        ["seed=seed + 3"],
        ["seed=seed + 4"],
        ["seed=seed + 5"],
        [],  # conv2d
        [],  # dropout keeps Keras' own seeding: the goldens are unchanged
        [],
        [],
    ]
    assert [lay.output_shape for lay in plan.layers[:6]] == [(28, 28, 1)] * 6
    assert all(not lay.weights and lay.passthrough for lay in plan.layers[:6])


@pytest.mark.unit
def test_a_graph_reads_its_input_as_the_augmentation_leaves_it(tmp_path: Path) -> None:
    """In a graph, the layers that read the last augmentation layer read the
    model's input: the augmentation is built apart, in build_augmentation."""
    text = (
        "name: branches\ninput: {shape: [16, 16, 3]}\nlayers:\n"
        "  - {type: random_flip}\n"
        "  - {type: conv2d, filters: 4, kernel_size: 3, padding: same, name: a}\n"
        "  - {type: conv2d, filters: 4, kernel_size: 1, name: b, "
        "inputs: [random_flip_1]}\n"
        "  - {type: add, inputs: [a, b]}\n"
        "  - {type: global_average_pooling2d}\n"
        "  - {type: dense, units: 2, activation: softmax}\n"
        "train: {recipe: image_folder, data: photos/, test_split: 0.2, "
        "epochs: 1, batch_size: 8}\n"
    )
    code = compiled(tmp_path, text).code
    model = code[code.index("def build_model") : code.index("def build_augmentation")]
    assert "RandomFlip" not in model
    assert ")(inputs)" in model and "random_flip_1" not in model
    augmentation = code[code.index("def build_augmentation") :]
    assert 'layers.RandomFlip(seed=seed, name="random_flip_1")' in augmentation


# --- what the spec refuses ------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("layer", "error"),
    [
        (
            "{type: random_flip, mode: diagonal}",
            "31: error: layers[0].mode: unknown value 'diagonal' (expected one of: "
            "horizontal, vertical, horizontal_and_vertical)",
        ),
        (
            "{type: random_flip, factor: 0.1}",
            "25: error: layers[0].factor: unknown field 'factor'",
        ),
        (
            "{type: random_rotation}",
            "5: error: layers[0].factor: required field is missing",
        ),
        (
            "{type: random_rotation, factor: 1.5}",
            "37: error: layers[0].factor: must be from 0 to 1 (a number f is the "
            "range [-f, f]; write [low, high] for another range), got 1.5",
        ),
        (
            "{type: random_rotation, factor: -0.2}",
            "37: error: layers[0].factor: must be from 0 to 1 (a number f is the "
            "range [-f, f]; write [low, high] for another range), got -0.2",
        ),
        (
            "{type: random_rotation, factor: [0.3, 0.1]}",
            "37: error: layers[0].factor: [low, high] must have low <= high, "
            "got [0.3, 0.1]",
        ),
        (
            "{type: random_rotation, factor: [-2, 0.5]}",
            "37: error: layers[0].factor: [low, high] must each be from -1 to 1, "
            "got [-2, 0.5]",
        ),
        (
            "{type: random_rotation, factor: '0.1'}",
            "37: error: layers[0].factor: must be a number from 0 to 1, or a list "
            "[low, high] of numbers from -1 to 1, got '0.1'",
        ),
        (
            "{type: random_rotation, factor: [0.1, 0.2, 0.3]}",
            "37: error: layers[0].factor: must be a number from 0 to 1, or a list "
            "[low, high] of numbers from -1 to 1, got [0.1, 0.2, 0.3]",
        ),
        (
            "{type: random_rotation, factor: .nan}",
            "37: error: layers[0].factor: must be a number from 0 to 1, or a list "
            "[low, high] of numbers from -1 to 1, got nan",
        ),
        (
            "{type: random_rotation, factor: 0.1, fill_mode: mirror}",
            "53: error: layers[0].fill_mode: unknown value 'mirror' (expected one "
            "of: reflect, wrap, constant, nearest)",
        ),
        (
            "{type: random_zoom, height_factor: 1}",
            "40: error: layers[0].height_factor: must be at least 0 and below 1 (a "
            "number f is the range [-f, f]; write [low, high] for another range), "
            "got 1",
        ),
        (
            "{type: random_zoom, height_factor: 0.1, width_factor: [-1, 0.5]}",
            "59: error: layers[0].width_factor: [low, high] must each be above -1 "
            "and at most 1, got [-1, 0.5]",
        ),
        (
            "{type: random_translation, height_factor: 0.1}",
            "5: error: layers[0].width_factor: required field is missing",
        ),
        (
            "{type: random_contrast, factor: [-0.1, 0.5]}",
            "37: error: layers[0].factor: [low, high] must each be from 0 to 1, "
            "got [-0.1, 0.5]",
        ),
        (
            "{type: random_brightness, factor: 0.2, value_range: [1, 0]}",
            "57: error: layers[0].value_range: must be [low, high], the range of the "
            "pixel values, with low < high, got [1, 0]",
        ),
    ],
)
def test_the_spec_refuses_what_keras_refuses_or_misreads(
    layer: str, error: str, tmp_path: Path
) -> None:
    assert compile_errors(spec_with(layer), tmp_path) == [f"{AT}:{error}"]


@pytest.mark.unit
def test_a_fill_value_without_fill_mode_constant_is_refused(tmp_path: Path) -> None:
    text = spec_with("{type: random_zoom, height_factor: 0.1, fill_value: 0.5}")
    assert compile_errors(text, tmp_path) == [
        f"{AT}:57: error: layers[0].fill_value: fill_value is used only with "
        "fill_mode: constant, but fill_mode is reflect"
    ]


@pytest.mark.unit
def test_augmentation_needs_images_of_height_width_and_channels(
    tmp_path: Path,
) -> None:
    text = spec_with("{type: random_flip}").replace(
        "shape: [28, 28, 1]", "shape: [28, 28]"
    )
    assert compile_errors(text, tmp_path) == [
        f"{AT}:12: error: layers[0].type: random_flip needs input of shape "
        "(height, width, channels), but its input is (28, 28); add a reshape "
        "layer before it, e.g. target_shape: [28, 28, 1]",
    ]


# --- the generated model --------------------------------------------------------


def generated_module(tmp_path: Path, text: str) -> ModuleType:
    path = tmp_path / "augmented.py"
    path.write_text(compiled(tmp_path, text).code, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("augmented", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.build
def test_augmentation_is_apart_from_the_model_reproducible_and_off_at_inference(
    tmp_path: Path,
) -> None:
    # Two layers alike but for their index: their seeds must differ.
    twice = "{type: random_rotation, factor: 0.2}"
    module = generated_module(tmp_path, spec_with(twice, twice, *EVERY_KIND))
    x = np.random.default_rng(0).random((4, 28, 28, 1)).astype("float32")
    kinds = {"RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation"}
    kinds |= {"RandomContrast", "RandomBrightness"}
    # The model has none of them: no training step, no saved file holds one.
    assert not kinds & {type(lay).__name__ for lay in module.build_model().layers}

    def augmented(seed: int) -> list[np.ndarray]:
        layers = module.build_augmentation(seed).layers
        assert len(layers) == 8
        return [np.asarray(layer(x, training=True)) for layer in layers]

    first, again = augmented(0), augmented(0)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(first[0], first[1])
    assert all(not np.allclose(out, x) for out in first)
    assert not np.allclose(augmented(1)[0], first[0])
    for layer in module.build_augmentation().layers:
        np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)

    # The training batches' graph, traced once: each epoch draws anew, from
    # (SEED, epoch) alone, whatever was drawn before it.
    augmenter = module.Augmenter()
    augmenter.reseed(2)
    epoch_2 = [augmenter(x) for _ in range(2)]
    assert not np.allclose(epoch_2[0], epoch_2[1])  # each batch draws anew
    augmenter.reseed(3)
    assert not np.allclose(augmenter(x), epoch_2[0])
    for again in (augmenter, module.Augmenter()):
        again.reseed(2)
        np.testing.assert_array_equal(again(x), epoch_2[0])
        np.testing.assert_array_equal(again(x), epoch_2[1])


@pytest.mark.build
def test_training_batches_are_augmented_alike_when_training_resumes(
    tmp_path: Path,
) -> None:
    module = generated_module(
        tmp_path, spec_with("{type: random_rotation, factor: 0.3}")
    )
    x = np.random.default_rng(1).random((40, 28, 28, 1)).astype("float32")
    y = np.arange(40) % 10

    def batch(epoch: int, fresh: bool) -> np.ndarray:
        batches = module.Batches(x, y, augment=True)
        if not fresh:  # trained epochs 0 .. epoch - 1 first
            for earlier in range(epoch):
                batches.shuffle(earlier)
                [batches[i] for i in range(len(batches))]
        batches.shuffle(epoch)
        return np.asarray(batches[1][0])

    resumed, straight = batch(2, fresh=True), batch(2, fresh=False)
    np.testing.assert_array_equal(resumed, straight)
    plain = module.Batches(x, y)  # validation and test batches are not augmented
    plain.shuffle(2)
    order = plain.order[module.BATCH_SIZE : 2 * module.BATCH_SIZE]
    np.testing.assert_array_equal(np.asarray(plain[1][0]), x[order])
    assert not np.allclose(resumed, x[order])


# --- the exported files ---------------------------------------------------------

# Run on TensorFlow, as a build exports: the TFLite source the build converts
# and the served SavedModel (`model.export`), each converted to TFLite; the
# op names of each, or the converter's error.
_EXPORT = """\
import importlib.util, json, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("augmented", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from l2compile import export

def ops(saved_model, signature):
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model), signature_keys=[signature]
    )
    try:
        content = converter.convert()
    except Exception as error:  # say which ops it could not convert
        lines = str(error).splitlines()
        return next((x for x in lines if "TF Select ops" in x), lines[0])
    details = Interpreter(model_content=content)._get_ops_details()
    return sorted({op["op_name"] for op in details})

out = Path(sys.argv[2])
model = module.build_model()
export.export_tflite_source(model, out / "source", module.INPUT_SHAPE, None, "p")
export.export_saved_model(model, out / "saved_model")
print(json.dumps({
    "tflite": ops(out / "source", export.SIGNATURE),
    "saved_model": ops(out / "saved_model", "serving_default"),
}))
"""


@pytest.fixture(scope="module")
def exported_ops(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    tmp_path = tmp_path_factory.mktemp("augmented")
    module = tmp_path / "augmented.py"
    module.write_text(compiled(tmp_path, spec_with(*EVERY_KIND)).code, "utf-8")
    result = subprocess.run(
        [sys.executable, "-c", _EXPORT, str(module), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KERAS_BACKEND": "tensorflow"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return found


def random_ops(ops: object) -> list[str]:
    """The ops that only augmentation brings (any of them, where the file
    could not be converted at all)."""
    assert isinstance(ops, list), ops
    assert "CONV_2D" in ops and "FULLY_CONNECTED" in ops, ops
    words = ("RANDOM", "PROJECTIVE", "FLEX", "CUSTOM")
    return [op for op in ops if any(word in op.upper() for word in words)]


@pytest.mark.build
def test_the_tflite_file_holds_no_augmentation(
    exported_ops: dict[str, object],
) -> None:
    assert random_ops(exported_ops["tflite"]) == []


@pytest.mark.build
def test_the_served_saved_model_holds_no_augmentation(
    exported_ops: dict[str, object],
) -> None:
    assert random_ops(exported_ops["saved_model"]) == []


# On TensorFlow the layers draw from their own stream (no _backend_generators):
# reseeding restarts it all the same.
_RESEED = """\
import sys
from pathlib import Path
import numpy as np
from l2compile.contract import import_generated
module = import_generated(Path(sys.argv[1]), "augmented")
x = np.random.default_rng(0).random((4, 28, 28, 1)).astype("float32")
augmenter = module.Augmenter()
augmenter.reseed(2)
first = [augmenter(x) for _ in range(2)]
augmenter.reseed(5)
other = augmenter(x)
again = module.Augmenter()
again.reseed(2)
assert not np.allclose(first[0], first[1]) and not np.allclose(other, first[0])
for reseeded in (augmenter, again):
    reseeded.reseed(2)
    for batch in first:
        np.testing.assert_array_equal(reseeded(x), batch)
print("reseeded")
"""


@pytest.mark.build
def test_reseeding_restarts_the_streams_on_tensorflow_too(tmp_path: Path) -> None:
    module = tmp_path / "augmented.py"
    module.write_text(compiled(tmp_path, spec_with(*EVERY_KIND)).code, "utf-8")
    result = subprocess.run(
        [sys.executable, "-c", _RESEED, str(module)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == "reseeded"
