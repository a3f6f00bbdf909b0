"""A folder of images, one subfolder per class (with train/ and test/, or
split by test_split): decoded once where a set fits in the generated module's
IN_MEMORY_BYTES, else read from disk a batch at a time while training."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from l2compile.errors import BuildError
from l2compile.layers.base import PlannedLayer as Layer
from l2compile.layers.base import py_str
from l2compile.sources.base import Report, Request, Source, register

if TYPE_CHECKING:
    from l2compile.datasets import Dataset


@register
@dataclass(frozen=True)
class ImageFolder(Source):
    name: ClassVar[str] = "image_folder"
    title: ClassVar[str] = "image folder"
    own_data: ClassVar[bool] = True
    classes_from_data: ClassVar[bool] = True
    streamed: ClassVar[bool] = True
    folder: ClassVar[bool] = True
    wanted: ClassVar[str] = "a folder of images"
    fields: ClassVar[frozenset[str]] = frozenset({"data", "test_split"})
    tensorflow: ClassVar[bool] = True
    example: ClassVar[str] = "photos/"

    @property
    def data_help(self) -> str:
        return py_str("folder of images, one subfolder per class")

    def sample_text(self, dtype: str, shape: Sequence[int] = ()) -> str:
        height, width, channels = shape
        kind = "grayscale" if channels == 1 else "RGB"
        return (
            f"a {height}x{width} {kind} image, its 8-bit pixel values "
            "scaled to [0, 1], row by row from the top left"
        )

    def input_json(
        self, shape: Sequence[int], columns: Sequence[Any]
    ) -> dict[str, Any]:
        """A camera frame's treatment."""
        height, width, channels = shape
        return {
            "image": {
                "height": height,
                "width": width,
                "channels": channels,
                "channel_order": "grayscale" if channels == 1 else "RGB",
                "resize": f"bilinear to {height}x{width}, stretched (the "
                "aspect ratio is not kept), as training resized them",
                "value_range": [0.0, 1.0],
                "scaling": "8-bit pixel values (0-255) divided by 255",
                "camera_frame": (
                    "convert the frame to "
                    + ("grayscale" if channels == 1 else "RGB (not BGR)")
                    + f", resize it to {width} wide by {height} high, divide "
                    "each 8-bit value by 255, and feed it as float32 "
                    "[1, height, width, channels]"
                ),
            }
        }

    def check_input(self, shape: Sequence[int], report: Report) -> None:
        if len(shape) != 3 or shape[-1] not in (1, 3):
            report(
                ("input", "shape"),
                "recipe 'image_folder' gives images as [height, width, channels], "
                "with 1 channel (grayscale) or 3 (RGB); got "
                f"{list(shape)}",
            )
        super().check_input(shape, report)

    def refuses_layer(self, layer: Layer) -> str | None:
        if not layer.kind.adapted:
            return None
        return (
            f"a {layer.type} layer learns its statistics from the data in "
            "memory, and an image folder is read from disk a batch at a "
            "time; its pixels are scaled to [0, 1] already (use "
            "batch_normalization to normalize further)"
        )

    def refuses_ids(self, layer: Layer) -> str | None:
        return (
            f"an {layer.type} looks up integer ids, which only the npz "
            f"recipe feeds; recipe {self.name!r} gives scaled pixels (a csv's "
            "text columns are one-hot encoded in the model)"
        )

    def read(self, request: Request) -> Dataset:
        from l2compile import datasets, images

        given = request.given
        assert given is not None and request.model_input is not None
        if not given.is_dir():
            origin = request.spec_path if request.data is None else None
            raise BuildError(datasets.missing(self, given, given, origin))
        return images.read_folder(
            self, given, seed=request.seed, model_input=request.model_input
        )
