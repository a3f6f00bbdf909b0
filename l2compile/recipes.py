"""The data node of the plan: a recipe, where a spec's data comes from.

A `Recipe` holds what the plan needs to know of the data, and decides what
depends on it alone:

- where the data is found: Keras' dataset (`keras_dataset`), its file or folder
  (`filename`) and that file's layout, or the user's own .npz;
- what it holds: the samples' shape, the classes and their names, what the
  pixel values mean;
- how the generated module reads and preprocesses it (`loader`, which of the
  template's loaders it gets, and the strings that loader prints);
- what a model fed by it must accept (`check_input`, `check_layers`).

This is plan-stage code: nothing here reads a file or imports numpy.
`l2compile.datasets` finds, reads and checks the data a recipe names.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from l2compile.errors import FieldPath
from l2compile.layers.base import INPUT, py_str

if TYPE_CHECKING:
    from l2compile.plan import LayerPlan
    from l2compile.tasks import Task

__all__ = ["RECIPES", "ModelInput", "Recipe", "Report", "SpecPath", "recipe_for"]

#: How a plan node reports a problem: the field it is about, and the message.
Report = Callable[[FieldPath, str], None]


@dataclass(frozen=True)
class Recipe:
    """A data recipe: a dataset in Keras' file layout, or a user's .npz.

    `layout` is "npz" (one .npz file, named `filename` for built-in recipes)
    or "idx" (a folder `filename` of the four gzip IDX files). `image_shape`
    is None where the data, not the recipe, decides it (the npz recipe).
    `pixels` says what the pixel values mean, for apps that feed the model
    their own images (None where the recipe does not know).
    """

    name: str
    title: str
    layout: str
    filename: str
    keras_dataset: str | None
    image_shape: tuple[int, ...] | None
    num_classes: int | None  #: None: the npz recipe without train.num_classes
    labels: tuple[str, ...] = ()
    pixels: str | None = None
    #: Where the user's data is, as the spec writes it (train.data), and a
    #: separate test file's (csv: data: {train: ..., test: ...}).
    data: str | None = None
    test_data: str | None = None
    #: csv: the label columns, and the feature columns (None: all the others).
    label: tuple[str, ...] = ()
    features: tuple[str, ...] | None = None
    #: csv and image_folder: the share of the data tested on (None: its own
    #: test file or folder).
    test_split: float | None = None

    @property
    def encodes(self) -> bool:
        """Whether the model encodes its input itself (a csv's text columns
        become one-hot vectors in the model), before the spec's layers."""
        return self.name == "csv"

    def constants(self) -> list[tuple[str, str, str]]:
        """The generated module's data constants: (name, value, comment)."""
        found = []
        if self.data is not None:
            what = "folder" if self.streamed else "file"
            found.append(("DATA", py_str(self.data), f"the data {what}"))
        if self.test_data is not None:
            found.append(("TEST_DATA", py_str(self.test_data), "the test file"))
        if self.label:
            names = ", ".join(py_str(name) for name in self.label)
            found.append(("LABELS", f"({names},)", "the label columns"))
        if self.features is not None:
            names = "".join(f"    {py_str(name)},\n" for name in self.features)
            found.append(("FEATURES", "(\n" + names + ")", "the feature columns"))
        elif self.name == "csv":
            found.append(("FEATURES", "None", "every column but the labels"))
        if self.test_split is not None:
            found.append(
                (
                    "TEST_SPLIT",
                    repr(self.test_split),
                    "share of the data tested on, seeded"
                    + (", per class" if self.streamed else ""),
                )
            )
        return found

    @property
    def input_size(self) -> int:
        return math.prod(self.image_shape or ())

    @property
    def own_data(self) -> bool:
        """Whether it reads the user's own files (train.data or --data)."""
        return self.name in ("npz", "csv", "image_folder")

    @property
    def any_task(self) -> bool:
        """Whether its labels can be any task's (else: class labels)."""
        return self.name in ("npz", "csv")

    @property
    def classes_from_data(self) -> bool:
        """Whether the data, not the spec, says how many classes there are: a
        classifier's last layer states it, and the build checks the data."""
        return self.name in ("csv", "image_folder")

    @property
    def streamed(self) -> bool:
        """Whether its samples are read from disk a batch at a time while
        training (x is then the files' paths), not held in memory."""
        return self.name == "image_folder"

    # --- how the generated module reads it ----------------------------------

    @property
    def loader(self) -> str:
        """Which loader the generated module gets: `keras_npz` (Keras' .npz),
        `idx` (Keras' folder of IDX files) or `user_npz` (the user's .npz)."""
        if self.name == "npz":
            return "user_npz"
        if self.name in ("csv", "image_folder"):
            return self.name
        return "idx" if self.layout == "idx" else "keras_npz"

    @property
    def data_example(self) -> str:
        """The `--data` argument the module's usage line shows."""
        if self.data is not None:
            return self.data
        return self.filename or {"csv": "data.csv", "image_folder": "photos/"}.get(
            self.name, "data.npz"
        )

    @property
    def data_help(self) -> str:
        """The help of the module's `--data` option, as a Python literal."""
        if self.loader == "csv":
            return py_str("CSV file with a header row")
        if self.loader == "image_folder":
            return py_str("folder of images, one subfolder per class")
        if self.loader == "user_npz":
            return py_str(".npz with x_train, y_train, x_test, y_test")
        if self.loader == "idx":
            return py_str(f"folder of Keras' {self.filename} files")
        return py_str(f"{self.filename} in Keras' layout")

    # --- what it tells others -------------------------------------------------

    @property
    def classes_origin(self) -> str:
        """Where its number of classes is declared, for messages."""
        if self.classes_from_data:
            return "the last layer's units"
        if self.name == "npz":
            return f"train.num_classes is {self.num_classes}"
        return f"recipe {self.name!r} has {self.num_classes} classes"

    def sample_text(self, dtype: str, shape: Sequence[int] = ()) -> str:
        """What an app feeds the model, one sample: `dtype` is the data's own,
        `shape` the spec's input.shape."""
        if self.name == "csv":
            return (
                "one table row: a value per feature column, in the order of "
                "columns: a number column's value as it is, a text column's "
                "category id (see columns)"
            )
        if self.streamed:
            height, width, channels = shape
            kind = "grayscale" if channels == 1 else "RGB"
            return (
                f"a {height}x{width} {kind} image, its 8-bit pixel values "
                "scaled to [0, 1], row by row from the top left"
            )
        if self.image_shape is None:
            return f"one sample of the npz's x arrays ({dtype})"
        size = "x".join(str(d) for d in self.image_shape)
        return f"a {size} grayscale image as uint8 pixels (0-255), row by row"

    def input_json(
        self, shape: Sequence[int], columns: Sequence[Any]
    ) -> dict[str, Any]:
        """What model.json adds about the input for an app: a camera frame's
        treatment for an image folder, the columns and their vocabularies for
        a csv (`columns`: the data's `datasets.Column`s)."""
        if self.streamed:
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
        if self.name != "csv":
            return {}
        return {
            "columns": [
                {"name": c.name, "kind": "number"}
                if c.vocabulary is None
                else {
                    "name": c.name,
                    "kind": "category",
                    "ids": "0 for a value not in vocabulary, else its place "
                    "in vocabulary counted from 1",
                    "vocabulary": list(c.vocabulary),
                }
                for c in columns
            ]
        }

    # --- the model against it -------------------------------------------------

    def check_input(self, shape: Sequence[int], report: Report) -> None:
        """The spec's input.shape must hold one of its samples."""
        if self.name == "image_folder" and (len(shape) != 3 or shape[-1] not in (1, 3)):
            report(
                ("input", "shape"),
                "recipe 'image_folder' gives images as [height, width, channels], "
                "with 1 channel (grayscale) or 3 (RGB); got "
                f"{list(shape)}",
            )
        size = math.prod(shape)
        if self.image_shape is not None and size != self.input_size:
            image = "x".join(str(d) for d in self.image_shape)
            report(
                ("input", "shape"),
                f"recipe {self.name!r} gives {image} images ({self.input_size} "
                f"values each), but this shape holds {size}",
            )

    def check_layers(self, layers: Sequence[LayerPlan], report: Report) -> None:
        """Embeddings look up integer ids: they must see the data unscaled,
        which only the npz recipe feeds, and only as the model's input. Then
        every layer that reads the input reads ids."""
        readers = [layer for layer in layers if INPUT in layer.inputs]
        ids = [layer for layer in readers if layer.reads_ids]
        for layer in layers:
            if layer.kind.adapted and self.streamed:
                report(
                    ("layers", layer.index, "type"),
                    f"a {layer.type} layer learns its statistics from the data in "
                    "memory, and an image folder is read from disk a batch at a "
                    "time; its pixels are scaled to [0, 1] already (use "
                    "batch_normalization to normalize further)",
                )
            if layer.reads_ids and self.name in ("csv", "image_folder"):
                report(
                    ("layers", layer.index, "type"),
                    f"an {layer.type} looks up integer ids, which only the npz "
                    f"recipe feeds; recipe {self.name!r} gives "
                    + ("scaled pixels" if self.streamed else "numbers")
                    + " (a csv's text columns are one-hot encoded in the model)",
                )
                continue
            if layer.reads_ids and (layer not in readers or self.image_shape):
                report(
                    ("layers", layer.index, "type"),
                    f"an {layer.type} looks up integer ids, so it must read the "
                    "model's input (as the first layer of a stack, or with "
                    "inputs: [input]) and an npz recipe's integers"
                    + (
                        f"; recipe {self.name!r} gives scaled pixels"
                        if self.image_shape
                        else ""
                    ),
                )
        for layer in readers if ids else ():
            if not layer.reads_ids:
                report(
                    ("layers", layer.index),
                    f"layers[{layer.index}] ({layer.type}) reads the model's input "
                    f"as numbers, but layers[{ids[0].index}] ({ids[0].type}) reads "
                    "it as integer ids; one input is one or the other",
                )


RECIPES: dict[str, Recipe] = {
    "mnist": Recipe(
        name="mnist",
        title="MNIST",
        layout="npz",
        filename="mnist.npz",
        keras_dataset="mnist",
        image_shape=(28, 28),
        num_classes=10,
        labels=tuple(str(digit) for digit in range(10)),
        # LeCun, Cortes and Burges' description of the set.
        pixels=(
            "grayscale, 0 is the black background and 255 full white ink: a white "
            "digit on black, scaled to fit a 20x20 box and centred in the 28x28 "
            "image by its centre of mass; invert digits drawn dark on light"
        ),
    ),
    "fashion_mnist": Recipe(
        name="fashion_mnist",
        title="Fashion-MNIST",
        layout="idx",
        filename="fashion-mnist",
        keras_dataset="fashion_mnist",
        image_shape=(28, 28),
        num_classes=10,
        # Keras' documented class names, in label order.
        labels=(
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
        ),
        # Zalando's conversion: the product photo negated, its longer side
        # scaled to 28 pixels, centred on the canvas.
        pixels=(
            "grayscale, 0 is the black background and 255 the lightest: a light "
            "garment (the product photo negated) on black, its longer side scaled "
            "to 28 pixels and centred in the 28x28 image; invert photos of dark "
            "objects on light backgrounds"
        ),
    ),
}


def recipe_for(name: str, num_classes: int | None = None, **data: Any) -> Recipe:
    """The recipe a spec names; `npz`, `csv` and `image_folder` read the user's
    own files (of `num_classes` classes or labels, where the spec says; its
    task names them), which `data` (Recipe's data fields) locates."""
    titles = {"npz": "npz", "csv": "CSV", "image_folder": "image folder"}
    if name in titles:
        layout = {"npz": "npz", "csv": "csv", "image_folder": "folder"}[name]
        return Recipe(name, titles[name], layout, "", None, None, num_classes, **data)
    return RECIPES[name]


@dataclass(frozen=True)
class ModelInput:
    """What the model reads and is trained to give, for checking data against
    it: each sample's shape; where embeddings read it, how many ids they all
    look up (the smallest input_dim among them); and the task, which says
    what the labels must be (None: the recipe's classes)."""

    shape: tuple[int, ...]
    ids: int | None = None
    task: Task | None = None


@dataclass(frozen=True)
class SpecPath:
    """A file named in a spec, resolved against the spec file's folder (as
    docker-compose and tsconfig resolve theirs), not the working folder."""

    field: str  #: the field that names it, as `train.data`
    spec: str  #: the spec file, as messages name it
    written: str  #: the path as the spec writes it
    folder: str  #: the spec file's folder, absolute

    @property
    def path(self) -> Path:
        """The file, shown relative to the working folder where it is inside it."""
        path = Path(os.path.normpath(Path(self.folder) / self.written))
        try:
            return path.relative_to(Path.cwd().resolve())
        except ValueError:
            return path

    @property
    def origin(self) -> str:
        return f"{self.field} (in {self.spec})"
