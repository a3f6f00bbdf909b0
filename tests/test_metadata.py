"""MediaPipe Tasks' ImageClassifier loads a TFLite file that
l2compile.metadata gave image-classifier metadata, names its categories from
the packed labels, and ranks them as LiteRT's interpreter does on the same
image. Without the metadata it refuses a float model.

The model is tiny and its weights are set by hand: a 1x1 Conv2D that copies
the channels, average pooling, and a Dense layer that scores each channel, so
the top category of an image is its brightest channel (red, green, blue:
"cat", "dog", "fish"). That also shows MediaPipe feeding RGB in that order.

Needs the optional mediapipe package (pip install "l2compile[mediapipe]");
skipped without it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from l2compile.metadata import image_classifier_metadata, read_labels

LABELS = ["cat", "dog", "fish"]
MEAN = [0.0, 0.0, 0.0]
STD = [255.0, 255.0, 255.0]
SIZE = 16

Image = npt.NDArray[np.uint8]


def _images() -> list[Image]:
    """One image per class (its brightest channel), over random noise."""
    rng = np.random.default_rng(7)
    images = []
    for channel in (0, 1, 2, 1, 0):
        image = rng.integers(0, 90, (SIZE, SIZE, 3), dtype=np.uint8)
        image[..., channel] += 160
        images.append(image)
    return images


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The classifier, exported as a TensorFlow SavedModel (the tests that
    use it need mediapipe; imported here, not at collection, since it imports
    TensorFlow and Keras)."""
    pytest.importorskip("mediapipe")
    import keras

    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Conv2D(3, 1, use_bias=False),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.layers[0].set_weights([np.eye(3, dtype=np.float32).reshape(1, 1, 3, 3)])
    model.layers[2].set_weights(
        [np.eye(3, dtype=np.float32) * 8, np.zeros(3, dtype=np.float32)]
    )
    path = tmp_path_factory.mktemp("metadata") / "saved_model"
    model.export(str(path), format="tf_saved_model", verbose=False)
    return path


Convert = Callable[..., bytes]


@pytest.fixture(scope="module")
def convert(saved_model: Path) -> Convert:
    """Converts the SavedModel to TFLite: float, or full-integer with float
    input and output or the given input and output types ("uint8", ...)."""
    import tensorflow as tf

    def run(quantized: bool = False, io: tuple[str, str] | None = None) -> bytes:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        if quantized:
            rng = np.random.default_rng(0)

            def samples() -> Iterator[list[npt.NDArray[np.float32]]]:
                for _ in range(8):
                    yield [rng.random((1, SIZE, SIZE, 3), dtype=np.float32)]

            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = samples
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if io is not None:
                converter.inference_input_type = tf.dtypes.as_dtype(io[0])
                converter.inference_output_type = tf.dtypes.as_dtype(io[1])
        return bytes(converter.convert())

    return run


@pytest.fixture(scope="module")
def float_model(convert: Convert) -> bytes:
    return convert()


def _attach(model: bytes) -> bytes:
    return image_classifier_metadata(
        model,
        labels=LABELS,
        mean=MEAN,
        std=STD,
        name="tiny classifier",
        description="Names the brightest colour channel.",
    )


def _mediapipe(model: bytes, images: Sequence[Image]) -> list[list[Any]]:
    """MediaPipe's categories for each image, best first."""
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    options = vision.ImageClassifierOptions(
        base_options=BaseOptions(model_asset_buffer=model)
    )
    with vision.ImageClassifier.create_from_options(options) as classifier:
        return [
            classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=image))
            .classifications[0]
            .categories
            for image in images
        ]


def _litert(model: bytes, image: Image) -> npt.NDArray[np.float32]:
    """LiteRT's class scores for `image`, fed as pixels / 255 (a uint8 input:
    the pixels themselves)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    (out,) = interpreter.get_output_details()
    batch = image[None]
    if inp["dtype"] == np.float32:
        batch = (batch / np.float32(255)).astype(np.float32)
    interpreter.set_tensor(inp["index"], batch)
    interpreter.invoke()
    scores: npt.NDArray[Any] = interpreter.get_tensor(out["index"])[0]
    if out["dtype"] == np.uint8:
        scale, zero_point = out["quantization"]
        scores = (scores.astype(np.float32) - zero_point) * scale
    return scores.astype(np.float32)


def _check_agrees(model: bytes, bare: bytes, atol: float) -> None:
    """MediaPipe names every label and ranks like LiteRT; the metadata leaves
    the model's arithmetic as it was."""
    images = _images()
    for image, categories in zip(images, _mediapipe(model, images), strict=True):
        assert sorted(c.category_name for c in categories) == sorted(LABELS)
        expected = _litert(model, image)
        np.testing.assert_array_equal(expected, _litert(bare, image))
        top = int(np.argmax(expected))
        assert categories[0].index == top
        assert categories[0].category_name == LABELS[top]
        assert top == int(np.argmax(image.mean(axis=(0, 1))))
        scores = np.zeros(len(LABELS), dtype=np.float32)
        for category in categories:
            scores[category.index] = category.score
        np.testing.assert_allclose(scores, expected, atol=atol)


@pytest.mark.external
def test_float_model_with_metadata_classifies_like_litert(float_model: bytes) -> None:
    _check_agrees(_attach(float_model), float_model, atol=1e-5)


@pytest.mark.external
def test_without_metadata_mediapipe_refuses_a_float_model(float_model: bytes) -> None:
    with pytest.raises(Exception, match="NormalizationOptions"):
        _mediapipe(float_model, _images()[:1])


@pytest.mark.external
def test_labels_round_trip(float_model: bytes) -> None:
    assert read_labels(_attach(float_model)) == LABELS
    assert read_labels(float_model) is None


@pytest.mark.external
def test_metadata_is_reproducible(float_model: bytes) -> None:
    assert _attach(float_model) == _attach(float_model)


@pytest.mark.external
@pytest.mark.parametrize(
    "io",
    [None, ("uint8", "uint8"), ("uint8", "float32")],
    ids=["float-io", "uint8-io", "uint8-in"],
)
def test_full_integer_model_with_metadata(
    convert: Convert, io: tuple[str, str] | None
) -> None:
    """Integer models load too: with float input and output (MediaPipe
    normalizes as for a float model), or a uint8 input, which MediaPipe fills
    with the pixels themselves (the input's quantization, scale about 1/255 and
    zero point 0 here, stands in for the normalization)."""
    bare = convert(quantized=True, io=io)
    _check_agrees(_attach(bare), bare, atol=0.01)


@pytest.mark.external
@pytest.mark.parametrize("io", [("int8", "int8"), ("uint8", "int8")])
def test_int8_input_or_output_is_refused(convert: Convert, io: tuple[str, str]) -> None:
    """MediaPipe takes float32 or uint8 images and scores only, so int8 is
    refused when the metadata is written, not when an app loads the model."""
    bare = convert(quantized=True, io=io)
    role = "input" if io[0] == "int8" else "output"
    with pytest.raises(ValueError, match=f"float32 or uint8 {role}"):
        _attach(bare)


@pytest.mark.external
def test_labels_must_match_the_output(float_model: bytes) -> None:
    with pytest.raises(ValueError, match="2 labels for an output of 3 classes"):
        image_classifier_metadata(
            float_model, labels=LABELS[:2], mean=MEAN, std=STD, name="", description=""
        )
    with pytest.raises(ValueError, match="single lines"):
        image_classifier_metadata(
            float_model,
            labels=["cat", "dog\nfish", "eel"],
            mean=MEAN,
            std=STD,
            name="",
            description="",
        )


@pytest.mark.external
def test_a_model_with_metadata_is_not_written_twice(float_model: bytes) -> None:
    with pytest.raises(ValueError, match="already has associated files"):
        _attach(_attach(float_model))


@pytest.mark.unit
def test_a_build_without_mediapipe_says_how_to_get_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from l2compile import deploy
    from l2compile import metadata as writer
    from l2compile.datasets import Dataset

    from .conftest import SPECS, plan_file

    def missing() -> None:
        raise writer.MetadataUnavailable(
            "TFLite metadata needs the mediapipe package: "
            'pip install "l2compile[mediapipe]"'
        )

    monkeypatch.setattr(writer, "_schemas", missing)
    file = tmp_path / "model.tflite"
    file.write_bytes(b"unchanged")
    said: list[str] = []
    plan = plan_file(SPECS / "phone_classifier.yaml")
    dataset = Dataset(
        np.zeros((1, 8, 8, 3), np.uint8),
        np.zeros(1),
        np.zeros((1, 8, 8, 3)),
        np.zeros(1),
        "x",
        classes=("a", "b"),
    )
    write = deploy.mediapipe_metadata(plan, dataset)
    assert write is not None
    deploy.attach_metadata(file, write, said.append)
    assert file.read_bytes() == b"unchanged"
    assert said == [
        "model.tflite: no TFLite metadata: TFLite metadata needs the mediapipe "
        'package: pip install "l2compile[mediapipe]"'
    ]
