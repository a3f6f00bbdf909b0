"""The image_folder recipe's data: a folder of images, one subfolder per class.

Two layouts, as Keras' `image_dataset_from_directory` reads them:

- `DATA/train/<class>/*` and `DATA/test/<class>/*`: the test split is its own
  folder, and both must have the same class folders;
- `DATA/<class>/*` with `train.test_split`: the test split is a seeded share of
  each class's images (stratified), the same share of every class.

Class names are the folder names, sorted; a class's id is its place among
them. Image files are the ones with an extension of `EXTENSIONS` (any case),
sorted by name; other files are left alone, as Keras leaves them.

Listing and checking the folders happens before anything is trained: a
missing or extra class folder, an empty class, a file that is no image (its
first bytes), and a number of classes the model's last layer does not have,
each stop the build with the path named. Whether every file decodes is
checked by `check_decodable`, with TensorFlow's own decoders, in the process
that trains (TensorFlow is not imported here otherwise).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from l2compile.errors import BuildError, some_of
from l2compile.recipes import ModelInput, Recipe

if TYPE_CHECKING:
    from l2compile.datasets import Dataset

#: The image files TensorFlow's `decode_image` reads, by extension.
EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
#: The first bytes of each format `decode_image` reads.
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")


def has_split(folder: Path) -> bool:
    """Whether `folder` holds train/ and test/ folders (else: class folders)."""
    return (folder / "train").is_dir() and (folder / "test").is_dir()


def class_images(folder: Path) -> dict[str, list[str]]:
    """Each class folder of `folder` (sorted), with its image files (sorted)."""
    found: dict[str, list[str]] = {}
    place = folder
    try:
        with os.scandir(folder) as entries:
            classes = sorted(e.name for e in entries if e.is_dir())
        for name in classes:
            place = folder / name
            with os.scandir(place) as entries:
                found[name] = sorted(
                    str(place / e.name)
                    for e in entries
                    if e.is_file() and e.name.lower().endswith(EXTENSIONS)
                )
    except OSError as exc:
        raise BuildError(f"{place}: cannot list: {exc.strerror or exc}") from exc
    for name in found:
        if not name.isprintable():
            raise BuildError(
                f"{folder / name!r}: a class folder's name becomes a line of "
                "labels.txt: it must be printable, on one line"
            )
    return found


def read_folder(
    recipe: Recipe, folder: Path, *, seed: int, model_input: ModelInput
) -> Dataset:
    """List and check an image folder: x is the images' paths, y their class ids."""
    from l2compile.datasets import Dataset  # it imports this module

    if not folder.is_dir():
        what = "is a file" if folder.exists() else "no such folder"
        raise BuildError(f"{folder}: {what}; the image_folder recipe reads a folder")
    if has_split(folder):
        if recipe.test_split is not None:
            raise BuildError(
                f"{folder}: has train/ and test/ folders, so train.test_split has "
                "nothing to split; remove it, or put the class folders directly "
                f"in {folder}"
            )
        train = _classes(folder / "train")
        test = _classes(folder / "test")
        _same_classes(folder / "train", train, folder / "test", test)
        x_train, y_train = _flatten(train)
        x_test, y_test = _flatten(test)
        classes = tuple(train)
    else:
        if recipe.test_split is None:
            raise BuildError(
                f"{folder}: has no train/ and test/ folders; put the class folders "
                "in both, or set train.test_split to test on a share of each class"
            )
        both = _classes(folder)
        (x_train, y_train), (x_test, y_test) = split(both, recipe.test_split, seed)
        classes = tuple(both)
        if not len(x_test):
            raise BuildError(
                f"{folder}: train.test_split {recipe.test_split:g} of each class's "
                "images tests on none: there are too few; use a larger share"
            )
    _check_count(folder, classes, model_input)
    _check_headers([*x_train, *x_test])
    return Dataset(
        x_train,
        y_train,
        x_test,
        y_test,
        str(folder),
        classes=classes,
        train_ids=_relative(x_train, folder),
        test_ids=_relative(x_test, folder),
    )


def _relative(paths: np.ndarray, folder: Path) -> np.ndarray:
    """The files' paths relative to the image folder, with / between parts."""
    return np.array(
        [Path(os.path.relpath(p, folder)).as_posix() for p in paths], dtype=str
    )


def _classes(folder: Path) -> dict[str, list[str]]:
    found = class_images(folder)
    if not found:
        raise BuildError(
            f"{folder}: no class folders; put each class's images in a folder "
            "named after the class"
        )
    for name, files in found.items():
        if not files:
            raise BuildError(
                f"{folder / name}: no images ({', '.join(EXTENSIONS)}): every class "
                "needs some"
            )
    return found


def _same_classes(
    train_dir: Path,
    train: dict[str, list[str]],
    test_dir: Path,
    test: dict[str, list[str]],
) -> None:
    missing = [name for name in train if name not in test]
    extra = [name for name in test if name not in train]
    if missing:
        raise BuildError(
            f"{test_dir}: has no class folder {missing[0]!r}, which {train_dir} has "
            "(train and test need the same classes)"
        )
    if extra:
        raise BuildError(
            f"{test_dir / extra[0]}: a class folder {train_dir} does not have "
            "(train and test need the same classes)"
        )


def _flatten(classes: dict[str, list[str]]) -> tuple[np.ndarray, np.ndarray]:
    paths = [path for files in classes.values() for path in files]
    labels = [i for i, files in enumerate(classes.values()) for _ in files]
    return np.array(paths, dtype=str), np.array(labels, dtype=np.int64)


def split(
    classes: dict[str, list[str]], share: float, seed: int
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Each class's images split by a permutation seeded with (seed, its id):
    round(share * count) of them tested on, the rest trained on, each in
    name order (the generated module's `load_data` splits the same way)."""
    parts: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for label, files in enumerate(classes.values()):
        order = np.random.default_rng((seed, label)).permutation(len(files))
        held = round(len(files) * share)
        if held >= len(files):
            raise BuildError(
                f"{Path(files[0]).parent}: train.test_split {share:g} of its "
                f"{len(files)} images leaves none to train on"
            )
        for part, picked in (("test", order[:held]), ("train", order[held:])):
            parts[part] += [(files[i], label) for i in np.sort(picked)]
    return tuple(  # type: ignore[return-value]
        (
            np.array([p for p, _ in parts[part]], dtype=str),
            np.array([label for _, label in parts[part]], dtype=np.int64),
        )
        for part in ("train", "test")
    )


def _check_count(
    folder: Path, classes: tuple[str, ...], model_input: ModelInput
) -> None:
    task = model_input.task
    units = task.outputs if task is not None else None
    if units is not None and units != len(classes):
        raise BuildError(
            f"{folder}: has {len(classes)} class folders ({some_of(list(classes))}), "
            f"but the last layer has {units} units, one per class"
        )


def _check_headers(paths: list[str]) -> None:
    """Every file starts as an image of a format TensorFlow decodes, of a
    size it can decode: its header's width and height, before any pixel."""
    for path in paths:
        try:
            with open(path, "rb") as f:
                head = f.read(32)
                size = _jpeg_size(f) if head.startswith(b"\xff\xd8") else None
        except OSError as exc:
            raise BuildError(f"{path}: cannot read: {exc.strerror}") from exc
        if not head.startswith(_MAGIC):
            what = "is empty" if not head else "is not a BMP, GIF, JPEG or PNG image"
            raise BuildError(f"{path}: {what}")
        width, height = size or _header_size(head)
        if width * height > MAX_PIXELS:
            raise BuildError(
                f"{path}: is {width}x{height} pixels, more than the "
                f"{MAX_PIXELS:,} l2compile decodes (Pillow's decompression-bomb "
                "limit): decoding it could take all the memory; shrink it"
            )


#: The most pixels an image may declare: Pillow's limit against decompression
#: bombs (Image.MAX_IMAGE_PIXELS), beyond which it refuses to open a file.
MAX_PIXELS = 89_478_485


def _header_size(head: bytes) -> tuple[int, int]:
    """A PNG's, GIF's or BMP's width and height, from its first 32 bytes
    (0, 0 where the header is too short to say: the decoder then refuses it)."""
    if head.startswith(b"\x89PNG") and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head.startswith(b"GIF") and len(head) >= 10:
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    if head.startswith(b"BM") and len(head) >= 26:
        width = int.from_bytes(head[18:22], "little", signed=True)
        height = int.from_bytes(head[22:26], "little", signed=True)
        return abs(width), abs(height)
    return 0, 0


def _jpeg_size(f: BinaryIO) -> tuple[int, int]:
    """A JPEG's width and height, from its first frame header (SOFn), reading
    marker by marker from the start; (0, 0) where there is none."""
    f.seek(2)
    while True:
        marker = f.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return 0, 0
        kind = marker[1]
        if kind == 0xFF:  # padding before a marker
            f.seek(-1, os.SEEK_CUR)
            continue
        if kind in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            continue
        length = f.read(2)
        if len(length) < 2:
            return 0, 0
        if kind in (
            *range(0xC0, 0xC4),
            *range(0xC5, 0xC8),
            *range(0xC9, 0xCC),
            *range(0xCD, 0xD0),
        ):
            frame = f.read(5)
            if len(frame) < 5:
                return 0, 0
            return int.from_bytes(frame[3:5], "big"), int.from_bytes(frame[1:3], "big")
        f.seek(int.from_bytes(length, "big") - 2, os.SEEK_CUR)


def check_decodable(paths: np.ndarray) -> None:
    """Every image decodes with TensorFlow's decoders (raise BuildError naming
    the first that does not). Runs where training runs: it imports TensorFlow."""
    import tensorflow as tf

    def decode(index: tf.Tensor, path: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(
            tf.io.read_file(path), channels=3, expand_animations=False
        )
        return index + 0 * tf.cast(tf.size(image[:1, :1, :1]), tf.int64)

    indices = tf.data.Dataset.from_tensor_slices(
        (np.arange(len(paths), dtype=np.int64), paths)
    )
    decoded = indices.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    decoded = decoded.ignore_errors()
    good = np.zeros(len(paths), dtype=bool)
    for batch in decoded.batch(4096).as_numpy_iterator():
        good[batch] = True
    if not good.all():
        bad = paths[np.argmin(good)]
        count = int(np.count_nonzero(~good))
        more = f" ({count} files do not)" if count > 1 else ""
        raise BuildError(
            f"{bad}: is not a decodable image: TensorFlow cannot read it{more}"
        )
