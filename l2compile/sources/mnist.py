"""MNIST, as Keras' mnist.npz: 28x28 handwritten digits in ten classes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from l2compile.sources.base import KerasDataset, Request, register

if TYPE_CHECKING:
    from l2compile.datasets import Dataset
    from l2compile.recipes import ModelInput


@register
@dataclass(frozen=True)
class Mnist(KerasDataset):
    name: ClassVar[str] = "mnist"
    title: ClassVar[str] = "MNIST"
    filename: ClassVar[str] = "mnist.npz"
    keras_dataset: ClassVar[str | None] = "mnist"
    stored: ClassVar[str] = "mnist.npz (arrays {arrays})"

    image_shape: tuple[int, ...] | None = (28, 28)
    num_classes: int | None = 10
    labels: tuple[str, ...] = tuple(str(digit) for digit in range(10))
    # LeCun, Cortes and Burges' description of the set.
    pixels: str | None = (
        "grayscale, 0 is the black background and 255 full white ink: a white "
        "digit on black, scaled to fit a 20x20 box and centred in the 28x28 "
        "image by its centre of mass; invert digits drawn dark on light"
    )

    def read(self, request: Request) -> Dataset:
        from l2compile import datasets

        return datasets.find_file(self, request)

    def read_found(self, path: Path, model_input: ModelInput | None) -> Dataset:
        from l2compile import datasets

        return datasets.read_npz(self, path, model_input)
