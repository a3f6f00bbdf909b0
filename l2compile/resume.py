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
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import time
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from l2compile import __version__
from l2compile.datasets import Dataset
from l2compile.errors import BuildError

FOLDER = "resume"
STATE = "state.json"
FORMAT = 1  #: the layout of `state.json`; a state of another layout is not resumed


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


def build_key(code: str, dataset: Dataset, epochs: int) -> dict[str, Any]:
    """What must not change between a build and its resumption."""
    data = hashlib.sha256()
    for array in (dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test):
        data.update(f"{array.dtype.str}{array.shape}".encode())
        data.update(np.ascontiguousarray(array).data)
    # The header comments name the spec's path and hash; a spec moved, run from
    # elsewhere or edited only in its comments makes the same code.
    body = "".join(
        line for line in code.splitlines(keepends=True) if not line.startswith("#")
    )
    return {
        "code_sha256": hashlib.sha256(body.encode("utf-8")).hexdigest(),
        "data_sha256": data.hexdigest(),
        "epochs": epochs,
        "versions": {
            package: package_version(package)
            for package in ("tensorflow", "keras", "numpy")
        }
        | {"l2compile": __version__},
    }


_KEY_NAMES = {
    "code_sha256": "the generated code (the spec's model or training)",
    "data_sha256": "the data",
    "epochs": "the number of epochs",
    "versions": "the versions of l2compile, TensorFlow, Keras or NumPy",
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


def read(work: Path) -> Saved | None:
    """The saved state in `work`, or None where there is none.

    Raises UnreadableState for a state that exists but cannot be resumed.
    """
    path = work / FOLDER / STATE
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("format") != FORMAT:
            raise UnreadableState(
                f"the saved state in {path.parent} is of another format "
                f"({raw.get('format')!r}; this l2compile reads {FORMAT})"
            )
        saved = Saved(
            epoch=int(raw["epoch"]),
            epochs=int(raw["epochs"]),
            key=dict(raw["key"]),
            variables=[str(v) for v in raw["variables"]],
            file=str(raw["file"]),
            history={k: [float(x) for x in v] for k, v in raw["history"].items()},
            penalties=[float(x) for x in raw["penalties"]],
            train_seconds=float(raw["train_seconds"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UnreadableState(
            f"the saved state in {path.parent} cannot be read: {path.name}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not (work / FOLDER / saved.file).is_file():
        raise UnreadableState(
            f"the saved state in {path.parent} cannot be read: its {saved.file} "
            "is missing"
        )
    return saved


def restore(model: Any, work: Path, saved: Saved) -> None:
    """Put the model's and the optimizer's variables back as they were at the
    end of epoch `saved.epoch`. Call it in the distribution strategy's scope,
    if the model has one."""
    model.optimizer.build(model.trainable_variables)  # creates its slots
    variables = list(model.variables) + list(model.optimizer.variables)
    paths = [variable_name(v) for v in variables]
    if paths != saved.variables:
        pairs = zip(paths, saved.variables, strict=False)
        at = next(
            (i for i, (a, b) in enumerate(pairs) if a != b),
            min(len(paths), len(saved.variables)),
        )
        theirs = saved.variables[at] if at < len(saved.variables) else "nothing"
        ours = paths[at] if at < len(paths) else "nothing"
        raise BuildError(
            f"--resume: the state saved in {work / FOLDER} does not fit this "
            f"model: its variable {at + 1} is {theirs}, the model's is {ours}. "
            "Build without --resume to start over"
        )
    path = work / FOLDER / saved.file
    try:
        with np.load(path, allow_pickle=False) as arrays:
            values = [arrays[f"v{index}"] for index in range(len(variables))]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise BuildError(
            f"--resume: {path} cannot be read ({type(exc).__name__}: {exc}). "
            "Build without --resume to start over"
        ) from exc
    for name, variable, value in zip(paths, variables, values, strict=True):
        if tuple(value.shape) != tuple(variable.shape):
            raise BuildError(
                f"--resume: {name} was saved with shape {tuple(value.shape)}, but "
                f"the model's is {tuple(variable.shape)}. Build without --resume "
                "to start over"
            )
        variable.assign(value)


def clear(work: Path, *, keep_state: bool) -> None:
    """Empty the work folder, keeping the saved state if asked to."""
    for child in work.iterdir():
        if keep_state and child.name == FOLDER:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


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
) -> Any:
    """A callback that saves the state at the end of every finished epoch.

    Give it after the callbacks that record `penalties` and watch for a
    diverging loss: an epoch whose loss is not finite is not saved.
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
            arrays: dict[str, Any] = {
                f"v{i}": np.asarray(v) for i, v in enumerate(variables)
            }
            with _durably(folder / name) as f:
                np.savez(f, **arrays)
            state = {
                "format": FORMAT,
                "epoch": epoch + 1,
                "epochs": epochs,
                "key": key,
                "variables": [variable_name(v) for v in variables],
                "file": name,
                "history": self.history,
                "penalties": list(penalties),
                "train_seconds": self.seconds + time.perf_counter() - self.began,
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
