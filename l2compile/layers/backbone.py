"""Pretrained backbones: a keras.applications model without its top.

A backbone is one layer of the spec. The generated module builds it in a
function of its own (`backbone()`): the application with `include_top=False`,
its pretrained weights, an L2 penalty on every weight the l2 rules reach, and
the layers it trains. It reads images in [0, 1], as l2compile's image data
gives them: a `Rescaling` in front of the application scales them to the range
the application was trained on.

Why the penalty is set on the variables: an application's layers are built as
it is constructed, so setting their `kernel_regularizer` afterwards changes
nothing (keras-team/keras issues 8413, 7688, 9106). Keras 3 reads a weight's
penalty from its variable's `regularizer` when it sums the model's losses, so
the generated `regularize()` sets it there. Keras adds the penalties of
trainable weights only: a frozen weight carries no penalty, as it does not
change.

What each application holds (every weight's path, shape and layer) is in
`backbones.json`, measured off Keras by `python -m tests.update_backbones`, so
that `validate` and `inspect` know it without TensorFlow.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from l2compile.layers.base import (
    Place,
    Pretrained,
    Role,
    Shape,
    WeightedSpec,
    WeightPlan,
    py_float,
    register,
    shape_text,
)

#: Every weight of every backbone, read off Keras (tests/update_backbones.py).
TABLE = Path(__file__).with_name("backbones.json")
#: An application halves the image's size five times (stride 32), and refuses
#: images smaller than this on either side.
STRIDE = 32
MIN_SIZE = 32


@dataclass(frozen=True)
class Backbone:
    """What l2compile knows of one keras.applications model."""

    keras_class: str
    #: The pixel range the application reads, and the Rescaling(scale, offset)
    #: that takes l2compile's [0, 1] there.
    reads: str
    scale: float
    offset: float
    #: The preprocessing the application does itself, as model.json states it.
    own_preprocessing: str
    #: Where Keras inserts a layer when it builds the application with
    #: weights="imagenet" (EfficientNetB0's extra Rescaling), shifting the
    #: indices of the layers from there on by one.
    imagenet_inserts: int | None = None


_TO_255 = "reads pixels in [0, 255]"
BACKBONES: dict[str, Backbone] = {
    "mobilenet_v2": Backbone(
        "MobileNetV2",
        "[-1, 1]",
        2.0,
        -1.0,
        "none: it reads pixels in [-1, 1] (keras.applications.mobilenet_v2."
        "preprocess_input)",
    ),
    "mobilenet_v3_small": Backbone(
        "MobileNetV3Small",
        "[0, 255]",
        255.0,
        0.0,
        f"{_TO_255}; its first layer, Rescaling(1/127.5, offset=-1), scales "
        "them to [-1, 1]",
    ),
    "mobilenet_v3_large": Backbone(
        "MobileNetV3Large",
        "[0, 255]",
        255.0,
        0.0,
        f"{_TO_255}; its first layer, Rescaling(1/127.5, offset=-1), scales "
        "them to [-1, 1]",
    ),
    "efficientnet_b0": Backbone(
        "EfficientNetB0",
        "[0, 255]",
        255.0,
        0.0,
        f"{_TO_255}; its first layers scale them to [0, 1] and normalize each "
        "channel with ImageNet's mean and variance, which are weights of the "
        "model (its `normalization` layer)",
        imagenet_inserts=3,
    ),
    "efficientnet_v2_b0": Backbone(
        "EfficientNetV2B0",
        "[0, 255]",
        255.0,
        0.0,
        f"{_TO_255}; its first layers scale them to [0, 1] and normalize each "
        "channel with ImageNet's mean (0.485, 0.456, 0.406) and standard "
        "deviation (0.229, 0.224, 0.225)",
    ),
}
BackboneName = Literal[
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "efficientnet_v2_b0",
]

#: Keras' variable names, by the role the l2 rules read.
_ROLES: dict[str, Role] = {
    "kernel": "kernel",
    "depthwise_kernel": "kernel",
    "pointwise_kernel": "kernel",
    "bias": "bias",
    "gamma": "norm",
    "beta": "norm",
}


def role_of(path: str) -> Role:
    """A backbone weight's role, from its variable name (moving statistics and
    a normalization layer's mean and variance are not trained)."""
    return _ROLES.get(path.rsplit("/", 1)[-1], "statistic")


@functools.cache
def table() -> dict[str, Any]:
    """The backbone table (backbones.json)."""
    data: dict[str, Any] = json.loads(TABLE.read_text())
    return data


def weight_shapes(model: str) -> Counter[tuple[int, ...]]:
    """The shapes of a backbone's arrays, counted: scalars (a normalization
    layer's sample count) left out, as Keras' files differ on them."""
    return Counter(tuple(shape) for _, _, shape in table()[model]["weights"] if shape)


def check_weights_file(path: Path, model: str) -> str | None:
    """Why `path` is not a weights file of `model` without its top (None: it
    is one): it must hold an array of each shape the model's weights have
    (scalars aside).

    Both of Keras' formats are read: `.weights.h5` (`save_weights`) and the
    legacy `.h5` files of keras.applications' ImageNet weights.
    """
    import h5py

    shapes: Counter[tuple[int, ...]] = Counter()

    def visit(_: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset) and item.ndim > 0:
            shapes[tuple(int(n) for n in item.shape)] += 1

    if not path.name.endswith(WEIGHTS_SUFFIXES):
        return (
            f"{path} is not named as a Keras weights file: Keras loads "
            f"{' or '.join(WEIGHTS_SUFFIXES)} files (save_weights writes .weights.h5)"
        )
    stddev: list[Any] = []
    bad: tuple[str, int, int] | None = None
    try:
        with h5py.File(path, "r") as file:
            file.visititems(visit)
            if BACKBONES[model].imagenet_inserts is not None:
                stddev = _imagenet_stddev(file)
            if shapes == weight_shapes(model):  # so each array is of a known size
                bad = _not_finite(file)
    except OSError as error:
        return f"{path} is not a Keras weights file (HDF5): {error}"
    if bad is not None:
        name, count, size = bad
        return (
            f"{path}: {count:,} of the {size:,} values of {name} are NaN or "
            "infinite: the file was saved from a model whose training diverged"
        )
    if stddev:
        return (
            f"{path} holds {model}'s ImageNet weights, which Keras builds with "
            "one more layer (a Rescaling after its input normalization) that a "
            "weights file cannot restore: write weights: imagenet (Keras' file, "
            "from ~/.keras/models/) instead"
        )
    wanted = weight_shapes(model)
    if shapes == wanted:
        return None
    numbers = sum(math.prod(s) * n for s, n in shapes.items())
    expected = sum(math.prod(s) * n for s, n in wanted.items())
    return (
        f"{path} holds {shapes.total():,} arrays ({numbers:,} numbers), but "
        f"{model} without its top has {wanted.total():,} weights ({expected:,} "
        "numbers): it was saved from another model. Save one from "
        f"keras.applications.{BACKBONES[model].keras_class}(include_top=False)"
        " with save_weights()"
    )


#: The names Keras loads weights from (saving_api.load_weights).
WEIGHTS_SUFFIXES = (".weights.h5", ".h5", ".hdf5")
#: ImageNet's per-channel standard deviation, which Keras stores as
#: EfficientNetB0's normalization variance (tensorflow issue 49930).
_IMAGENET_STDDEV = (0.229, 0.224, 0.225)


def _imagenet_stddev(file: Any) -> list[Any]:
    """The arrays of `file` that hold ImageNet's standard deviation."""
    import h5py
    import numpy as np

    found: list[Any] = []

    def visit(_: str, item: Any) -> None:
        if (
            isinstance(item, h5py.Dataset)
            and item.shape == (3,)
            and np.allclose(item[()], _IMAGENET_STDDEV, atol=1e-4)
        ):
            found.append(item.name)

    file.visititems(visit)
    return found


def _not_finite(file: Any) -> tuple[str, int, int] | None:
    """The first array of `file` with values that are not finite: its name,
    how many, and its size (arrays are read one at a time)."""
    import h5py
    import numpy as np

    def visit(name: str, item: Any) -> tuple[str, int, int] | None:
        if not isinstance(item, h5py.Dataset) or item.dtype.kind not in "fc":
            return None
        values = item[()]
        count = int(values.size - np.count_nonzero(np.isfinite(values)))
        return (name, count, int(item.size)) if count else None

    found: tuple[str, int, int] | None = file.visititems(visit)
    return found


def imagenet_missing(keras_class: str, error: Exception) -> str:
    """What to say when Keras could not get an application's ImageNet weights
    (offline, its download fails): which file to put where."""
    found = re.search(r"https?://\S+?\.h5", str(error))
    if found is None:
        return f"{keras_class} could not be built with weights: imagenet: {error}"
    url = found.group(0)
    return (
        f"{keras_class}'s ImageNet weights are not in Keras' cache and could not "
        f"be downloaded ({type(error).__name__}). Put the file {url} at "
        f"~/.keras/models/{url.rsplit('/', 1)[1]}, or name a weights file "
        "(weights: path/to/file.weights.h5)"
    )


@register
class BackboneLayer(WeightedSpec):
    """A pretrained keras.applications model without its top: its output is
    the last feature map, (ceil(height/32), ceil(width/32), channels)."""

    keras_class: ClassVar[str] = "Sequential"
    input_rank: ClassVar[int | None] = 3
    convolves: ClassVar[bool] = True
    keras_model: ClassVar[bool] = True
    type: Literal["backbone"]
    model: BackboneName = Field(description="The keras.applications model.")
    # `weights` in a spec; the attribute would hide LayerSpec.weights().
    pretrained_weights: str = Field(
        default="imagenet",
        alias="weights",
        min_length=1,
        max_length=4096,
        description="imagenet (Keras' cache, else its download), none (random), "
        "or a weights file saved from the model without its top, relative to "
        "the spec.",
    )
    trainable: bool = Field(
        default=False,
        description="Train the whole backbone (false: frozen, its features as "
        "they are).",
    )
    fine_tune_from: int | None = Field(
        default=None,
        ge=0,
        le=10_000,
        description="Train the backbone's layers from this index on (Keras' "
        "model.layers), keep the ones before it frozen.",
    )

    @classmethod
    def from_keras(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """A nested model's config as a backbone's fields (read_application),
        or ValueError saying why it is no backbone l2compile knows."""
        fields = read_application(config)
        if isinstance(fields, str):
            raise ValueError(fields)
        return fields

    @property
    def facts(self) -> Backbone:
        return BACKBONES[self.model]

    @property
    def weights_file(self) -> str | None:
        """The weights file as the spec writes it (None: imagenet or none)."""
        weights = self.pretrained_weights
        return None if weights in ("imagenet", "none") else weights

    @property
    def trained_from(self) -> int | None:
        """The first layer it trains (None: it is frozen)."""
        if self.fine_tune_from is not None:
            return self.fine_tune_from
        return 0 if self.trainable else None

    def trains_batch_norm(self) -> bool:
        # A pretrained backbone's batch normalization stays frozen (its
        # template); one from scratch trains where the backbone does.
        return self.trained_from is not None and self.pretrained_weights == "none"

    def pretrained(self) -> Pretrained:
        facts = self.facts
        offset = f", offset={py_float(facts.offset)}" if facts.offset else ""
        model = self.model
        return Pretrained(
            model=model,
            keras_class=facts.keras_class,
            weights="file" if self.weights_file else self.pretrained_weights,
            weights_file=self.weights_file,
            check_file=lambda path: check_weights_file(path, model),
            rescaling=f"layers.Rescaling({py_float(facts.scale)}{offset})",
            reads=facts.reads,
            own_preprocessing=facts.own_preprocessing,
            trained_from=self.trained_from,
        )

    def output_shape(self, shape: Shape, place: Place) -> Shape | None:
        model = self.model
        if shape[-1] != 3:
            place.error(
                "model",
                f"{model} reads RGB images (height, width, 3), but its input is "
                f"{shape_text(shape)}",
            )
            return None
        if min(shape[:2]) < MIN_SIZE:
            place.error(
                "model",
                f"{model} needs images of at least {MIN_SIZE}x{MIN_SIZE}, but "
                f"its input is {shape_text(shape)}",
            )
            return None
        count = table()[model]["layers"] + (1 if self._inserted is not None else 0)
        if (
            self.fine_tune_from is not None
            and "trainable" in self.model_fields_set
            and not self.trainable
        ):
            place.error(
                "fine_tune_from",
                "it trains the layers from that index on, but trainable: false "
                "freezes the whole backbone; drop one of them",
            )
            return None
        if self.fine_tune_from is not None and self.trainable:
            place.error(
                "fine_tune_from",
                "trainable: true trains every layer already; give one of them",
            )
            return None
        if self.fine_tune_from is not None and self.fine_tune_from >= count:
            place.error(
                "fine_tune_from",
                f"{model} has {count} layers (0 to {count - 1}); "
                f"{self.fine_tune_from} is out of range",
            )
            return None
        height, width = (-(-n // STRIDE) for n in shape[:2])
        return (height, width, int(table()[model]["channels"]))

    @property
    def _inserted(self) -> int | None:
        """Where Keras inserts a layer for these weights (None: nowhere)."""
        if self.pretrained_weights != "imagenet":
            return None
        return self.facts.imagenet_inserts

    def _index(self, index: int) -> int:
        """A table layer index as Keras numbers it for these weights."""
        inserted = self._inserted
        return index + 1 if inserted is not None and index >= inserted else index

    def weights(self, shape: Shape) -> list[WeightPlan]:
        start = self.trained_from
        # Pretrained batch normalization stays frozen where the rest trains
        # (random weights: it learns its statistics, as any network does).
        pretrained = self.pretrained_weights != "none"
        frozen_roles = ("norm", "statistic") if pretrained else ("statistic",)
        return [
            WeightPlan(
                path,
                tuple(size),
                role_of(path),
                absolute=True,
                trainable=start is not None
                and self._index(index) >= start
                and role_of(path) not in frozen_roles,
            )
            for index, path, size in table()[self.model]["weights"]
        ]


def _entries(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = config.get("layers")
    return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []


def _known(layers: list[dict[str, Any]]) -> str | None:
    """The backbone whose layers these are, by name and place (None: none)."""
    names = [str(entry.get("name")) for entry in layers]
    for model in BACKBONES:
        known = table()[model]
        if len(names) == known["layers"] and all(
            names[index] == path.rsplit("/", 1)[0]
            for index, path, _ in known["weights"]
        ):
            return model
    return None


def _trained(
    app: Mapping[str, Any], layers: list[dict[str, Any]]
) -> dict[str, Any] | str:
    """`trainable` or `fine_tune_from` as the application's layers say."""
    flags = [
        (i, bool(config["trainable"]))
        for i, entry in enumerate(layers)
        if "trainable" in (config := entry.get("config") or {})
    ]
    if app.get("trainable") is False or not any(on for _, on in flags):
        return {}
    first = next(i for i, on in flags if on)
    if not all(on == (i >= first) for i, on in flags):
        return (
            "its trainable layers are not one run to the end: a backbone trains "
            "from one layer on (fine_tune_from)"
        )
    return {"trainable": True} if first <= flags[0][0] else {"fine_tune_from": first}


def bare(config: Mapping[str, Any]) -> bool:
    """Whether a nested model's config is an application alone, not behind
    the Rescaling a backbone puts before it (so it reads its own range)."""
    entries = [e for e in _entries(config) if e.get("class_name") != "InputLayer"]
    return not (len(entries) == 2 and entries[0].get("class_name") == "Rescaling")


def scales_raw_pixels(model: str, config: Mapping[str, Any]) -> bool:
    """Whether a Rescaling's config takes [0, 255] pixels to the range the
    backbone reads (the Keras transfer-learning guide's preprocessing)."""
    facts = BACKBONES[model]
    scale, offset = config.get("scale"), config.get("offset") or 0.0
    return (
        isinstance(scale, int | float)
        and isinstance(offset, int | float)
        and math.isclose(scale * 255, facts.scale, rel_tol=1e-5)
        and math.isclose(offset, facts.offset, rel_tol=1e-5, abs_tol=1e-7)
    )


def read_application(config: Mapping[str, Any]) -> dict[str, Any] | str:
    """A nested model's config (a keras.applications model without its top,
    bare or behind l2compile's Rescaling) as a backbone layer's fields, or why
    it is none that l2compile knows. Its layers are known by their names and
    places (backbones.json), so nothing of the file is built or run."""
    entries = [e for e in _entries(config) if e.get("class_name") != "InputLayer"]
    app, rescaling = config, None
    if len(entries) == 2 and entries[0].get("class_name") == "Rescaling":
        rescaling, app = entries[0].get("config") or {}, entries[1].get("config") or {}
    # Its layers as Keras numbers them (model.layers): the operations its
    # config also lists (keras.ops calls, as its hard-swish) are none.
    layers = [
        e
        for e in _entries(app)
        if not str(e.get("module", "")).startswith("keras.src.ops")
    ]
    model = _known(layers)
    if model is None:
        return (
            "a nested model that is none of the keras.applications models "
            f"l2compile knows without their top ({', '.join(BACKBONES)})"
        )
    facts = BACKBONES[model]
    if rescaling is not None and (
        rescaling.get("scale") != facts.scale
        or (rescaling.get("offset") or 0.0) != facts.offset
    ):
        return (
            f"the Rescaling before {facts.keras_class} is not the one a backbone "
            f"puts there (scale {py_float(facts.scale)}, offset "
            f"{py_float(facts.offset)})"
        )
    trained = _trained(app, layers)
    if isinstance(trained, str):
        return trained
    return {"model": model, "weights": "none", **trained}
