"""The layout of a folder of files, one subfolder per class, shared by the
image_folder and text_folder recipes.

Two layouts, as Keras' `image_dataset_from_directory` and
`text_dataset_from_directory` read them:

- `DATA/train/<class>/*` and `DATA/test/<class>/*`: the test split is its own
  folder, and both must have the same class folders;
- `DATA/<class>/*` with `train.test_split`: the test split is a seeded share of
  each class's files (stratified), the same share of every class.

Class names are the folder names, sorted; a class's id is its place among
them. A recipe's files are the ones with one of its extensions (any case),
sorted by name; other files are left alone, as Keras leaves them. A missing
or extra class folder, an empty class, and a number of classes the model's
last layer does not have each stop the build with the path named.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from l2compile.errors import BuildError, some_of
from l2compile.recipes import ModelInput

__all__ = [
    "Kind",
    "Layout",
    "class_files",
    "files_under",
    "has_split",
    "read_layout",
    "split",
]


@dataclass(frozen=True)
class Kind:
    """What a recipe's files are: their extensions, and what they are called
    in messages ("images", "documents")."""

    extensions: tuple[str, ...]
    noun: str
    recipe: str


@dataclass(frozen=True)
class Layout:
    """A class folder's files, split: paths and class ids, and the classes."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]

    def relative(self, folder: Path, test: bool) -> np.ndarray:
        """The split's files' paths relative to `folder`, with / between parts."""
        paths = self.x_test if test else self.x_train
        return np.array(
            [Path(os.path.relpath(p, folder)).as_posix() for p in paths], dtype=str
        )


def has_split(folder: Path) -> bool:
    """Whether `folder` holds train/ and test/ folders (else: class folders)."""
    return (folder / "train").is_dir() and (folder / "test").is_dir()


def class_files(folder: Path, extensions: Sequence[str]) -> dict[str, list[str]]:
    """Each class folder of `folder` (sorted), with its files of `extensions`
    (sorted)."""
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
                    if e.is_file() and e.name.lower().endswith(tuple(extensions))
                )
    except OSError as exc:
        raise BuildError(f"{place}: cannot list: {exc.strerror or exc}") from exc
    for name in found:
        if not name.isprintable():
            raise BuildError(
                f"{folder}: a class folder's name, {name!r}, becomes a line "
                "of labels.txt: it must be printable, on one line"
            )
    return found


def read_layout(
    kind: Kind,
    folder: Path,
    test_split: float | None,
    *,
    seed: int,
    model_input: ModelInput,
) -> Layout:
    """List and check a folder of class folders, split as its layout says."""
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "no such folder"
        raise BuildError(f"{folder}: {what}; the {kind.recipe} recipe reads a folder")
    if has_split(folder):
        if test_split is not None:
            raise BuildError(
                f"{folder}: has train/ and test/ folders, so train.test_split has "
                "nothing to split; remove it, or put the class folders directly "
                f"in {folder}"
            )
        train = _classes(kind, folder / "train")
        test = _classes(kind, folder / "test")
        _same_classes(folder / "train", train, folder / "test", test)
        (x_train, y_train), (x_test, y_test) = _flatten(train), _flatten(test)
        classes = tuple(train)
    else:
        if test_split is None:
            raise BuildError(
                f"{folder}: has no train/ and test/ folders; put the class folders "
                "in both, or set train.test_split to test on a share of each class"
            )
        both = _classes(kind, folder)
        (x_train, y_train), (x_test, y_test) = split(both, test_split, seed, kind)
        classes = tuple(both)
        if not len(x_test):
            raise BuildError(
                f"{folder}: train.test_split {test_split:g} of each class's "
                f"{kind.noun} tests on none: there are too few; use a larger share"
            )
    _check_count(folder, classes, model_input)
    return Layout(x_train, y_train, x_test, y_test, classes)


def _classes(kind: Kind, folder: Path) -> dict[str, list[str]]:
    found = class_files(folder, kind.extensions)
    if not found:
        raise BuildError(
            f"{folder}: no class folders; put each class's {kind.noun} in a "
            "folder named after the class"
        )
    for name, files in found.items():
        if not files:
            raise BuildError(
                f"{folder / name}: no {kind.noun} ({', '.join(kind.extensions)}): "
                "every class needs some"
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
    classes: dict[str, list[str]], share: float, seed: int, kind: Kind
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Each class's files split by a permutation seeded with (seed, its id):
    round(share * count) of them tested on, the rest trained on, each in
    name order (the generated module's `load_data` splits the same way)."""
    parts: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for label, files in enumerate(classes.values()):
        order = np.random.default_rng((seed, label)).permutation(len(files))
        held = round(len(files) * share)
        if held >= len(files):
            raise BuildError(
                f"{Path(files[0]).parent}: train.test_split {share:g} of its "
                f"{len(files)} {kind.noun} leaves none to train on"
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


def files_under(kind: Kind, path: Path) -> tuple[list[str], list[str]]:
    """The files predict reads: `path` itself, or every file of the kind's
    extensions under the folder `path` (sorted, links to folders not
    followed); with each one's key (its path relative to the folder, or its
    name)."""
    if path.is_file():
        return [str(path)], [path.name]
    found, keys = [], []
    try:
        for root, names_of_folders, names in os.walk(path, onerror=_raise):
            names_of_folders.sort()
            for name in sorted(names):
                if name.lower().endswith(kind.extensions):
                    found.append(os.path.join(root, name))
                    keys.append(Path(root, name).relative_to(path).as_posix())
    except OSError as exc:
        raise BuildError(f"{path}: cannot list: {exc.strerror or exc}") from exc
    if not found:
        raise BuildError(f"{path}: no {kind.noun} ({', '.join(kind.extensions)})")
    return found, keys


def _raise(error: OSError) -> None:
    raise error
