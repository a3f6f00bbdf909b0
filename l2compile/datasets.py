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


#: Keras' file names for Fashion-MNIST, in its `fashion-mnist/` folder.
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}


@dataclass(frozen=True)
class Recipe:
    """A data recipe: a dataset in Keras' file layout, or a user's .npz.

    `layout` is "npz" (one .npz file, named `filename` for built-in recipes)
    or "idx" (a folder `filename` of the four gzip IDX files). `image_shape`
    is None where the data, not the recipe, decides it (the npz recipe).
    """

    name: str
    title: str
    layout: str
    filename: str
    keras_dataset: str | None
    image_shape: tuple[int, ...] | None
    num_classes: int
    labels: tuple[str, ...] = ()

    @property
    def input_size(self) -> int:
        return int(np.prod(self.image_shape or ()))


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
    ),
}


def recipe_for(
    name: str, num_classes: int | None = None, labels: list[str] | None = None
) -> Recipe:
    """The recipe a spec names; `npz` is the user's own file of `num_classes`."""
    if name == "npz":
        assert num_classes is not None  # the spec requires it
        names = tuple(labels) if labels else tuple(str(i) for i in range(num_classes))
        return Recipe("npz", "npz", "npz", "", None, None, num_classes, names)
    return RECIPES[name]


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
        path = data
        if data.is_dir() and recipe.filename and not _holds(recipe, data):
            path = data / recipe.filename
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
    if recipe.name == "npz" and data is None:
        raise BuildError(
            "the npz recipe needs its data file: set train.data in the spec, "
            "or pass --data PATH"
        )
    for _, path in places:
        if _holds(recipe, path):
            return (
                read_idx(recipe, path)
                if recipe.layout == "idx"
                else read_npz(recipe, path)
            )
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


def _holds(recipe: Recipe, path: Path) -> bool:
    if recipe.layout == "idx":
        return path.is_dir() and all((path / f).is_file() for f in IDX_FILES.values())
    return path.is_file()


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
        f"Put Keras' {recipe.filename}/ folder ({', '.join(IDX_FILES.values())}) "
        "in one of:"
        if recipe.layout == "idx"
        else f"Put Keras' {recipe.filename} (arrays {', '.join(_KEYS)}) in one of:",
        "  - any path, passed as --data PATH",
    ]
    if DATA_ENV not in places[0][0]:
        lines.append(f"  - a folder named by ${DATA_ENV} (not set now)")
    lines += [f"  - {path} ({what})" for what, path in places]
    return "\n".join(lines)


def keras_download(recipe: Recipe) -> Dataset:
    """Keras' own loader: downloads into the Keras cache when online."""
    import keras  # deferred: heavy, and only needed as the last resort

    assert recipe.keras_dataset is not None
    loader = getattr(keras.datasets, recipe.keras_dataset)
    (x_train, y_train), (x_test, y_test) = loader.load_data()
    source = str(keras_cache_dir(os.environ) / recipe.filename)
    return check_arrays(
        recipe,
        {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test},
        source,
    )


def _read_idx_file(path: Path, rank: int) -> npt.NDArray[np.uint8]:
    """One gzip IDX file of unsigned bytes (the MNIST family's format)."""
    import gzip

    with gzip.open(path, "rb") as f:
        raw = f.read()
    header = 4 + 4 * rank
    if len(raw) < header or raw[:3] != b"\x00\x00\x08" or raw[3] != rank:
        raise BuildError(
            f"{path}: not an IDX file of unsigned bytes with {rank} dimensions"
        )
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    if len(raw) - header != int(np.prod(dims)):
        raise BuildError(f"{path}: holds {len(raw) - header} bytes of data, not {dims}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def read_idx(recipe: Recipe, folder: Path) -> Dataset:
    """Read Keras' folder of four gzip IDX files and check them."""
    import gzip

    arrays = {}
    for key, name in IDX_FILES.items():
        try:
            arrays[key] = _read_idx_file(folder / name, 3 if key.startswith("x") else 1)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise BuildError(f"{folder / name}: cannot read: {exc}") from exc
    return check_arrays(recipe, arrays, str(folder))


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
        if recipe.image_shape is None:
            if not (
                np.issubdtype(x.dtype, np.integer)
                or np.issubdtype(x.dtype, np.floating)
            ):
                problems.append(f"x_{split} has dtype {x.dtype}; expected numbers")
            if x.ndim < 2:
                problems.append(f"x_{split} has shape {x.shape}; expected (N, ...)")
        else:
            if x.dtype != np.uint8:
                problems.append(f"x_{split} has dtype {x.dtype}; expected uint8 pixels")
            if (
                x.ndim != 1 + len(recipe.image_shape)
                or x.shape[1:] != recipe.image_shape
            ):
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
