"""Data recipes: where a recipe's data comes from, and checking what was found.

Only numpy is imported at module level; Keras is imported inside
`keras_download`, the last resort, so that validating and generating stay fast.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from l2compile.errors import BuildError

#: Environment variable naming a folder that holds recipe data files.
DATA_ENV = "L2COMPILE_DATA"
_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class Recipe:
    """A built-in data recipe: a dataset in Keras' own file layout."""

    name: str
    title: str
    filename: str
    keras_dataset: str
    image_shape: tuple[int, ...]
    num_classes: int
    pixel_scale: float

    @property
    def input_size(self) -> int:
        return int(np.prod(self.image_shape))


RECIPES: dict[str, Recipe] = {
    "mnist": Recipe(
        name="mnist",
        title="MNIST",
        filename="mnist.npz",
        keras_dataset="mnist",
        image_shape=(28, 28),
        num_classes=10,
        pixel_scale=255.0,
    ),
}


@dataclass(frozen=True)
class Dataset:
    """A recipe's raw splits, checked, and where they were read from."""

    x_train: npt.NDArray[np.generic]
    y_train: npt.NDArray[np.generic]
    x_test: npt.NDArray[np.generic]
    y_test: npt.NDArray[np.generic]
    source: str


Downloader = Callable[[Recipe], Dataset]


def keras_cache_dir(env: Mapping[str, str]) -> Path:
    """Keras' download cache: `$KERAS_HOME/datasets`, else `~/.keras/datasets`."""
    home = env.get("KERAS_HOME")
    base = Path(home) if home else Path(env.get("HOME", "~")).expanduser() / ".keras"
    return base / "datasets"


def candidates(
    recipe: Recipe, data: Path | None, env: Mapping[str, str]
) -> list[tuple[str, Path]]:
    """Where to look, in order: (what the place is, the file path)."""
    if data is not None:
        path = data / recipe.filename if data.is_dir() else data
        return [("--data", path)]
    places = []
    folder = env.get(DATA_ENV)
    if folder:
        places.append((f"${DATA_ENV}", Path(folder) / recipe.filename))
    places.append(("the Keras cache", keras_cache_dir(env) / recipe.filename))
    return places


def load_dataset(
    recipe: Recipe,
    data: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    download: Downloader | None = None,
) -> Dataset:
    """Find, read and check a recipe's data; raise `BuildError` if none is usable.

    `--data` (a file, or a folder holding the recipe's file) is used alone.
    Otherwise: the `L2COMPILE_DATA` folder, the Keras cache, then Keras' own
    download.
    """
    env = os.environ if env is None else env
    places = candidates(recipe, data, env)
    for _, path in places:
        if path.is_file():
            return read_npz(recipe, path)
    if data is not None:
        raise BuildError(
            f"--data {data}: no such file"
            + (f" (looked for {places[0][1]})" if data.is_dir() else "")
        )
    downloader = keras_download if download is None else download
    try:
        return downloader(recipe)
    except Exception as exc:
        raise BuildError(_not_found_message(recipe, env, places, exc)) from exc


def _not_found_message(
    recipe: Recipe,
    env: Mapping[str, str],
    places: list[tuple[str, Path]],
    exc: Exception,
) -> str:
    reason = (
        str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    )
    lines = [
        f"{recipe.title} data not found, and Keras could not download it ({reason}).",
        f"Put Keras' {recipe.filename} (arrays {', '.join(_KEYS)}) in one of:",
        "  - any path, passed as --data PATH",
    ]
    if DATA_ENV not in places[0][0]:
        lines.append(f"  - a folder named by ${DATA_ENV} (not set now)")
    lines += [f"  - {path} ({what})" for what, path in places]
    return "\n".join(lines)


def keras_download(recipe: Recipe) -> Dataset:
    """Keras' own loader: downloads into the Keras cache when online."""
    import keras  # deferred: heavy, and only needed as the last resort

    loader = getattr(keras.datasets, recipe.keras_dataset)
    (x_train, y_train), (x_test, y_test) = loader.load_data()
    source = str(keras_cache_dir(os.environ) / recipe.filename)
    return check_arrays(
        recipe,
        {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test},
        source,
    )


def read_npz(recipe: Recipe, path: Path) -> Dataset:
    """Read a recipe's `.npz` file (never unpickling anything) and check it."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in _KEYS if k not in archive.files]
            if missing:
                raise BuildError(
                    f"{path}: not a {recipe.title} file in Keras' layout: "
                    f"missing arrays {', '.join(missing)} "
                    f"(it has: {', '.join(archive.files) or 'none'})"
                )
            arrays = {k: archive[k] for k in _KEYS}
    except BuildError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise BuildError(f"{path}: cannot read as an .npz file: {exc}") from exc
    return check_arrays(recipe, arrays, str(path))


def check_arrays(
    recipe: Recipe, arrays: Mapping[str, npt.NDArray[np.generic]], source: str
) -> Dataset:
    """Check content, not file hashes: keys, shapes, dtypes and label range."""
    problems = []
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8:
            problems.append(f"x_{split} has dtype {x.dtype}; expected uint8 pixels")
        if x.ndim != 1 + len(recipe.image_shape) or x.shape[1:] != recipe.image_shape:
            want = ", ".join(str(d) for d in recipe.image_shape)
            problems.append(f"x_{split} has shape {x.shape}; expected (N, {want})")
        if not np.issubdtype(y.dtype, np.integer):
            problems.append(f"y_{split} has dtype {y.dtype}; expected integer labels")
        elif y.size and (y.min() < 0 or y.max() >= recipe.num_classes):
            problems.append(
                f"y_{split} has labels from {y.min()} to {y.max()}; "
                f"expected 0 to {recipe.num_classes - 1}"
            )
        if y.ndim != 1 or (x.ndim and y.shape[0] != x.shape[0]):
            rows = x.shape[0] if x.ndim else "N"
            problems.append(f"y_{split} has shape {y.shape}; expected ({rows},)")
        if x.ndim and x.shape[0] == 0:
            problems.append(f"x_{split} is empty")
    if problems:
        raise BuildError(
            f"{source}: not usable as {recipe.title} data:\n  - "
            + "\n  - ".join(problems)
        )
    return Dataset(
        arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], source
    )
