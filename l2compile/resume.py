"""Training state saved at every epoch's end, so that an interrupted build can
continue (`l2compile build --resume`) and end exactly where an uninterrupted
one would.

The state lives in the build's work folder, under `resume/`:

- `epoch-NNNN.npz`: every variable of the model (weights, and the dropout
  layers' random-seed state) and of the optimizer (its step count and slots),
  in the order `model.variables + model.optimizer.variables`;
- `state.json`: which epochs are finished, what they logged, the L2 penalty
  at each epoch's end, the training time so far, and a key of what was being
  built (the generated code, the data, the epochs, the library versions).

Each file is written beside its name, flushed to the disk and renamed into
place, `state.json` after its `.npz`, and the previous epoch's `.npz` is removed
only then: a build killed at any point, or a machine that loses power, leaves
the last finished epoch's state readable. The
generated `train()` orders each epoch's batches by the seed and the epoch
alone, so the epochs that follow a restore see the batches they would have.

Reading trusts nothing: `read` checks every field of `state.json` (bounded to
MAX_STATE_BYTES) before any is used, `restore` checks every array's shape and
dtype from its `.npy` header before reading it, and neither follows a link.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import math
import os
import re
import reprlib
import shutil
import stat
import time
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from l2compile import __version__
from l2compile.datasets import ArrayHeader, Dataset, npz_array, npz_header
from l2compile.errors import BuildError
from l2compile.files import open_regular, read_bounded

FOLDER = "resume"
STATE = "state.json"
FORMAT = 1  #: the layout of `state.json`; a state of another layout is not resumed
#: A state.json larger than this is refused unread; a real one holds a few
#: kilobytes (the variables' names, and a few numbers per epoch).
MAX_STATE_BYTES = 16 * 2**20


class UnreadableState(BuildError):
    """A saved state exists but cannot be read, or is of another format."""


@dataclass
class Saved:
    """The state of the last finished epoch, as read from `state.json`."""

    epoch: int  #: finished epochs: training continues with epoch `epoch + 1`
    epochs: int
    key: dict[str, Any]
    variables: list[str]  #: the saved variables' paths, in order
    file: str
    history: dict[str, list[float]] = field(default_factory=dict)
    penalties: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    #: keras.callbacks.EarlyStopping's state (wait, best, best_epoch,
    #: stopped_epoch); its best weights are saved after the variables.
    early_stopping: dict[str, Any] | None = None


def build_key(code: str, dataset: Dataset, epochs: int, backend: str) -> dict[str, Any]:
    """What must not change between a build and its resumption."""
    data = hashlib.sha256()
    for array in (dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test):
        data.update(f"{array.dtype.str}{array.shape}".encode())
        data.update(np.ascontiguousarray(array).data)
        if array.dtype.kind == "U":  # an image folder's paths: and their files
            for path in array:
                stat = os.stat(path)
                data.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    # The header comments name the spec's path and hash; a spec moved, run from
    # elsewhere or edited only in its comments makes the same code.
    body = "".join(
        line for line in code.splitlines(keepends=True) if not line.startswith("#")
    )
    return {
        "code_sha256": hashlib.sha256(body.encode("utf-8")).hexdigest(),
        "data_sha256": data.hexdigest(),
        "epochs": epochs,
        "backend": backend,
        "versions": {
            package: package_version(package)
            for package in ("tensorflow", "keras", "numpy", "jax", "torch")
        }
        | {"l2compile": __version__},
    }


_KEY_NAMES = {
    "code_sha256": "the generated code (the spec's model or training)",
    "data_sha256": "the data",
    "epochs": "the number of epochs",
    "backend": "the Keras backend (--backend)",
    "versions": "the versions of l2compile, TensorFlow, Keras, NumPy, JAX or PyTorch",
}


def differences(saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """What differs between a saved build's key and this build's, in words."""
    changed = []
    for name in sorted(set(saved) | set(wanted)):
        then, now = saved.get(name), wanted.get(name)
        if then == now:
            continue
        words = _KEY_NAMES.get(name, name)
        if name == "epochs":
            words += f" ({then} then, {now} now; --epochs {then} continues it)"
        elif name == "backend":
            words += f" ({then} then, {now} now; --backend {then} continues it)"
        elif name == "versions" and isinstance(then, dict) and isinstance(now, dict):
            words += (
                " ("
                + ", ".join(
                    f"{package} {then.get(package)} then, {now.get(package)} now"
                    for package in sorted(set(then) | set(now))
                    if then.get(package) != now.get(package)
                )
                + ")"
            )
        changed.append(words)
    return changed


def exists(work: Path) -> bool:
    """Whether `work` holds a saved state, without reading it: an `lstat` of
    its state.json, so a build without --resume never parses one."""
    try:
        os.lstat(work / FOLDER / STATE)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True  # there, but not to be looked at: read() says why
    return True


#: The fields of `state.json`, all required.
_FIELDS = (
    "format",
    "epoch",
    "epochs",
    "key",
    "variables",
    "file",
    "history",
    "penalties",
    "train_seconds",
    "early_stopping",
)
#: Fields a state may leave out (a build that does not stop early).
_OPTIONAL = frozenset({"early_stopping"})


class _Invalid(Exception):
    """A field of `state.json` that cannot be resumed, and why."""


def read(work: Path) -> Saved | None:
    """The saved state in `work`, or None where there is none.

    Raises UnreadableState for a state that exists but cannot be resumed.
    Every field is checked before any is used; links are never followed, and
    at most MAX_STATE_BYTES are read.
    """
    folder = work / FOLDER
    path = folder / STATE

    def unreadable(detail: str) -> UnreadableState:
        return UnreadableState(f"the saved state in {folder} cannot be read: {detail}")

    try:
        folder_mode = os.lstat(folder).st_mode
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise unreadable(f"{STATE}: {exc.strerror or exc}") from exc
    if stat.S_ISLNK(folder_mode):
        raise unreadable(f"{FOLDER} is a symbolic link, which is never followed")
    if stat.S_ISLNK(info.st_mode):
        raise unreadable(f"{STATE} is a symbolic link, which is never followed")
    if not stat.S_ISREG(info.st_mode):
        raise unreadable(f"{STATE} is not a regular file")
    if info.st_size > MAX_STATE_BYTES:
        raise unreadable(
            f"{STATE} is {info.st_size:,} bytes; a saved state is at most "
            f"{MAX_STATE_BYTES:,}"
        )
    try:
        raw = json.loads(read_bounded(path, MAX_STATE_BYTES, follow_links=False))
    except (OSError, ValueError, RecursionError) as exc:
        raise unreadable(f"{STATE}: {type(exc).__name__}: {exc}") from exc
    if isinstance(raw, dict) and (
        type(raw.get("format")) is not int or raw.get("format") != FORMAT
    ):
        raise UnreadableState(
            f"the saved state in {folder} is of another format "
            f"({reprlib.repr(raw.get('format'))}; this l2compile reads {FORMAT})"
        )
    try:
        saved = _parse(raw)
    except _Invalid as exc:
        raise unreadable(f"{STATE}: {exc}") from None
    try:
        info = os.lstat(folder / saved.file)
    except FileNotFoundError:
        raise unreadable(f"its {saved.file} is missing") from None
    except OSError as exc:
        raise unreadable(f"its {saved.file}: {exc.strerror or exc}") from exc
    if stat.S_ISLNK(info.st_mode):
        raise unreadable(
            f"its {saved.file} is a symbolic link, which is never followed"
        )
    if not stat.S_ISREG(info.st_mode):
        raise unreadable(f"its {saved.file} is not a regular file")
    return saved


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), reprlib.repr(value))


def _integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"{where} is {_kind(value)}, not a whole number")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(f"{where} is {_kind(value)}, not a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise _Invalid(f"{where} is {reprlib.repr(value)}, not a finite number")
    return number


def _per_epoch(value: Any, where: str, epoch: int) -> list[float]:
    """A list of one finite number per finished epoch."""
    if not isinstance(value, list):
        raise _Invalid(f"{where} is {_kind(value)}, not a list")
    if len(value) != epoch:
        raise _Invalid(
            f"{where} holds {_plural(len(value), 'value')} for "
            f"{_plural(epoch, 'finished epoch')}"
        )
    return [_number(x, f"{where}[{i}]") for i, x in enumerate(value)]


def _parse(raw: Any) -> Saved:
    """Check every field of a state.json's data; raise _Invalid at the first
    that cannot be resumed."""
    if not isinstance(raw, dict):
        raise _Invalid(f"holds {_kind(raw)}, not an object")
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise _Invalid(f"holds an unknown field, {reprlib.repr(unknown[0])}")
    missing = [name for name in _FIELDS if name not in raw and name not in _OPTIONAL]
    if missing:
        raise _Invalid(f"{missing[0]} is missing")
    epochs = _integer(raw["epochs"], "epochs")
    epoch = _integer(raw["epoch"], "epoch")
    if epochs < 1:
        raise _Invalid(f"epochs is {epochs}; a run has at least 1")
    if not 1 <= epoch <= epochs:
        raise _Invalid(f"epoch is {epoch}, outside the run's epochs 1 to {epochs}")
    key = raw["key"]
    if not isinstance(key, dict):
        raise _Invalid(f"key is {_kind(key)}, not an object")
    variables = raw["variables"]
    if not isinstance(variables, list):
        raise _Invalid(f"variables is {_kind(variables)}, not a list")
    for i, name in enumerate(variables):
        if not isinstance(name, str):
            raise _Invalid(f"variables[{i}] is {_kind(name)}, not a string")
    file = raw["file"]
    if not isinstance(file, str):
        raise _Invalid(f"file is {_kind(file)}, not a string")
    if os.path.isabs(file) or "/" in file or "\\" in file or file in ("", ".", ".."):
        raise _Invalid(f"file {reprlib.repr(file)} is not a file of the resume folder")
    if file != f"epoch-{epoch:04d}.npz":
        raise _Invalid(
            f"file is {reprlib.repr(file)}, but epoch {epoch}'s is "
            f"'epoch-{epoch:04d}.npz'"
        )
    history = raw["history"]
    if not isinstance(history, dict):
        raise _Invalid(f"history is {_kind(history)}, not an object")
    seconds = _number(raw["train_seconds"], "train_seconds")
    if seconds < 0:
        raise _Invalid(f"train_seconds is {seconds!r}, below 0")
    return Saved(
        epoch=epoch,
        epochs=epochs,
        key=dict(key),
        variables=list(variables),
        file=file,
        history={
            name: _per_epoch(values, f"history.{reprlib.repr(name)[1:-1]}", epoch)
            for name, values in history.items()
        },
        penalties=_per_epoch(raw["penalties"], "penalties", epoch),
        train_seconds=seconds,
        early_stopping=_stopping(raw.get("early_stopping"), epoch),
    )


def _stopping(raw: Any, epoch: int) -> dict[str, Any] | None:
    """EarlyStopping's saved state, every field checked."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) != set(_STOPPING):
        raise _Invalid(f"early_stopping does not hold exactly {', '.join(_STOPPING)}")
    state: dict[str, Any] = {}
    for name in ("wait", "best_epoch", "stopped_epoch"):
        value = _integer(raw[name], f"early_stopping.{name}")
        if not 0 <= value <= epoch:
            raise _Invalid(f"early_stopping.{name} is {value}, outside 0 to {epoch}")
        state[name] = value
    best = raw["best"]
    state["best"] = None if best is None else _number(best, "early_stopping.best")
    return state


#: What an EarlyStopping state holds.
_STOPPING = ("wait", "best", "best_epoch", "stopped_epoch")


#: How every refusal of `restore` ends.
_AGAIN = ". Build without --resume to start over"


def restore(model: Any, work: Path, saved: Saved) -> list[Any]:
    """Put the model's and the optimizer's variables back as they were at the
    end of epoch `saved.epoch`, and return early stopping's best weights where
    they were saved. Call it in the distribution strategy's scope, if the
    model has one.

    The `.npz` is read without following a link, and every array's shape and
    dtype are checked from its header before any array is read.
    """
    model.optimizer.build(model.trainable_variables)  # creates its slots
    variables = list(model.variables) + list(model.optimizer.variables)
    paths = [variable_name(v) for v in variables]
    best = len(saved.variables) > len(paths)  # early stopping's best weights
    targets = variables + (list(model.weights) if best else [])
    paths += [_BEST + variable_name(w) for w in model.weights] if best else []
    _check_names(paths, saved, work)
    path = work / FOLDER / saved.file
    _check_regular(path)
    values = _read_values(path, paths, targets)
    for name, value in zip(paths, values, strict=True):
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise BuildError(
                f"--resume: {path}: {name} holds values that are not finite; a "
                f"finished epoch never saves those{_AGAIN}"
            )
    for variable, value in zip(variables, values[: len(variables)], strict=True):
        variable.assign(value)
    return list(values[len(variables) :])


#: What early stopping's best weights are saved as, before their paths.
_BEST = "early_stopping/best/"


def _check_names(paths: list[str], saved: Saved, work: Path) -> None:
    """Refuse a state whose variables are not the model's, in the same order."""
    if paths == saved.variables:
        return
    pairs = zip(paths, saved.variables, strict=False)
    at = next(
        (i for i, (a, b) in enumerate(pairs) if a != b),
        min(len(paths), len(saved.variables)),
    )
    theirs = saved.variables[at] if at < len(saved.variables) else "nothing"
    ours = paths[at] if at < len(paths) else "nothing"
    raise BuildError(
        f"--resume: the state saved in {work / FOLDER} does not fit this "
        f"model: its variable {at + 1} is {theirs}, the model's is {ours}{_AGAIN}"
    )


def _check_regular(path: Path) -> None:
    """Refuse a saved `.npz` that is a link or not a regular file."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise BuildError(
            f"--resume: {path} cannot be read ({type(exc).__name__}: {exc}){_AGAIN}"
        ) from exc
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        what = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
        raise BuildError(f"--resume: {path} is {what}, which is never read{_AGAIN}")


def _read_values(
    path: Path, paths: list[str], variables: list[Any]
) -> list[npt.NDArray[np.generic]]:
    """The saved value of each variable, every array's shape and dtype checked
    against the variable's from its header before any array is read."""
    try:
        with (
            os.fdopen(open_regular(path, follow_links=False), "rb") as f,
            zipfile.ZipFile(f) as archive,
        ):
            members = [
                _checked_member(archive, path, index, name, variable)
                for index, (name, variable) in enumerate(
                    zip(paths, variables, strict=True)
                )
            ]
            return [npz_array(archive, m, h) for m, h in members]
    except BuildError:
        raise
    except (
        OSError,
        ValueError,
        KeyError,
        EOFError,
        zipfile.BadZipFile,
        zlib.error,
        NotImplementedError,
        RuntimeError,
    ) as exc:
        raise BuildError(
            f"--resume: {path} cannot be read ({type(exc).__name__}: {exc}){_AGAIN}"
        ) from exc


def _checked_member(
    archive: zipfile.ZipFile, path: Path, index: int, name: str, variable: Any
) -> tuple[zipfile.ZipInfo, ArrayHeader]:
    """Variable `index`'s member of the archive and its `.npy` header, once
    the header's shape and dtype are the variable's."""
    if f"v{index}.npy" not in archive.NameToInfo:
        raise BuildError(
            f"--resume: {path} lacks v{index}.npy, the value of {name}{_AGAIN}"
        )
    member = archive.getinfo(f"v{index}.npy")
    header = npz_header(archive, member)
    shape = tuple(variable.shape)
    if header.shape != shape:
        raise BuildError(
            f"--resume: {name} was saved with shape {header.shape}, but "
            f"the model's is {shape}{_AGAIN}"
        )
    if header.dtype != np.dtype(variable.dtype):
        raise BuildError(
            f"--resume: {name} was saved as {header.dtype}, but the "
            f"model's is {np.dtype(variable.dtype)}{_AGAIN}"
        )
    return member, header


def continued(
    saved: Saved | None, history: dict[str, list[float]], seconds: float
) -> tuple[dict[str, list[float]], float]:
    """This run's history and training seconds, after the saved epochs' ones."""
    if saved is None:
        return history, seconds
    whole = {
        k: saved.history.get(k, []) + history.get(k, [])
        for k in {**saved.history, **history}
    }
    return whole, seconds + saved.train_seconds


def discard(work: Path) -> None:
    """Remove the saved state, once the build no longer needs it."""
    shutil.rmtree(work / FOLDER, ignore_errors=True)


def saver(
    keras: Any,
    work: Path,
    key: dict[str, Any],
    epochs: int,
    start: Saved | None,
    penalties: list[float],
    stopper: Any = None,
) -> Any:
    """A callback that saves the state at the end of every finished epoch.

    Give it after the callbacks that record `penalties`, watch for a
    diverging loss (an epoch whose loss is not finite is not saved) and stop
    early (`stopper`, whose state and best weights it saves too).
    """
    folder = work / FOLDER

    class SaveState(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.history = dict(start.history) if start else {}
            self.history = {k: list(v) for k, v in self.history.items()}
            self.seconds = start.train_seconds if start else 0.0
            self.began = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            logs = dict(logs or {})
            if not np.isfinite(float(logs.get("loss", 0.0))):
                return
            for name, value in logs.items():
                self.history.setdefault(name, []).append(float(value))
            folder.mkdir(exist_ok=True)
            variables = list(self.model.variables) + list(
                self.model.optimizer.variables
            )
            name = f"epoch-{epoch + 1:04d}.npz"
            names = [variable_name(v) for v in variables]
            values = [np.asarray(v) for v in variables]
            stopping = None
            if stopper is not None:
                stopping = {
                    "wait": int(stopper.wait),
                    "best": None if stopper.best is None else float(stopper.best),
                    "best_epoch": int(stopper.best_epoch),
                    "stopped_epoch": int(stopper.stopped_epoch),
                }
                if stopper.best_weights is not None:
                    names += [_BEST + variable_name(w) for w in self.model.weights]
                    values += [np.asarray(w) for w in stopper.best_weights]
            arrays: dict[str, Any] = {f"v{i}": v for i, v in enumerate(values)}
            with _durably(folder / name) as f:
                np.savez(f, **arrays)
            state = {
                "format": FORMAT,
                "epoch": epoch + 1,
                "epochs": epochs,
                "key": key,
                "variables": names,
                "file": name,
                "history": self.history,
                "penalties": list(penalties),
                "train_seconds": self.seconds + time.perf_counter() - self.began,
                **({"early_stopping": stopping} if stopper is not None else {}),
            }
            with _durably(folder / STATE) as f:
                f.write((json.dumps(state, indent=1) + "\n").encode("utf-8"))
            for old in folder.iterdir():  # earlier epochs', or an earlier build's
                if old.name != name and old.name != STATE:
                    old.unlink(missing_ok=True)

    return SaveState()


@contextlib.contextmanager
def _durably(path: Path) -> Iterator[BinaryIO]:
    """Write `path` through a temporary file beside it: flushed to the disk,
    then renamed into place, and the rename flushed too."""
    partial = path.with_name(f".{path.name}.tmp")
    try:
        with partial.open("wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def variable_name(variable: Any) -> str:
    """A variable's path without the counter Keras adds to names it makes up
    (`adam_1/iteration` is `adam/iteration`), so it is the same in every run."""
    return re.sub(r"^([^/]+?)_\d+/", r"\1/", str(variable.path))


def package_version(package: str) -> str | None:
    """The installed version of `package`, if it is installed."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
