"""The saved resume state is checked in full before any of it is used: a
damaged or tampered state.json or .npz is refused with a located message,
links are never followed, and reads are bounded. No training here."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from l2compile import resume
from l2compile.errors import BuildError

pytestmark = pytest.mark.unit

GOOD: dict[str, Any] = {
    "format": 1,
    "epoch": 3,
    "epochs": 5,
    "key": {"epochs": 5},
    "variables": ["m/dense/kernel", "adam/iteration"],
    "file": "epoch-0003.npz",
    "history": {"loss": [0.9, 0.5, 0.4], "val_accuracy": [0.5, 0.7, 0.8]},
    "penalties": [0.3, 0.2, 0.1],
    "train_seconds": 12.5,
}


def _saved(work: Path, state: dict[str, Any] | str = GOOD) -> Path:
    folder = work / "resume"
    folder.mkdir(parents=True, exist_ok=True)
    text = state if isinstance(state, str) else json.dumps(state)
    (folder / "state.json").write_text(text)
    np.savez(
        folder / "epoch-0003.npz",
        v0=np.ones((2, 2), np.float32),
        v1=np.array(30, np.int64),
    )
    return folder


def test_a_good_state_is_read(tmp_path: Path) -> None:
    _saved(tmp_path)
    saved = resume.read(tmp_path)
    assert saved is not None
    assert (saved.epoch, saved.epochs, saved.file) == (3, 5, "epoch-0003.npz")
    assert saved.history["loss"] == [0.9, 0.5, 0.4]
    assert saved.penalties == [0.3, 0.2, 0.1]


TAMPERED: list[tuple[str, dict[str, Any] | str, str]] = [
    (
        "truncated",
        json.dumps(GOOD)[:40],
        "state.json: JSONDecodeError: Unterminated string starting at: line 1 "
        "column 40 (char 39)",
    ),
    ("not an object", "[1, 2]", "state.json: holds a list, not an object"),
    (
        "unknown field",
        {**GOOD, "extra": 1},
        "state.json: holds an unknown field, 'extra'",
    ),
    (
        "missing field",
        {k: v for k, v in GOOD.items() if k != "penalties"},
        "state.json: penalties is missing",
    ),
    (
        "short history",
        {**GOOD, "history": {"loss": [0.9, 0.5], "val_accuracy": [0.5, 0.7, 0.8]}},
        "state.json: history.loss holds 2 values for 3 finished epochs",
    ),
    (
        "long history",
        {**GOOD, "history": {"loss": [0.9, 0.5, 0.4, 0.3]}},
        "state.json: history.loss holds 4 values for 3 finished epochs",
    ),
    (
        "penalties",
        {**GOOD, "penalties": [0.3]},
        "state.json: penalties holds 1 value for 3 finished epochs",
    ),
    (
        "epoch beyond the run",
        {**GOOD, "epoch": 6, "file": "epoch-0006.npz"},
        "state.json: epoch is 6, outside the run's epochs 1 to 5",
    ),
    (
        "epoch zero",
        {**GOOD, "epoch": 0, "file": "epoch-0000.npz"},
        "state.json: epoch is 0, outside the run's epochs 1 to 5",
    ),
    (
        "epochs zero",
        {**GOOD, "epochs": 0},
        "state.json: epochs is 0; a run has at least 1",
    ),
    (
        "epoch as text",
        {**GOOD, "epoch": "3"},
        "state.json: epoch is a string, not a whole number",
    ),
    (
        "epoch as a boolean",
        {**GOOD, "epoch": True},
        "state.json: epoch is a boolean, not a whole number",
    ),
    (
        "file of another epoch",
        {**GOOD, "file": "epoch-0002.npz"},
        "state.json: file is 'epoch-0002.npz', but epoch 3's is 'epoch-0003.npz'",
    ),
    (
        "file outside",
        {**GOOD, "file": "../epoch-0003.npz"},
        "state.json: file '../epoch-0003.npz' is not a file of the resume folder",
    ),
    (
        "absolute file",
        {**GOOD, "file": "/etc/passwd"},
        "state.json: file '/etc/passwd' is not a file of the resume folder",
    ),
    (
        "nan in the history",
        {**GOOD, "history": {"loss": [0.9, float("nan"), 0.4]}},
        "state.json: history.loss[1] is nan, not a finite number",
    ),
    (
        "infinite time",
        {**GOOD, "train_seconds": float("inf")},
        "state.json: train_seconds is inf, not a finite number",
    ),
    (
        "negative time",
        {**GOOD, "train_seconds": -1.0},
        "state.json: train_seconds is -1.0, below 0",
    ),
    ("key", {**GOOD, "key": [1]}, "state.json: key is a list, not an object"),
    (
        "format true",
        {**GOOD, "format": True},
        "__format__",
    ),
    (
        "variables",
        {**GOOD, "variables": ["a", 3]},
        "state.json: variables[1] is 3, not a string",
    ),
]


@pytest.mark.parametrize(
    ("case", "state", "said"), TAMPERED, ids=[c[0] for c in TAMPERED]
)
def test_a_tampered_state_is_refused_with_its_field(
    tmp_path: Path, case: str, state: dict[str, Any] | str, said: str
) -> None:
    folder = _saved(tmp_path, state)
    with pytest.raises(resume.UnreadableState) as err:
        resume.read(tmp_path)
    if said == "__format__":  # true is not the number 1, though Python says so
        assert str(err.value) == (
            f"the saved state in {folder} is of another format (True; this "
            "l2compile reads 1)"
        )
        return
    assert str(err.value) == f"the saved state in {folder} cannot be read: {said}"


def test_a_state_json_that_is_a_link_is_never_followed(tmp_path: Path) -> None:
    folder = _saved(tmp_path / "elsewhere")
    (tmp_path / "work" / "resume").mkdir(parents=True)
    (tmp_path / "work" / "resume" / "state.json").symlink_to(folder / "state.json")
    with pytest.raises(resume.UnreadableState) as err:
        resume.read(tmp_path / "work")
    assert str(err.value) == (
        f"the saved state in {tmp_path / 'work' / 'resume'} cannot be read: "
        "state.json is a symbolic link, which is never followed"
    )


def test_an_npz_that_is_a_link_is_never_followed(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    npz = folder / "epoch-0003.npz"
    npz.rename(tmp_path / "real.npz")
    npz.symlink_to(tmp_path / "real.npz")
    with pytest.raises(resume.UnreadableState) as err:
        resume.read(tmp_path)
    assert str(err.value) == (
        f"the saved state in {folder} cannot be read: its epoch-0003.npz is a "
        "symbolic link, which is never followed"
    )


def test_a_huge_state_json_is_refused_unread(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    with (folder / "state.json").open("r+b") as f:
        f.truncate(resume.MAX_STATE_BYTES + 1)  # sparse: nothing is written
    with pytest.raises(resume.UnreadableState) as err:
        resume.read(tmp_path)
    assert str(err.value) == (
        f"the saved state in {folder} cannot be read: state.json is 16,777,217 "
        "bytes; a saved state is at most 16,777,216"
    )


def test_a_state_json_that_is_not_a_file_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "resume"
    folder.mkdir()
    os.mkfifo(folder / "state.json")  # reading it would wait for ever
    with pytest.raises(resume.UnreadableState) as err:
        resume.read(tmp_path)
    assert str(err.value) == (
        f"the saved state in {folder} cannot be read: state.json is not a regular file"
    )


def test_exists_looks_without_reading(tmp_path: Path) -> None:
    assert not resume.exists(tmp_path)
    assert not resume.exists(tmp_path / "no-such-folder")
    (tmp_path / "resume").mkdir()
    assert not resume.exists(tmp_path)
    (tmp_path / "resume" / "state.json").write_text("{ not json")
    assert resume.exists(tmp_path)
    (tmp_path / "resume" / "state.json").unlink()
    (tmp_path / "resume" / "state.json").symlink_to(tmp_path / "nowhere")
    assert resume.exists(tmp_path)


# --- restore: the .npz ----------------------------------------------------------


class _Variable:
    def __init__(self, path: str, value: np.ndarray) -> None:
        self.path = path
        self.value = value
        self.shape = value.shape
        self.dtype = str(value.dtype)

    def assign(self, value: np.ndarray) -> None:
        self.value = np.asarray(value)


class _Optimizer:
    def __init__(self) -> None:
        self.variables = [_Variable("adam/iteration", np.array(0, np.int64))]

    def build(self, variables: list[_Variable]) -> None:
        pass


class _Model:
    def __init__(self, kernel: tuple[int, ...] = (2, 2)) -> None:
        self.variables = [_Variable("m/dense/kernel", np.zeros(kernel, np.float32))]
        self.trainable_variables = self.variables
        self.optimizer = _Optimizer()


def test_restore_puts_the_saved_values_back(tmp_path: Path) -> None:
    _saved(tmp_path)
    saved = resume.read(tmp_path)
    assert saved is not None
    model = _Model()
    resume.restore(model, tmp_path, saved)
    np.testing.assert_array_equal(model.variables[0].value, np.ones((2, 2)))
    assert int(model.optimizer.variables[0].value) == 30


def test_restore_checks_shapes_from_the_headers_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _saved(tmp_path)
    saved = resume.read(tmp_path)
    assert saved is not None

    def never(*args: object) -> np.ndarray:
        raise AssertionError("an array was read")

    monkeypatch.setattr(resume, "npz_array", never)
    with pytest.raises(BuildError) as err:
        resume.restore(_Model((3, 2)), tmp_path, saved)
    assert str(err.value) == (
        "--resume: m/dense/kernel was saved with shape (2, 2), but the model's is "
        "(3, 2). Build without --resume to start over"
    )


def test_restore_refuses_an_npz_that_became_a_link(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    saved = resume.read(tmp_path)
    assert saved is not None
    npz = folder / "epoch-0003.npz"
    npz.rename(tmp_path / "real.npz")
    npz.symlink_to(tmp_path / "real.npz")
    with pytest.raises(BuildError) as err:
        resume.restore(_Model(), tmp_path, saved)
    assert str(err.value) == (
        f"--resume: {npz} is a symbolic link, which is never read. Build without "
        "--resume to start over"
    )


def test_restore_refuses_a_saved_dtype_the_model_does_not_have(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    saved = resume.read(tmp_path)
    assert saved is not None
    np.savez(
        folder / "epoch-0003.npz",
        v0=np.ones((2, 2), np.float64),
        v1=np.array(30, np.int64),
    )
    with pytest.raises(BuildError) as err:
        resume.restore(_Model(), tmp_path, saved)
    assert str(err.value) == (
        "--resume: m/dense/kernel was saved as float64, but the model's is float32. "
        "Build without --resume to start over"
    )


def test_restore_names_a_missing_array(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    saved = resume.read(tmp_path)
    assert saved is not None
    np.savez(folder / "epoch-0003.npz", v0=np.ones((2, 2), np.float32))
    with pytest.raises(BuildError) as err:
        resume.restore(_Model(), tmp_path, saved)
    assert str(err.value) == (
        f"--resume: {folder / 'epoch-0003.npz'} lacks v1.npy, the value of "
        "adam/iteration. Build without --resume to start over"
    )


def test_restore_refuses_weights_that_are_not_finite(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    saved = resume.read(tmp_path)
    assert saved is not None
    kernel = np.ones((2, 2), np.float32)
    kernel[1, 0] = np.nan
    np.savez(folder / "epoch-0003.npz", v0=kernel, v1=np.array(30, np.int64))
    model = _Model()
    with pytest.raises(BuildError) as err:
        resume.restore(model, tmp_path, saved)
    assert str(err.value) == (
        f"--resume: {folder / 'epoch-0003.npz'}: m/dense/kernel holds values that "
        "are not finite; a finished epoch never saves those. Build without "
        "--resume to start over"
    )
    np.testing.assert_array_equal(model.variables[0].value, np.zeros((2, 2)))
