"""Backbones: what l2compile knows of keras.applications without TensorFlow
(l2compile/layers/backbones.json) is what Keras builds, and weights files are
checked against the model they are for."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from l2compile.layers.backbone import (
    BACKBONES,
    MIN_SIZE,
    check_weights_file,
    imagenet_missing,
    table,
)

from .conftest import plan_text
from .update_backbones import build_application, measure


def _spec(model: str, shape: tuple[int, ...], extra: str = "") -> str:
    return (
        "name: bb\n"
        f"input: {{shape: {list(shape)}}}\n"
        "l2: 0.001\n"
        "layers:\n"
        f"  - {{type: backbone, model: {model}, weights: none{extra}}}\n"
        "  - {type: global_average_pooling2d}\n"
        "  - {type: dense, units: 2, activation: softmax}\n"
        "train: {recipe: image_folder, data: photos, test_split: 0.2, "
        "epochs: 1, batch_size: 8}\n"
    )


@pytest.mark.build
@pytest.mark.parametrize("model", sorted(BACKBONES))
def test_the_table_is_what_keras_builds(model: str, tmp_path: Path) -> None:
    """Every weight's path, shape and layer, the layer count, and the output
    shape at an odd, uneven size near the minimum (a kernel's shape does not
    depend on the image's): `python -m tests.update_backbones` after a Keras
    upgrade changes them."""
    shape = (MIN_SIZE + 1, 2 * MIN_SIZE + 5, 3)
    built = build_application(model, shape)
    assert measure(model, built) == table()[model]
    plan = plan_text(_spec(model, shape), tmp_path)
    assert (
        plan.layers[0].output_shape
        == tuple(built.output_shape[1:])
        == (2, 3, table()[model]["channels"])
    )
    assert plan.layers[0].params == built.count_params()
    # And a file saved from it passes the weights file check.
    built.save_weights(tmp_path / "own.weights.h5")
    assert check_weights_file(tmp_path / "own.weights.h5", model) is None


@pytest.mark.build
def test_images_smaller_than_the_minimum_are_refused_as_keras_does() -> None:
    with pytest.raises(ValueError, match="at least 32x32"):
        build_application("mobilenet_v3_small", (MIN_SIZE - 1, 64, 3))


@pytest.mark.build
def test_a_weights_file_of_the_model_passes_and_of_another_fails(
    tmp_path: Path,
) -> None:
    import keras

    own = tmp_path / "small.weights.h5"
    build_application("mobilenet_v3_small", (32, 32, 3)).save_weights(own)
    assert check_weights_file(own, "mobilenet_v3_small") is None
    problem = check_weights_file(own, "mobilenet_v3_large")
    assert problem is not None
    assert "holds 206 arrays (939,120 numbers)" in problem
    assert "mobilenet_v3_large without its top has 262 weights" in problem
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    other = tmp_path / "dense.weights.h5"
    dense.save_weights(other)
    assert "saved from another model" in str(check_weights_file(other, "mobilenet_v2"))
    text = tmp_path / "notes.weights.h5"
    text.write_text("not hdf5")
    assert "is not a Keras weights file" in str(
        check_weights_file(text, "mobilenet_v2")
    )


@pytest.mark.build
def test_a_weights_file_with_nan_values_is_refused_by_validate(
    tmp_path: Path,
) -> None:
    # Before: the right shapes passed validate, a full epoch trained on NaN,
    # and the build then blamed the learning rate.
    import h5py

    own = tmp_path / "small.weights.h5"
    build_application("mobilenet_v3_small", (32, 32, 3)).save_weights(own)
    with h5py.File(own, "r+") as file:
        names: list[str] = []
        file.visititems(
            lambda n, i: names.append(n) if isinstance(i, h5py.Dataset) else None
        )
        target = next(n for n in names if file[n].ndim == 4)
        values = file[target][()]
        values.flat[:3] = [np.nan, np.inf, -np.inf]
        file[target][...] = values
    assert check_weights_file(own, "mobilenet_v3_small") == (
        f"{own}: 3 of the {values.size:,} values of {target} are NaN or "
        "infinite: the file was saved from a model whose training diverged"
    )


@pytest.mark.unit
def test_missing_imagenet_weights_say_which_file_to_put_where() -> None:
    url = (
        "https://storage.googleapis.com/tensorflow/keras-applications/"
        "mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"
    )
    error = Exception(f"URL fetch failure on {url}: None -- [Errno -3] Try again")
    message = imagenet_missing("MobileNetV3Small", error)
    assert f"Put the file {url} at ~/.keras/models/" in message
    assert message.endswith(
        "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5, or name a "
        "weights file (weights: path/to/file.weights.h5)"
    )


@pytest.mark.unit
def test_frozen_weights_carry_no_coefficient_and_fine_tuning_adds_them(
    tmp_path: Path,
) -> None:
    frozen = plan_text(_spec("mobilenet_v3_small", (32, 32, 3)), tmp_path)
    tuned = plan_text(
        _spec("mobilenet_v3_small", (32, 32, 3), ", fine_tune_from: 100"), tmp_path
    )
    unreached = plan_text(
        _spec("mobilenet_v3_small", (32, 32, 3), ", trainable: true, l2: 0"),
        tmp_path,
    )
    head = 576 * 2
    assert frozen.regularized_params == head
    weights = table()["mobilenet_v3_small"]["weights"]
    tuned_kernels = sum(
        math.prod(shape)
        for index, path, shape in weights
        if index >= 100 and path.endswith("/kernel")
    )
    assert tuned.regularized_params == head + tuned_kernels > head
    assert unreached.regularized_params == head
    assert unreached.backbone is not None and unreached.backbone.l2 is None


@pytest.mark.build
def test_weights_files_keras_cannot_load_or_restore_are_refused(tmp_path: Path) -> None:
    import h5py

    named = tmp_path / "weights.bin"
    named.write_bytes(b"")
    assert "is not named as a Keras weights file" in str(
        check_weights_file(named, "mobilenet_v2")
    )
    # EfficientNetB0's ImageNet weights hold ImageNet's standard deviation as
    # the normalization's variance; Keras builds them with one more layer.
    imagenet = tmp_path / "b0.weights.h5"
    with h5py.File(imagenet, "w") as file:
        file["layers/normalization/vars/1"] = [0.229, 0.224, 0.225]
    problem = check_weights_file(imagenet, "efficientnet_b0")
    assert problem is not None
    assert "holds efficientnet_b0's ImageNet weights" in problem
    assert "write weights: imagenet" in problem


@pytest.mark.unit
def test_efficientnet_b0_counts_the_layer_keras_adds_for_imagenet_weights(
    tmp_path: Path,
) -> None:
    """Keras builds EfficientNetB0 with weights="imagenet" with a Rescaling
    after its normalization (layer 3): fine_tune_from counts it."""
    count = table()["efficientnet_b0"]["layers"]
    last = f", fine_tune_from: {count}"
    imagenet = _spec("efficientnet_b0", (64, 64, 3), last).replace(
        "weights: none", "weights: imagenet"
    )
    assert plan_text(imagenet, tmp_path).layers[0].params > 0
    with pytest.raises(AssertionError, match="out of range"):
        plan_text(_spec("efficientnet_b0", (64, 64, 3), last), tmp_path)
    from_stem = _spec("efficientnet_b0", (64, 64, 3), ", fine_tune_from: 5")
    stem = "stem_conv/kernel"  # table layer 4, Keras' layer 5 with ImageNet's
    for weights, first in (("imagenet", stem), ("none", "stem_bn/gamma")):
        plan = plan_text(from_stem.replace("none", weights), tmp_path)
        trained = [w.name for w in plan.layers[0].weights if w.trainable]
        assert trained[0] == first, weights
