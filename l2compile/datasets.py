"""Data: finding, reading and checking the data a recipe names.

The recipe itself, the plan's data node, is `l2compile.recipes` (this
module re-exports it); this is the build-stage side, which reads files.

Data is read in two steps, so that bad data fails in seconds with a named
error, before anything large is decompressed and long before training:

1. the arrays' headers: each `.npy` header inside the `.npz` (and the zip's
   declared sizes), or each IDX header. Their shapes and dtypes are checked
   against the recipe and the model's input, and their size against the
   memory available;
2. only then the arrays, whose values are checked: finite numbers, labels
   among the classes, integers the generated preprocessing can feed.

Only numpy is imported at module level; Keras is imported inside
`keras_download`, the last resort, so that validating and generating stay fast.
"""

from __future__ import annotations

import contextlib
import errno
import io
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from l2compile.arrays import count as _count
from l2compile.arrays import not_finite
from l2compile.arrays import where as _where
from l2compile.errors import BuildError, some_of
from l2compile.files import open_binary, unreadable
from l2compile.recipes import ModelInput, SpecPath
from l2compile.sources.base import Request
from l2compile.sources.base import Source as Recipe
from l2compile.tasks import Classification, Task

#: Environment variable naming a folder that holds recipe data files.
DATA_ENV = "L2COMPILE_DATA"
_KEYS = ("x_train", "y_train", "x_test", "y_test")

#: The npz recipe feeds integers other than uint8 pixels unscaled, as float32,
#: which holds every integer exactly only up to this size.
FLOAT32_EXACT = 2**24
#: A `.npy` header claiming more bytes than this is refused before it is read
#: (numpy's own limit, which numpy checks only after reading them all).
MAX_NPY_HEADER = 10_000


#: Keras' file names for Fashion-MNIST, in its `fashion-mnist/` folder.
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}


@dataclass(frozen=True)
class Column:
    """A csv model's input as the model reads it: a number (NaN where it is
    missing), or (where a column's values are text) a category id: 0 for a
    missing value or one not in `vocabulary`, else its place in the
    vocabulary, counted from 1. A date column is several numbers, one per
    `part` (tables.DATE_PARTS).

    `fill` is what the model puts in a missing value's place (a number; a
    category's id), learned from the training rows as `policy` says: None
    leaves it (a category's slot 0; a number's NaN, where policy is error).
    `indicator`: the model also reads whether the number was missing."""

    name: str
    vocabulary: tuple[str, ...] | None = None  #: None: a number
    fill: float | None = None
    indicator: bool = False
    policy: str = ""
    part: str = ""  #: a date's part; "" for a column read as it is
    format: str = ""  #: a date's strptime format

    @property
    def width(self) -> int:
        """How many values it becomes in the model: one-hot, out-of-vocabulary
        first; a number, and whether it was missing where `indicator`."""
        if self.vocabulary is None:
            return 1 + self.indicator
        return len(self.vocabulary) + 1

    def describe(self) -> dict[str, Any]:
        """The column as model.json lists it and the generated build_model
        takes it."""
        if self.vocabulary is not None:
            found: dict[str, Any] = {
                "name": self.name,
                "kind": "category",
                "vocabulary": list(self.vocabulary),
                "missing": self.policy,
            }
            if self.fill is not None:
                found["fill"] = int(self.fill)
            return found
        found = {"name": self.name, "kind": "number"}
        if self.part:
            found["date"] = {"part": self.part, "format": self.format}
        found["missing"] = self.policy
        if self.fill is not None:
            found["fill"] = self.fill
        if self.indicator:
            found["indicator"] = True
        return found


@dataclass(frozen=True)
class Dataset:
    """A recipe's raw splits, checked, and where they were read from.

    For a streamed recipe (image_folder) x holds the files' paths. `columns`
    are a csv's feature columns; `classes` the class names the data gives
    (an image folder's subfolders; a csv's text labels).
    """

    x_train: npt.NDArray[np.generic]
    y_train: npt.NDArray[np.generic]
    x_test: npt.NDArray[np.generic]
    y_test: npt.NDArray[np.generic]
    source: str
    columns: tuple[Column, ...] = ()
    classes: tuple[str, ...] = ()
    #: Where each training and test sample comes from, for split.json: a
    #: csv's data rows (counted from 0, the header and blank lines left out),
    #: an image folder's files (relative to it); None: its place in its array.
    train_ids: npt.NDArray[np.generic] | None = None
    test_ids: npt.NDArray[np.generic] | None = None
    #: Warnings about the data that do not stop a build (photos an EXIF
    #: orientation turns): the command logs them, once.
    warnings: tuple[str, ...] = ()
    #: A text recipe's vocabulary, by id (x holds the documents' token ids).
    vocabulary: tuple[str, ...] = ()

    def ids(self, test: bool) -> npt.NDArray[np.generic]:
        """Where each sample of the training (or test) split comes from."""
        found = self.test_ids if test else self.train_ids
        if found is not None:
            return found
        return np.arange(len(self.x_test if test else self.x_train))

    @property
    def encoding(self) -> list[dict[str, Any]]:
        """What the csv module's build_model takes: each model input as
        model.json describes it (`Column.describe`)."""
        return [column.describe() for column in self.columns]

    @classmethod
    def of(cls, arrays: Mapping[str, npt.NDArray[np.generic]], source: str) -> Dataset:
        """The four checked arrays by their names in Keras' layout."""
        return cls(
            arrays["x_train"],
            arrays["y_train"],
            arrays["x_test"],
            arrays["y_test"],
            source,
        )


@dataclass(frozen=True)
class ArrayHeader:
    """An array's shape and dtype, known before its data is read."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


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
        if data.is_dir() and recipe.filename and not recipe.holds(data):
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
    spec_path: SpecPath | None = None,
    model_input: ModelInput | None = None,
    env: Mapping[str, str] | None = None,
    download: Downloader | None = None,
    seed: int = 0,
    test_path: SpecPath | None = None,
    vocabulary: tuple[str, ...] | None = None,
) -> Dataset:
    """Find, read and check a recipe's data; raise `BuildError` if none is usable.

    `--data` (`data`: a file, or a folder holding the recipe's file) is used
    alone; else the spec's own data file (`spec_path`). Otherwise: the
    `L2COMPILE_DATA` folder, the Keras cache, then Keras' own download.
    `model_input` adds the checks of the data against the model's input.
    The csv and image_folder recipes split off their test share with `seed`;
    a csv's separate test file is `test_path`. A text recipe tokenizes by
    `vocabulary` where given (a build's), else by its training split's.
    """
    env = os.environ if env is None else env
    given = data if data is not None else spec_path.path if spec_path else None
    if recipe.own_data and given is None:
        what = "folder" if recipe.folder else "file"
        raise BuildError(
            f"the {recipe.name} recipe needs its data {what}: set train.data in "
            "the spec, or pass --data PATH"
        )
    request = Request(
        given, data, spec_path, test_path, model_input, seed, env, download, vocabulary
    )
    found: Dataset = recipe.read(request)
    return found


def find_file(recipe: Recipe, request: Request) -> Dataset:
    """A recipe's data at the first place that holds it (`candidates`), else
    Keras' own download (where the user named no path)."""
    given, env = request.given, request.env
    places = candidates(recipe, given, env)
    for _, path in places:
        if recipe.holds(path):
            return recipe.read_found(path, request.model_input)  # type: ignore[no-any-return]
    if given is not None:
        origin = request.spec_path if request.data is None else None
        raise BuildError(missing(recipe, given, places[0][1], origin))
    downloader = keras_download if request.download is None else request.download
    try:
        return downloader(recipe)
    except Exception as exc:
        raise BuildError(_not_found_message(recipe, env, places, exc)) from exc


def missing(
    recipe: Recipe, given: Path, looked: Path, spec_path: SpecPath | None
) -> str:
    """Why a data path given by `--data` or the spec holds no data."""
    if spec_path is not None:
        where = f"{spec_path.origin}: {spec_path.written}"
    else:
        where = f"--data {given}"
    if looked != given:
        return f"{where}: no such file (looked for {looked})"
    if given.is_dir():
        return f"{where}: is a folder, not {recipe.wanted}"
    if given.is_file():  # a source whose data is a folder
        return f"{where}: is a file, not {recipe.wanted}"
    if given.exists():
        return f"{where}: is not a regular file"
    try:
        os.stat(given)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # exists() says False for a loop too
            return f"{where}: {unreadable(exc)}"
    if spec_path is not None and not Path(spec_path.written).is_absolute():
        return (
            f"{where}: no such file (resolved against the spec's folder: "
            f"{spec_path.folder})"
        )
    return f"{where}: no such file"


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
        "Put Keras' "
        + recipe.stored.format(
            files=", ".join(IDX_FILES.values()), arrays=", ".join(_KEYS)
        )
        + " in one of:",
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


# --- memory -------------------------------------------------------------------


def available_memory() -> int | None:
    """Bytes of memory this process can still take: the kernel's MemAvailable
    (else free pages), capped by a cgroup's limit; None where unknown."""
    found: list[int] = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    try:  # cgroup v2: a container's limit, less what it uses
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit != "max":
            found.append(max(0, int(limit) - int(used)))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def size_text(size: float) -> str:
    """A byte count for people: 512 bytes, 3.1 MiB, 4.4 GiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:,.1f} {unit}"
    return f"{size:,.0f} bytes"


def check_memory(source: str, headers: Mapping[str, ArrayHeader]) -> None:
    """Refuse data that cannot fit in memory, with the generated preprocessing's
    float32 (or int32) copy of the samples, before reading any of it."""
    raw = sum(h.nbytes for h in headers.values())
    copies = 4 * sum(math.prod(h.shape) for k, h in headers.items() if k[0] == "x")
    available = available_memory()
    if available is None or raw + copies <= available:
        return
    parts = ", ".join(f"{k} {size_text(h.nbytes)}" for k, h in headers.items())
    raise BuildError(
        f"{source}: too large for the memory available: its arrays take "
        f"{size_text(raw)} ({parts}), and training at least {size_text(copies)} "
        f"more for float32 copies of the samples: {size_text(raw + copies)} in "
        f"all, but only {size_text(available)} is available"
    )


# --- reading: the .npz --------------------------------------------------------


#: The first bytes of files people give instead of an .npz, and what they are.
_SIGNATURES = (
    (b"\x93NUMPY", "is a single NumPy array (an .npy file, numpy's save format)"),
    (b"\x89PNG\r\n\x1a\n", "is a PNG image"),
    (b"\xff\xd8\xff", "is a JPEG image"),
    (b"GIF87a", "is a GIF image"),
    (b"GIF89a", "is a GIF image"),
    (b"\x1f\x8b", "is a gzip file"),
    (b"BZh", "is a bzip2 file"),
    (b"\xfd7zXZ\x00", "is an xz file"),
    (b"\x89HDF\r\n\x1a\n", "is an HDF5 file"),
    (b"%PDF", "is a PDF document"),
)
_ZIP = (b"PK\x03\x04", b"PK\x05\x06")


def _not_npz(path: Path) -> str | None:
    """What the file is, if its first bytes show it is no .npz archive."""
    with open_binary(path) as f:
        head = f.read(512)
    if head.startswith(_ZIP):
        return None
    what = next((what for magic, what in _SIGNATURES if head.startswith(magic)), "")
    if not head:
        what = "is empty"
    elif head[:1] == b"\x80" and 2 <= head[1] <= 5:
        what = "is a Python pickle"
    elif not what and _is_text(head):
        what = "is a text file"
    if not what:
        what = f"is not a zip file (it starts with bytes {head[:8].hex(' ')})"
    message = f"{path}: {what}, not an .npz archive (numpy's savez format)"
    if head.startswith(b"\x93NUMPY"):
        message += (
            "; save the four arrays into one file with "
            "np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"
        )
    return message


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:
            return False
        text = head[: exc.start].decode("utf-8")  # a character cut at the end
    return all(c.isprintable() or c in "\t\n\r\f" for c in text)


def _read_exact(stream: Any, size: int) -> bytes:
    data: bytes = stream.read(size)
    if len(data) != size:
        raise ValueError("the file ends inside the .npy header")
    return data


def npz_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> ArrayHeader:
    """The shape and dtype of one `.npy` member of an .npz, read from its header
    alone (a few hundred bytes decompressed), and checked against the zip's
    declared size. Raises ValueError for a header that is not numpy's."""
    with archive.open(info) as stream:
        version = np.lib.format.read_magic(stream)
        if version not in ((1, 0), (2, 0), (3, 0)):
            raise ValueError(f"it is in .npy format {version[0]}.{version[1]}")
        width = "<H" if version == (1, 0) else "<I"
        length_bytes = _read_exact(stream, struct.calcsize(width))
        (length,) = struct.unpack(width, length_bytes)
        if length > MAX_NPY_HEADER:
            raise ValueError(
                f"its .npy header claims {length:,} bytes; numpy reads at most "
                f"{MAX_NPY_HEADER:,}"
            )
        text = _read_exact(stream, length)
    read = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0
    )
    shape, _, dtype = read(io.BytesIO(length_bytes + text))
    if any(d < 0 for d in shape):
        raise ValueError(f"its header holds a negative size, {shape}")
    header = ArrayHeader(tuple(int(d) for d in shape), np.dtype(dtype))
    if not header.dtype.hasobject:
        offset = np.lib.format.MAGIC_LEN + len(length_bytes) + length
        if info.file_size != offset + header.nbytes:
            raise ValueError(
                f"the zip declares {info.file_size:,} bytes, but its header "
                f"describes {offset + header.nbytes:,} (shape {header.shape}, "
                f"dtype {header.dtype}): the file is damaged, or not numpy's"
            )
    return header


def npz_array(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, header: ArrayHeader
) -> npt.NDArray[np.generic]:
    """Read one `.npy` member whose header `npz_header` has checked."""
    with archive.open(info) as stream:
        array: npt.NDArray[np.generic] = np.lib.format.read_array(
            stream, allow_pickle=False
        )
    if array.shape != header.shape or array.dtype != header.dtype:
        raise ValueError("it changed while being read")
    return array


def read_npz(
    recipe: Recipe, path: Path, model_input: ModelInput | None = None
) -> Dataset:
    """Read a recipe's `.npz` file (never unpickling anything) and check it:
    its headers before any array is read, then the arrays' values."""
    member = ""
    try:
        problem = _not_npz(path)
        if problem:
            raise BuildError(problem)
        with open_binary(path) as f, zipfile.ZipFile(f) as archive:
            infos = {
                info.filename.removesuffix(".npy"): info
                for info in archive.infolist()
                if not info.is_dir()
            }
            missing = [k for k in _KEYS if k not in infos]
            if missing:
                raise BuildError(
                    f"{path}: not a {recipe.title} file in Keras' layout: "
                    f"missing arrays {', '.join(missing)} "
                    f"(it has: {_names(list(infos))})"
                )
            headers = {}
            for key in _KEYS:
                member = infos[key].filename
                headers[key] = npz_header(archive, infos[key])
            _raise(recipe, str(path), check_layout(recipe, headers, model_input))
            check_memory(str(path), headers)
            arrays = {}
            for key in _KEYS:
                member = infos[key].filename
                arrays[key] = npz_array(archive, infos[key], headers[key])
    except BuildError:
        raise
    except (
        OSError,
        ValueError,
        EOFError,
        zipfile.BadZipFile,
        zlib.error,
        NotImplementedError,  # a compression zipfile does not know
        RuntimeError,  # an encrypted member
    ) as exc:
        raise BuildError(
            f"{path}: cannot read as an .npz file: {member + ': ' if member else ''}"
            f"{exc}"
        ) from exc
    _raise(recipe, str(path), check_values(recipe, arrays, model_input))
    return Dataset.of(arrays, str(path))


def _names(names: list[str]) -> str:
    shortened = [n if len(n) <= 40 else n[:40] + "..." for n in names]
    return some_of(shortened, limit=8) if names else "none"


# --- reading: Keras' IDX folder ---------------------------------------------------


def _idx_header(stream: Any, path: Path, rank: int) -> ArrayHeader:
    head = stream.read(4 + 4 * rank)
    if len(head) < 4 + 4 * rank or head[:3] != b"\x00\x00\x08" or head[3] != rank:
        raise BuildError(
            f"{path}: not an IDX file of unsigned bytes with {rank} dimensions"
        )
    dims = tuple(
        int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank)
    )
    return ArrayHeader(dims, np.dtype(np.uint8))


def read_idx(
    recipe: Recipe, folder: Path, model_input: ModelInput | None = None
) -> Dataset:
    """Read Keras' folder of four gzip IDX files and check them: the headers
    first, then the data, reading no more than the headers declare."""
    import gzip

    headers: dict[str, ArrayHeader] = {}
    arrays: dict[str, npt.NDArray[np.generic]] = {}
    for reading in (False, True):
        for key, name in IDX_FILES.items():
            path = folder / name
            try:
                with open_binary(path) as raw_file, gzip.open(raw_file) as f:
                    header = _idx_header(f, path, 3 if key.startswith("x") else 1)
                    if not reading:
                        headers[key] = header
                        continue
                    raw = f.read(header.nbytes + 1)
            except (OSError, EOFError, zlib.error) as exc:
                raise BuildError(f"{path}: cannot read: {exc}") from exc
            if len(raw) > header.nbytes:
                raise BuildError(
                    f"{path}: holds more data than its header's shape {header.shape}"
                )
            if len(raw) < header.nbytes:
                raise BuildError(
                    f"{path}: holds {len(raw)} bytes of data, not {header.shape}"
                )
            arrays[key] = np.frombuffer(raw, np.uint8).reshape(header.shape)
        if not reading:
            _raise(recipe, str(folder), check_layout(recipe, headers, model_input))
            check_memory(str(folder), headers)
    _raise(recipe, str(folder), check_values(recipe, arrays, model_input))
    return Dataset.of(arrays, str(folder))


# --- checking -------------------------------------------------------------------


def check_arrays(
    recipe: Recipe,
    arrays: Mapping[str, npt.NDArray[np.generic]],
    source: str,
    model_input: ModelInput | None = None,
) -> Dataset:
    """Check content, not file hashes: keys, shapes, dtypes, then values."""
    headers = {k: ArrayHeader(tuple(arrays[k].shape), arrays[k].dtype) for k in _KEYS}
    _raise(recipe, source, check_layout(recipe, headers, model_input))
    _raise(recipe, source, check_values(recipe, arrays, model_input))
    return Dataset.of(arrays, source)


def _raise(recipe: Recipe, source: str, problems: list[str]) -> None:
    if problems:
        raise BuildError(
            f"{source}: not usable as {recipe.title} data:\n  - "
            + "\n  - ".join(problems)
        )


def _is_number(dtype: np.dtype[Any]) -> bool:
    return bool(
        dtype.names is None
        and not dtype.hasobject
        and dtype.kind in "iuf"
        and dtype.shape == ()
    )


def check_layout(
    recipe: Recipe,
    headers: Mapping[str, ArrayHeader],
    model_input: ModelInput | None = None,
) -> list[str]:
    """What is wrong with the arrays' shapes and dtypes, known from their
    headers: nothing needs to be read to check these."""
    problems = []
    for split in ("train", "test"):
        x, y = headers[f"x_{split}"], headers[f"y_{split}"]
        for key, header in ((f"x_{split}", x), (f"y_{split}", y)):
            if header.dtype.hasobject:
                problems.append(
                    f"{key} holds Python objects (dtype {header.dtype}), which "
                    "l2compile never unpickles"
                )
        if recipe.image_shape is None:
            if x.dtype.hasobject:
                pass
            elif not _is_number(x.dtype):
                problems.append(f"x_{split} has dtype {x.dtype}; expected numbers")
            elif model_input and model_input.ids and x.dtype.kind == "f":
                problems.append(
                    f"x_{split} has dtype {x.dtype}; the model's embedding looks "
                    "up integer ids"
                )
            if len(x.shape) < 2:
                problems.append(f"x_{split} has shape {x.shape}; expected (N, ...)")
            elif model_input and math.prod(x.shape[1:]) != math.prod(model_input.shape):
                problems.append(
                    f"x_{split}: each sample has shape {x.shape[1:]}, which does not "
                    f"fit input.shape {list(model_input.shape)} "
                    f"({math.prod(x.shape[1:])} values, not "
                    f"{math.prod(model_input.shape)})"
                )
        else:
            if x.dtype != np.uint8 and not x.dtype.hasobject:
                problems.append(f"x_{split} has dtype {x.dtype}; expected uint8 pixels")
            if x.shape[1:] != recipe.image_shape:
                want = ", ".join(str(d) for d in recipe.image_shape)
                problems.append(f"x_{split} has shape {x.shape}; expected (N, {want})")
        task = labels_task(recipe, model_input)
        bools = task.bool_labels and y.dtype.kind == "b"
        if not _is_number(y.dtype) and not y.dtype.hasobject and not bools:
            problems.append(
                f"y_{split} has dtype {y.dtype}; expected {task.labels_text}"
            )
        rows = x.shape[0] if x.shape else (y.shape[0] if y.shape else 0)
        problems += task.check_label_header(f"y_{split}", y.shape, rows)
        if x.shape and x.shape[0] == 0:
            problems.append(f"x_{split} is empty")
    train, test = headers["x_train"].shape, headers["x_test"].shape
    if (
        recipe.image_shape is None
        and model_input is None
        and len(train) >= 2
        and len(test) >= 2
        and math.prod(train[1:]) != math.prod(test[1:])
    ):
        problems.append(
            f"x_test's samples have shape {test[1:]}, x_train's {train[1:]}: "
            "they must hold as many values"
        )
    return problems


def check_values(
    recipe: Recipe,
    arrays: Mapping[str, npt.NDArray[np.generic]],
    model_input: ModelInput | None = None,
) -> list[str]:
    """What is wrong with the arrays' values: numbers that are not finite,
    labels outside the classes, integers the preprocessing cannot feed."""
    problems: list[str] = []
    ids = model_input.ids if model_input else None
    for split in ("train", "test"):
        xk, yk = f"x_{split}", f"y_{split}"
        x, y = np.asarray(arrays[xk]), np.asarray(arrays[yk])
        if x.dtype.kind == "f":
            problems += not_finite(xk, x)
        elif x.dtype.kind in "iu" and ids is not None:
            low, high = int(x.min()), int(x.max())
            if low < 0 or high >= ids:
                _, at = _count(x, lambda a: (a < 0) | (a >= ids))
                problems.append(
                    f"{xk} holds ids from {low} to {high}, the first outside 0 to "
                    f"{ids - 1} at {_where(xk, at)}; the model's embedding looks up "
                    f"ids 0 to {ids - 1} (input_dim {ids})"
                )
        elif x.dtype.kind in "iu" and x.dtype != np.uint8:
            low, high = int(x.min()), int(x.max())
            if max(-low, high) > FLOAT32_EXACT:
                _, at = _count(x, lambda a: np.abs(a) > FLOAT32_EXACT)
                problems.append(
                    f"{xk} holds integers from {low} to {high}, the first beyond "
                    f"{FLOAT32_EXACT} in size at {_where(xk, at)}; integers other than "
                    "uint8 pixels are fed unscaled, as float32, which holds them "
                    f"exactly only up to {FLOAT32_EXACT}: scale the data, or save "
                    "8-bit pixels as uint8"
                )
        problems += labels_task(recipe, model_input).check_label_values(yk, y)
    return problems


def labels_task(recipe: Recipe, model_input: ModelInput | None) -> Task:
    """The task the labels are checked for: the model's, else the recipe's
    classification."""
    if model_input is not None and model_input.task is not None:
        return model_input.task
    assert recipe.num_classes is not None  # a recipe without classes has a task
    return Classification(
        loss_name="sparse_categorical_crossentropy",
        metric_names=("accuracy",),
        outputs=recipe.num_classes,
        names=recipe.labels,
    )


def check_validation_share(
    validation: float | None, samples: int, source_file: str
) -> None:
    """A held-out share must hold some samples and leave some to train on (the
    generated validation_split holds out round(samples * share))."""
    if validation is None:
        return
    held = round(samples * validation)
    if 0 < held < samples:
        return
    raise BuildError(
        f"train.validation (in {source_file}): {validation:g} of the "
        f"{samples:,} training "
        f"samples is {held:,}, which leaves "
        + ("nothing to validate on" if held == 0 else "nothing to train on")
        + "; use a larger share, more data, or validation: test"
    )
