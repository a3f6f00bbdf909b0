"""A phone-ready image classifier, end to end: a MobileNetV3 backbone (frozen)
under a new head, trained on an image folder the test writes, exported to
TFLite with metadata, and loaded by a real client, MediaPipe Tasks'
ImageClassifier, which must agree with the LiteRT interpreter.

The backbone's weights stand in for ImageNet's, which tests do not download:
random kernels whose batch normalization statistics are those of the
folder's images (what pretraining gives a backbone, and what a frozen one
needs: random statistics leave its features near zero).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from l2compile import build as builder
from l2compile import metadata
from l2compile.formats.tflite import TFLITE_TOLERANCE
from l2compile.generate import compile_spec

from .conftest import SHAPES, make_image_folder

SPEC = """\
name: tiny_phone
description: a frozen MobileNetV3-Small under a softmax head
input: {shape: [32, 32, 3]}
l2: 0.0001
layers:
  - {type: random_flip, mode: horizontal}
  - {type: backbone, model: mobilenet_v3_small, weights: small.weights.h5}
  - {type: global_average_pooling2d}
  - {type: dense, units: 3, activation: softmax}
train:
  recipe: image_folder
  data: photos
  test_split: 0.25
  epochs: 5
  batch_size: 16
  optimizer: {learning_rate: 0.01}
export: {formats: [keras, tflite]}
"""

#: Measured here (JAX, CPU): 0.807, 0.816, 0.904 and 0.886 on the 114 test
#: images after 5 epochs in four runs (runs in other processes differ), full
#: int8 drops 0.009 to 0.053 (one image is 0.009); a third is chance.
FLOOR = 0.7
#: MediaPipe and LiteRT must name the same class for this share of images.
AGREEMENT = 0.99


def _rgb(file: Path) -> Any:
    import tensorflow as tf

    return tf.io.decode_image(file.read_bytes(), channels=3).numpy()


def _backbone_weights(folder: Path, images: list[Path]) -> None:
    """A MobileNetV3-Small weights file whose batch normalization statistics
    are those of `images` (momentum 0: one batch sets them)."""
    import keras

    application = keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), include_top=False, weights=None
    )
    norms = [
        layer
        for layer in application.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    for layer in norms:
        layer.momentum = 0.0
    application(np.stack([_rgb(f) for f in images]).astype("float32"), training=True)
    application.save_weights(folder / "small.weights.h5")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, list[Path]]:
    folder = tmp_path_factory.mktemp("phone")
    make_image_folder(
        folder / "photos", channels=3, split=False, per_class=150, size=32
    )
    images = sorted((folder / "photos").glob("*/*"))
    _backbone_weights(folder, images[::3])
    spec = folder / "spec.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    compiled = compile_spec(spec)
    assert not isinstance(compiled, list), [str(e) for e in compiled]
    out = folder / "build"
    result = builder.build(compiled.plan, compiled.code, out, log=print)
    return out, result.metrics, images


@pytest.mark.build
def test_a_frozen_backbone_learns_an_image_folder_and_keeps_parity(
    built: tuple[Path, Any, list[Path]],
) -> None:
    _, metrics, _ = built
    assert metrics["test_accuracy"] >= FLOOR
    files = metrics["tflite"]["files"]
    assert set(files) == {"none", "float16", "dynamic", "int8"}
    assert abs(files["none"]["accuracy_drop"]) <= TFLITE_TOLERANCE
    # The default max_accuracy_drop, 0.01: the int8 fallback keeps what
    # loses the most in float where the full file misses it (measured here:
    # 0.0175 in full int8, 0.0 with the backbone's input rescaling in float).
    assert files["int8"]["accuracy_drop"] <= 0.01
    # Only the head trains: the backbone's kernels are frozen, so no penalty.
    assert metrics["regularized_parameters"] == 576 * 3


@pytest.mark.external
def test_the_report_opens_with_the_verdict_and_the_tflite_files(
    built: tuple[Path, Any, list[Path]],
) -> None:
    """A backbone's hundreds of weights are folded away: the page's first
    screen says whether the model learned, and what its TFLite files score."""
    from .pagecheck import check_in_chromium

    out, metrics, _ = built
    assert metrics["learned"] is True
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "Learned: yes" in page
    # The confusion matrix, the curves per epoch and the weight norms.
    check_in_chromium(
        out / "report.html",
        "phone_classifier_report.png",
        images=3,
        first_screen=("verdict", "tflite"),
    )


@pytest.mark.build
def test_every_tflite_file_carries_its_labels_and_normalization(
    built: tuple[Path, Any, list[Path]],
) -> None:
    out, metrics, _ = built
    model = json.loads((out / "model.json").read_text())
    labels = list(SHAPES)
    assert (out / "labels.txt").read_text().split() == labels
    pre = model["input"]["preprocessing"]
    for mode, entry in model["files"].items():
        tflite = (out / entry["file"]).read_bytes()
        assert metadata.read_labels(tflite) == labels, mode
        norm = entry["metadata"]["normalization"]
        # An app feeding the file by hand (model.json) and MediaPipe (the
        # metadata) make the same input from every pixel value.
        for pixel in (0.0, 17.0, 255.0):
            by_hand = (pixel * pre["scale"] - pre["mean"]) / pre["std"]
            by_metadata = (pixel - norm["mean"][0]) / norm["std"][0]
            assert by_hand == pytest.approx(by_metadata), mode
        assert metrics["tflite"]["files"][mode]["size_bytes"] == len(tflite)
    backbone = model["input"]["backbone"]
    assert backbone["model"] == "mobilenet_v3_small"
    assert backbone["reads"] == "[0, 255]"


@pytest.mark.external
def test_mediapipe_classifies_as_litert_does(
    built: tuple[Path, Any, list[Path]],
) -> None:
    """Each TFLite file loads in MediaPipe's ImageClassifier as it is; its
    top class is LiteRT's (a class tied for LiteRT's top score counts: an
    int8 output often ties, and the two break ties differently)."""
    import mediapipe as mp
    from ai_edge_litert.interpreter import Interpreter
    from mediapipe.tasks.python import BaseOptions, vision

    out, metrics, images = built
    pixels = [_rgb(file) for file in images]
    for mode, entry in metrics["tflite"]["files"].items():
        path = out / entry["file"]
        options = vision.ImageClassifierOptions(
            base_options=BaseOptions(model_asset_path=str(path)), max_results=3
        )
        interpreter = Interpreter(model_path=str(path))
        interpreter.allocate_tensors()
        (inp,) = interpreter.get_input_details()
        (output,) = interpreter.get_output_details()
        agree = 0
        with vision.ImageClassifier.create_from_options(options) as classifier:
            for rgb in pixels:
                found = classifier.classify(
                    mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)
                ).classifications[0]
                assert {c.category_name for c in found.categories} == set(SHAPES)
                interpreter.set_tensor(inp["index"], rgb[None] / np.float32(255))
                interpreter.invoke()
                scores = interpreter.get_tensor(output["index"])[0]
                agree += scores[found.categories[0].index] == scores.max()
        assert agree / len(pixels) >= AGREEMENT, (mode, agree, len(pixels))
