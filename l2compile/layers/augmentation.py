"""Image augmentation: random flips, rotations, zooms, translations, contrast
and brightness, drawn anew for each batch while training.

They are declared among the spec's layers, first, but they are not layers of
the model: the generated module builds them apart (`build_augmentation`), and
its training batches go through them in the input pipeline, as one TensorFlow
graph traced once (`Augmenter`). So the compiled
training step holds none of them (Keras compiles no step with XLA where
random_rotation, random_zoom or random_translation is in the model: on JAX
that made a small CNN about 15 times slower), and no saved or exported file
has them: at inference the model sees the images as they are. Each draws its
own random numbers from the seed the planner gives it (`LayerSpec.augments`):
the epoch's seed plus its index in the spec (Augmenter.reseed), so a build is
reproducible, training resumed at an epoch augments its batches as training
that never stopped would have, and no two layers draw the same numbers.

Keras checks the factors loosely (RandomRotation takes `[-3, 0.5]`, a single
negative factor means its absolute value, and a pair in the wrong order is
silently sorted); the spec takes a factor as a number `f` (the range
`[-f, f]`) or a pair `[low, high]`, each within the limits that make sense.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema

from l2compile.layers.base import LayerSpec, Place, Shape, py_float, py_str, register

Factor = float | tuple[float, float]
FillMode = Literal["reflect", "wrap", "constant", "nearest"]
Interpolation = Literal["bilinear", "nearest"]

#: Keras' value_range for brightness and contrast is (0, 255); l2compile
#: scales images to [0, 1] before the model, so the spec's default is that.
KERAS_VALUE_RANGE = (0.0, 255.0)


def _number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    return repr(value)


@dataclass(frozen=True)
class _Bounds:
    """Where a factor may lie; an open end refuses the bound itself."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = self.low < value if self.low_open else self.low <= value
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        low, high = f"{self.low:g}", f"{self.high:g}"
        if self.low_open:
            return f"above {low} and at most {high}"
        if self.high_open:
            return f"at least {low} and below {high}"
        return f"from {low} to {high}"

    def schema(self) -> dict[str, Any]:
        return {
            "type": "number",
            ("exclusiveMinimum" if self.low_open else "minimum"): self.low,
            ("exclusiveMaximum" if self.high_open else "maximum"): self.high,
        }


def _factor_check(single: _Bounds, each: _Bounds) -> Callable[[Any], Any]:
    """A factor's validator: a number within `single`, or `[low, high]`,
    each within `each`, with low <= high. One error, not one per member of
    the union."""

    def check(value: Any) -> Any:
        if _number(value):
            if value not in single:
                raise ValueError(
                    f"must be {single} (a number f is the range [-f, f]; "
                    f"write [low, high] for another range), got {_text(value)}"
                )
            return float(value)
        if isinstance(value, list) and len(value) == 2 and all(map(_number, value)):
            if not all(v in each for v in value):
                raise ValueError(f"[low, high] must each be {each}, got {_text(value)}")
            if value[0] > value[1]:
                raise ValueError(
                    f"[low, high] must have low <= high, got {_text(value)}"
                )
            return (float(value[0]), float(value[1]))
        raise ValueError(
            f"must be a number {single}, or a list [low, high] of numbers "
            f"{each}, got {_text(value)}"
        )

    return check


def _factor_schema(single: _Bounds, each: _Bounds) -> dict[str, Any]:
    pair = {"type": "array", "items": each.schema(), "minItems": 2, "maxItems": 2}
    return {"anyOf": [single.schema(), pair]}


#: A signed range in [-1, 1]: rotations (a fraction of a full turn), shifts
#: (a fraction of the height or width) and brightness (of the value range).
_SIGNED = (_Bounds(0, 1), _Bounds(-1, 1))
SignedFactor = Annotated[
    Factor,
    BeforeValidator(_factor_check(*_SIGNED)),
    WithJsonSchema(_factor_schema(*_SIGNED)),
]
#: Zoom: the scale is 1 plus the factor, so -1 (nothing left) is refused.
_ZOOM = (_Bounds(0, 1, high_open=True), _Bounds(-1, 1, low_open=True))
ZoomFactor = Annotated[
    Factor,
    BeforeValidator(_factor_check(*_ZOOM)),
    WithJsonSchema(_factor_schema(*_ZOOM)),
]
#: Contrast: the factor is drawn from [1 - low, 1 + high], so each is 0 to 1.
_CONTRAST = (_Bounds(0, 1), _Bounds(0, 1))
ContrastFactor = Annotated[
    Factor,
    BeforeValidator(_factor_check(*_CONTRAST)),
    WithJsonSchema(_factor_schema(*_CONTRAST)),
]


def _value_range(value: Any) -> Any:
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(map(_number, value))
        and value[0] < value[1]
    ):
        return (float(value[0]), float(value[1]))
    raise ValueError(
        "must be [low, high], the range of the pixel values, with low < high, "
        f"got {_text(value)}"
    )


ValueRange = Annotated[
    tuple[float, float],
    BeforeValidator(_value_range),
    WithJsonSchema(
        {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
    ),
]


def factor_text(factor: Factor) -> str:
    """A factor as Python source: `0.1`, or `(-0.1, 0.2)`."""
    if isinstance(factor, tuple):
        return f"({py_float(factor[0])}, {py_float(factor[1])})"
    return py_float(factor)


class _Augmentation(LayerSpec):
    """A random image transformation: the identity at inference."""

    input_rank: ClassVar[int | None] = 3
    passthrough: ClassVar[bool] = True
    augments: ClassVar[bool] = True


class _Resampling(_Augmentation):
    """A geometric transformation: it resamples the image, and fills what
    comes from outside it."""

    fill_mode: FillMode = Field(
        default="reflect",
        description="How points outside the image are filled: reflect (d c b a "
        "| a b c d), wrap (a b c d | a b c d), constant (fill_value), nearest.",
    )
    interpolation: Interpolation = "bilinear"
    fill_value: Annotated[float, Field(allow_inf_nan=False)] = Field(
        default=0.0, description="The value fill_mode constant fills with."
    )

    def _fill(self) -> list[str]:
        args = []
        if self.fill_mode != "reflect":
            args.append(f"fill_mode={py_str(self.fill_mode)}")
        if self.interpolation != "bilinear":
            args.append(f"interpolation={py_str(self.interpolation)}")
        if self.fill_value != 0:
            args.append(f"fill_value={py_float(self.fill_value)}")
        return args

    def output_shape(self, shape: Shape, place: Place) -> Shape | None:
        if "fill_value" in self.model_fields_set and self.fill_mode != "constant":
            # Keras would ignore it: say so rather than train something else.
            place.error(
                "fill_value",
                "fill_value is used only with fill_mode: constant, but fill_mode "
                f"is {self.fill_mode}",
            )
            return None
        return shape


@register
class RandomFlipLayer(_Augmentation):
    """Flips images left-right and/or top-bottom at random."""

    keras_class: ClassVar[str] = "RandomFlip"
    type: Literal["random_flip"]
    # Keras takes any string here and then flips nothing for an unknown one.
    mode: Literal["horizontal", "vertical", "horizontal_and_vertical"] = Field(
        default="horizontal_and_vertical",
        description="horizontal: left-right; vertical: top-bottom.",
    )

    def arguments(self) -> list[str]:
        return [py_str(self.mode)] if self.mode != "horizontal_and_vertical" else []


@register
class RandomRotationLayer(_Resampling):
    """Rotates images by a random angle."""

    keras_class: ClassVar[str] = "RandomRotation"
    type: Literal["random_rotation"]
    factor: SignedFactor = Field(
        description="The angle's range as a fraction of a full turn: f is "
        "[-f, f] (0.1: up to 36 degrees either way); positive is "
        "counter-clockwise."
    )

    def arguments(self) -> list[str]:
        return [factor_text(self.factor), *self._fill()]


@register
class RandomZoomLayer(_Resampling):
    """Zooms images in or out by a random amount."""

    keras_class: ClassVar[str] = "RandomZoom"
    type: Literal["random_zoom"]
    height_factor: ZoomFactor = Field(
        description="The vertical zoom's range as a fraction of the height: "
        "f is [-f, f]; positive zooms out, negative in."
    )
    width_factor: ZoomFactor | None = Field(
        default=None,
        description="The horizontal zoom's range; defaults to the vertical "
        "zoom itself, which keeps the aspect ratio.",
    )

    def arguments(self) -> list[str]:
        width = self.width_factor
        return [
            f"height_factor={factor_text(self.height_factor)}",
            *([f"width_factor={factor_text(width)}"] if width is not None else []),
            *self._fill(),
        ]


@register
class RandomTranslationLayer(_Resampling):
    """Shifts images by a random offset."""

    keras_class: ClassVar[str] = "RandomTranslation"
    type: Literal["random_translation"]
    height_factor: SignedFactor = Field(
        description="The vertical shift's range as a fraction of the height: "
        "f is [-f, f]; positive shifts down."
    )
    width_factor: SignedFactor = Field(
        description="The horizontal shift's range as a fraction of the width: "
        "f is [-f, f]; positive shifts right."
    )

    def arguments(self) -> list[str]:
        return [
            f"height_factor={factor_text(self.height_factor)}",
            f"width_factor={factor_text(self.width_factor)}",
            *self._fill(),
        ]


class _Color(_Augmentation):
    """A change of the pixel values, clipped to their range."""

    value_range: ValueRange = Field(
        default=(0.0, 1.0),
        description="The range of the pixel values the layer sees, which its "
        "output is clipped to: [0, 1] for the recipes' images, which the "
        "module scales (Keras' own default is [0, 255]).",
    )

    def _range(self) -> list[str]:
        if self.value_range == KERAS_VALUE_RANGE:
            return []
        low, high = self.value_range
        return [f"value_range=({py_float(low)}, {py_float(high)})"]


@register
class RandomContrastLayer(_Color):
    """Scales each image's distance from its mean by a random factor."""

    keras_class: ClassVar[str] = "RandomContrast"
    type: Literal["random_contrast"]
    factor: ContrastFactor = Field(
        description="The contrast factor is drawn from [1 - f, 1 + f] for a "
        "number f, and from [1 - low, 1 + high] for [low, high]."
    )

    def arguments(self) -> list[str]:
        # Keras (3.15) draws a single number f from [1, 1 + f], not the
        # [1 - f, 1 + f] it documents; the pair (f, f) is the documented range.
        factor = self.factor
        pair = factor if isinstance(factor, tuple) else (factor, factor)
        return [factor_text(pair), *self._range()]


@register
class RandomBrightnessLayer(_Color):
    """Adds a random amount to every pixel of an image."""

    keras_class: ClassVar[str] = "RandomBrightness"
    type: Literal["random_brightness"]
    factor: SignedFactor = Field(
        description="The amount's range as a fraction of the value range: f "
        "is [-f, f]; -1 makes the image black, 1 white."
    )

    def arguments(self) -> list[str]:
        return [factor_text(self.factor), *self._range()]
