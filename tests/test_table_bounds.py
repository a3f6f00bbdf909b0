"""The csv recipe's reader, bounded: the header's columns, a row's characters,
and what a CSV path may name (issue 27's adversarial review).

Each test failed before its fix; none waits long on a bug's return: a FIFO is
written to by a rescue thread, and /dev/zero is read in a child process
whose memory is capped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from l2compile import datasets
from l2compile.errors import BuildError
from l2compile.recipes import ModelInput
from l2compile.sources import source_for
from l2compile.tables import MAX_COLUMNS, MAX_ROW_CHARS, read_csv
from l2compile.tasks import Binary

BINARY = Binary("binary_crossentropy", ("accuracy",), 1, ("0", "1"))


def _csv(folder: Path, text: str, name: str = "d.csv") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


def _read(
    path: Path, width: int, features: tuple[str, ...] | None = None
) -> datasets.Dataset:
    recipe = source_for(
        "csv", None, data=str(path), label=("y",), features=features, test_split=0.5
    )
    model_input = ModelInput((width,), task=BINARY)
    return read_csv(recipe, path, None, seed=0, model_input=model_input)


def _refused(
    path: Path, width: int = 1, features: tuple[str, ...] | None = None
) -> str:
    with pytest.raises(BuildError) as err:
        _read(path, width, features)
    return str(err.value)


def _wide(folder: Path, columns: int, rows: list[str]) -> Path:
    """A table of `columns` columns, c0, c1, ... and the label y last; each
    row's features are `rows[i]` repeated, its label i % 2."""
    header = [f"c{k}" for k in range(columns - 1)] + ["y"]
    lines = [",".join(header)]
    lines += [
        ",".join([cell] * (columns - 1) + [str(i % 2)]) for i, cell in enumerate(rows)
    ]
    return _csv(folder, "\n".join(lines) + "\n")


# --- columns (item 3) -----------------------------------------------------------------


@pytest.mark.unit
def test_a_header_over_the_column_limit_is_refused(tmp_path: Path) -> None:
    path = _wide(tmp_path, MAX_COLUMNS + 1, ["1", "2"])
    assert _refused(path, features=("c1",)) == (
        f"{path}: line 1: the header has 65,537 columns; a table has at most 65,536"
    )


@pytest.mark.unit
def test_a_table_at_the_column_limit_is_read(tmp_path: Path) -> None:
    # Before: 42 s here, as each feature's place was found by scanning the header.
    path = _wide(tmp_path, MAX_COLUMNS, ["1", "2", "3", "4"])
    data = _read(path, MAX_COLUMNS - 1)
    assert len(data.columns) == MAX_COLUMNS - 1
    assert data.columns[-1].name == f"c{MAX_COLUMNS - 2}"
    assert data.columns[-1].vocabulary is None
    both = np.concatenate([data.x_train, data.x_test])
    assert sorted(both[:, -1].tolist()) == [1, 2, 3, 4]
    assert (both == both[:, :1]).all()


@pytest.mark.unit
def test_many_text_columns_turn_text_in_one_row(tmp_path: Path) -> None:
    # Every column leaves the numeric ones at the first row together: before,
    # each was looked for in a list of the others.
    columns = 20_000
    path = _wide(tmp_path, columns, ["a", "b", "c", "d"])
    data = _read(path, 3 * (columns - 1))
    (vocabulary,) = {column.vocabulary for column in data.columns}
    assert vocabulary is not None and len(vocabulary) == 2
    assert sorted(data.x_train[:, 0].tolist()) == [1, 2]
    assert (data.x_train == data.x_train[:, :1]).all()
    assert not data.x_test.any()  # values training never saw: id 0


class _Counted(str):
    """A column name that counts the comparisons made with it."""

    compared = 0

    def __eq__(self, other: object) -> bool:
        type(self).compared += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


@pytest.mark.unit
def test_each_named_column_is_found_without_scanning_the_header(
    tmp_path: Path,
) -> None:
    # Before: 4,000,000 comparisons (each name against the names before it,
    # twice); now a lookup or two per name, however wide the table.
    columns = 2_000
    path = _wide(tmp_path, columns, ["1", "2"])
    names = tuple(_Counted(f"c{k}") for k in reversed(range(columns - 1)))
    _Counted.compared = 0
    data = _read(path, columns - 1, features=names)
    assert _Counted.compared <= 2 * len(names)
    assert data.columns[0].name == f"c{columns - 2}"
    assert data.columns[0].vocabulary is None


# --- header names (item 11a) ----------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("x,,y\n1,2,0\n3,4,1\n", 2),
        ("x, ,y\n1,2,0\n3,4,1\n", 2),
        ("x,y,\n1,0,\n3,1,\n", 3),  # a trailing comma
        ("\n,,y\n1,2,0\n3,4,1\n", 1),  # on line 2, and empty twice
    ],
)
def test_an_empty_header_cell_is_refused(
    tmp_path: Path, text: str, column: int
) -> None:
    path = _csv(tmp_path, text)
    line = 2 if text.startswith("\n") else 1
    assert _refused(path, width=2) == (
        f"{path}: line {line}, column {column}: the header cell is empty; every "
        "column needs a name"
    )


# --- rows and lines (item 3) ----------------------------------------------------------


@pytest.mark.unit
def test_a_line_without_end_is_refused_unread(tmp_path: Path) -> None:
    # A file with no newline: before, its one line was read whole.
    path = tmp_path / "d.csv"
    with path.open("wb") as f:
        f.truncate(4 * MAX_ROW_CHARS)  # zeros, sparse where the disk allows
    assert _refused(path) == (
        f"{path}: line 1: the row is longer than 8,388,608 characters; a row has "
        "at most 8,388,608"
    )


@pytest.mark.unit
def test_a_row_over_many_lines_is_bounded_in_all(tmp_path: Path) -> None:
    # Quoted fields of 120,002 characters over two lines each, under the csv
    # module's field limit: only the row's bound refuses them.
    field = '"' + "a" * 60_000 + "\n" + "a" * 60_000 + '"'
    count = MAX_ROW_CHARS // len(field) + 1
    path = _csv(tmp_path, "x,y\n1,0\n" + ",".join([field] * count) + "\n")
    assert _refused(path) == (
        f"{path}: line 3: the row is longer than 8,388,608 characters; a row has "
        "at most 8,388,608"
    )


@pytest.mark.unit
def test_a_long_line_that_is_not_utf8_is_found_in_pieces(tmp_path: Path) -> None:
    # The line is found again a piece at a time; a piece may end inside a
    # character, which is no error.
    path = tmp_path / "d.csv"
    long = "12," + "é" * 600_000
    path.write_bytes(f"x,y\n{long}\n".encode() + b"1,\xff\n")
    assert _refused(path) == f"{path}: line 3 is not UTF-8 text (byte 0xff)"
    path.write_bytes(b"x,y\n1,0\n2,\xc3")  # a character cut at the end
    assert _refused(path) == f"{path}: line 3 is not UTF-8 text (byte 0xc3)"


# --- what the path names (item 11b) ---------------------------------------------------


@pytest.mark.unit
def test_a_symlink_loop_is_named(tmp_path: Path) -> None:
    (tmp_path / "a.csv").symlink_to(tmp_path / "b.csv")
    (tmp_path / "b.csv").symlink_to(tmp_path / "a.csv")
    path = tmp_path / "a.csv"
    assert _refused(path) == (
        f"{path}: is a symbolic link loop (ELOOP: too many levels of symbolic links)"
    )


@pytest.mark.unit
def test_a_symlink_loop_given_as_data_is_named(tmp_path: Path) -> None:
    # Before: the check of --data said "no such file" of a loop.
    (tmp_path / "a.csv").symlink_to(tmp_path / "b.csv")
    (tmp_path / "b.csv").symlink_to(tmp_path / "a.csv")
    recipe = source_for("csv", None, label=("y",), test_split=0.5)
    with pytest.raises(BuildError) as err:
        datasets.load_dataset(
            recipe, tmp_path / "a.csv", model_input=ModelInput((1,), task=BINARY)
        )
    assert str(err.value) == (
        f"--data {tmp_path / 'a.csv'}: is a symbolic link loop (ELOOP: too many "
        "levels of symbolic links)"
    )


@pytest.mark.unit
def test_a_missing_file_and_a_folder(tmp_path: Path) -> None:
    assert _refused(tmp_path / "none.csv") == f"{tmp_path / 'none.csv'}: no such file"
    folder = tmp_path / "d.csv"
    folder.mkdir()
    assert _refused(folder) == f"{folder}: is a folder, not a CSV file"


@pytest.mark.unit
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "d.csv"
    os.mkfifo(fifo)
    done, rescued = threading.Event(), threading.Event()

    def rescue() -> None:  # ends a hung open with EOF, so the test cannot hang
        if not done.wait(60):
            rescued.set()
            with open(fifo, "wb"):
                pass

    threading.Thread(target=rescue, daemon=True).start()
    try:
        message = _refused(fifo)
    finally:
        done.set()
    assert not rescued.is_set(), "the reader waited on the FIFO"
    assert message == f"{fifo}: is a FIFO, not a CSV file"


@pytest.mark.unit
def test_a_character_device_is_refused_unread() -> None:
    assert _refused(Path("/dev/null")) == (
        "/dev/null: is a character device, not a CSV file"
    )


_DEV_ZERO = textwrap.dedent(
    """
    import resource
    from pathlib import Path
    from l2compile.errors import BuildError
    from l2compile.recipes import ModelInput
    from l2compile.sources import source_for
    from l2compile.tables import read_csv
    from l2compile.tasks import Regression

    # A reader that never stops fails for memory in a second, not the machine.
    pages = int(open("/proc/self/statm").read().split()[0])
    cap = pages * resource.getpagesize() + (1 << 30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    recipe = source_for("csv", None, data="/dev/zero", label=("y",), test_split=0.5)
    task = ModelInput((1,), task=Regression("mse", ("mae",), 1, ("y",)))
    try:
        read_csv(recipe, Path("/dev/zero"), None, seed=0, model_input=task)
    except BuildError as exc:
        print(exc)
    """
)


@pytest.mark.build
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="Linux only")
def test_dev_zero_is_refused_unread() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _DEV_ZERO],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "/dev/zero: is a character device, not a CSV file\n"
