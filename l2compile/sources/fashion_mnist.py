"""Fashion-MNIST, as Keras' folder of four gzip IDX files: 28x28 garments in
ten classes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from l2compile.layers.base import py_str
from l2compile.sources.base import KerasDataset, Request, register

if TYPE_CHECKING:
    from l2compile.datasets import Dataset
    from l2compile.recipes import ModelInput


@register
@dataclass(frozen=True)
class FashionMnist(KerasDataset):
    name: ClassVar[str] = "fashion_mnist"
    title: ClassVar[str] = "Fashion-MNIST"
    filename: ClassVar[str] = "fashion-mnist"
    keras_dataset: ClassVar[str | None] = "fashion_mnist"
    folder: ClassVar[bool] = True
    wanted: ClassVar[str] = "Keras' fashion-mnist/ folder"
    imports: ClassVar[tuple[str, ...]] = ("import gzip",)
    stored: ClassVar[str] = "fashion-mnist/ folder ({files})"

    image_shape: tuple[int, ...] | None = (28, 28)
    num_classes: int | None = 10
    # Keras' documented class names, in label order.
    labels: tuple[str, ...] = (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
    # Zalando's conversion: the product photo negated, its longer side
    # scaled to 28 pixels, centred on the canvas.
    pixels: str | None = (
        "grayscale, 0 is the black background and 255 the lightest: a light "
        "garment (the product photo negated) on black, its longer side scaled "
        "to 28 pixels and centred in the 28x28 image; invert photos of dark "
        "objects on light backgrounds"
    )

    @property
    def data_help(self) -> str:
        return py_str(f"folder of Keras' {self.filename} files")

    def holds(self, path: Path) -> bool:
        from l2compile.datasets import IDX_FILES

        return path.is_dir() and all((path / f).is_file() for f in IDX_FILES.values())

    def read(self, request: Request) -> Dataset:
        from l2compile import datasets

        return datasets.find_file(self, request)

    def read_found(self, path: Path, model_input: ModelInput | None) -> Dataset:
        from l2compile import datasets

        return datasets.read_idx(self, path, model_input)
