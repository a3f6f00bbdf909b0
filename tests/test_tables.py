"""The csv recipe's reader: CSV files made here, what each becomes, and the
exact message each bad one gets (file, line and column named)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from l2compile import datasets
from l2compile.errors import BuildError
from l2compile.recipes import ModelInput
from l2compile.sources import source_for
from l2compile.sources.base import ColumnType, Missing
from l2compile.tables import read_csv
from l2compile.tasks import Binary, Classification, Multilabel, Regression, Task

pytestmark = pytest.mark.unit

SPECIES = Classification(
    "sparse_categorical_crossentropy", ("accuracy",), 3, ("a", "b", "c")
)
BINARY = Binary("binary_crossentropy", ("accuracy",), 1, ("0", "1"))
TAGS = Multilabel("binary_crossentropy", ("auc",), 2, ("t", "u"))
PRICE = Regression("mse", ("mae",), 1, ("p",))
PRICES = Regression("mse", ("mae",), 2, ("p", "q"))
DEFAULTS = Missing()  # numbers the median, text slot 0


def _csv(folder: Path, text: str, name: str = "d.csv") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


def _read(
    path: Path,
    task: Task,
    width: int,
    *,
    label: tuple[str, ...] = ("y",),
    features: tuple[str, ...] | None = None,
    test: Path | None = None,
    test_split: float | None = 0.5,
    seed: int = 0,
    missing: Missing = DEFAULTS,
    types: dict[str, str | tuple[str, str]] | None = None,
) -> datasets.Dataset:
    recipe = source_for(
        "csv",
        None,
        data=str(path),
        label=label,
        features=features,
        test_split=None if test else test_split,
        missing=missing,
        types=tuple(
            ColumnType(name, kind) if isinstance(kind, str) else ColumnType(name, *kind)
            for name, kind in (types or {}).items()
        ),
    )
    model_input = ModelInput((width,), task=task)
    return read_csv(recipe, path, test, seed=seed, model_input=model_input)


def _refused(path: Path, task: Task = SPECIES, width: int = 1, **kw: object) -> str:
    with pytest.raises(BuildError) as err:
        _read(path, task, width, **kw)  # type: ignore[arg-type]
    return str(err.value)


def _pair(folder: Path, train: str, test: str) -> tuple[Path, Path]:
    return _csv(folder, train, "train.csv"), _csv(folder, test, "test.csv")


# --- what a file becomes ------------------------------------------------------------


def test_train_and_test_files_give_numbers_ids_and_class_names(tmp_path: Path) -> None:
    train, test = _pair(
        tmp_path,
        "age, sex ,city,y\n1.5,m,Oslo,b\n2,f,Rome,a\n3, m ,Rome,c\n",
        "age,sex,city,y\n4,x,Oslo,a\n5e1,f,Paris,c\n",
    )
    data = _read(train, SPECIES, 1 + 3 + 3, test=test)
    assert data.x_train.dtype == np.float32 and data.x_train.shape == (3, 3)
    np.testing.assert_array_equal(data.x_train, [[1.5, 2, 1], [2, 1, 2], [3, 2, 2]])
    # An unseen sex and city are id 0, the out-of-vocabulary slot.
    np.testing.assert_array_equal(data.x_test, [[4, 0, 1], [50, 1, 0]])
    assert data.y_train.dtype == np.int64
    assert data.y_train.tolist() == [1, 0, 2]
    assert data.y_test.tolist() == [0, 2]
    assert data.classes == ("a", "b", "c")
    # A missing number would be the training median; a category, slot 0.
    assert data.columns == (
        datasets.Column("age", fill=2.0, policy="median"),
        datasets.Column("sex", ("f", "m"), policy="own_category"),
        datasets.Column("city", ("Oslo", "Rome"), policy="own_category"),
    )
    assert data.source == f"{train} and {test}"


def test_features_pick_and_order_the_columns(tmp_path: Path) -> None:
    path = _csv(tmp_path, "a,b,y,c\n1,2,0,x\n3,4,1,\n5,6,0,z\n7,8,1,w\n")
    # Column c is not read, so its missing value is no error.
    data = _read(path, BINARY, 2, features=("b", "a"))
    both = np.concatenate([data.x_train, data.x_test])
    assert sorted(both.tolist()) == [[2, 1], [4, 3], [6, 5], [8, 7]]
    assert [c.name for c in data.columns] == ["b", "a"]


def test_class_ids_as_numbers(tmp_path: Path) -> None:
    train, test = _pair(tmp_path, "x,y\n1,0\n2,2.0\n3,1\n", "x,y\n4,1e0\n")
    data = _read(train, SPECIES, 1, test=test)
    assert data.y_train.tolist() == [0, 2, 1]
    assert data.y_test.tolist() == [1]
    assert data.y_train.dtype == np.int64
    assert data.classes == ()


def test_binary_labels_as_numbers_or_as_two_names(tmp_path: Path) -> None:
    train, test = _pair(tmp_path, "x,y\n1,0\n2,1\n3,1.0\n", "x,y\n4,0\n")
    data = _read(train, BINARY, 1, test=test)
    assert data.y_train.tolist() == [0, 1, 1] and data.y_test.tolist() == [0]
    assert data.y_train.dtype == np.int64 and data.classes == ()

    train, test = _pair(tmp_path, "x,y\n1,M\n2,B\n3,M\n", "x,y\n4,B\n")
    data = _read(train, BINARY, 1, test=test)
    assert data.classes == ("B", "M")
    assert data.y_train.tolist() == [1, 0, 1] and data.y_test.tolist() == [0]


def test_multilabel_labels_are_float32_columns(tmp_path: Path) -> None:
    train, test = _pair(tmp_path, "x,t,u\n1,0,1\n2,1,1.0\n", "x,t,u\n3,0,0\n")
    data = _read(train, TAGS, 1, label=("t", "u"), test=test)
    assert data.y_train.dtype == np.float32
    np.testing.assert_array_equal(data.y_train, [[0, 1], [1, 1]])
    np.testing.assert_array_equal(data.y_test, [[0, 0]])
    assert [c.name for c in data.columns] == ["x"]


def test_regression_targets_one_column_or_several(tmp_path: Path) -> None:
    train, test = _pair(tmp_path, "x,p,q\n1,2.5,-1\n2,3,1e3\n", "x,p,q\n3,4,5\n")
    data = _read(train, PRICE, 2, label=("p",), test=test)
    assert data.y_train.dtype == np.float32 and data.y_train.shape == (2,)
    np.testing.assert_array_equal(data.y_train, [2.5, 3])
    np.testing.assert_array_equal(data.x_train, [[1, -1], [2, 1000]])
    data = _read(train, PRICES, 1, label=("p", "q"), test=test)
    np.testing.assert_array_equal(data.y_train, [[2.5, -1], [3, 1000]])
    assert data.y_test.shape == (1, 2)


def test_a_column_under_half_numbers_is_text_and_its_numbers_are_names(
    tmp_path: Path,
) -> None:
    train, test = _pair(
        tmp_path, "n,t,y\n1,1,a\n2,x,b\n3,y,c\n4,z,a\n", "n,t,y\n5,1,a\n"
    )
    data = _read(train, SPECIES, 1 + 5, test=test)
    # Column t: one number of four, so text, and "1" a category like the others.
    assert data.columns[1].vocabulary == ("1", "x", "y", "z")
    np.testing.assert_array_equal(data.x_train[:, 1], [1, 2, 3, 4])
    np.testing.assert_array_equal(data.x_test[:, 1], [1])


def test_quoted_fields_hold_commas_and_newlines(tmp_path: Path) -> None:
    train, test = _pair(
        tmp_path,
        'note,n,y\n"a, b",1,a\n"two\nlines",2,b\n"say ""hi""",3,c\n',
        'note,n,y\n"a, b",4,a\n',
    )
    data = _read(train, SPECIES, 1 + 4, test=test)
    assert data.columns[0].vocabulary == ("a, b", 'say "hi"', "two\nlines")
    np.testing.assert_array_equal(data.x_train[:, 0], [1, 3, 2])
    np.testing.assert_array_equal(data.x_test[:, 0], [1])


def test_a_bom_and_blank_lines_are_not_data(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffx,y\r\n1,0\r\n\r\n2,1\r\n3,0\r\n4,1\r\n".encode())
    data = _read(path, BINARY, 1)
    assert [c.name for c in data.columns] == ["x"]
    assert len(data.x_train) + len(data.x_test) == 4


# --- test_split -------------------------------------------------------------------


def _numbered(folder: Path, rows: int) -> Path:
    lines = "".join(f"{i},{i % 2}\n" for i in range(rows))
    return _csv(folder, "i,y\n" + lines, f"rows{rows}.csv")


def test_test_split_is_seeded_disjoint_and_in_file_order(tmp_path: Path) -> None:
    path = _numbered(tmp_path, 50)
    first = _read(path, BINARY, 1, test_split=0.2, seed=7)
    again = _read(path, BINARY, 1, test_split=0.2, seed=7)
    other = _read(path, BINARY, 1, test_split=0.2, seed=8)
    train, test = first.x_train[:, 0].tolist(), first.x_test[:, 0].tolist()
    assert again.x_train[:, 0].tolist() == train
    assert again.x_test[:, 0].tolist() == test
    assert other.x_test[:, 0].tolist() != test
    assert len(test) == 10 and not set(train) & set(test)
    assert sorted(train + test) == list(range(50))
    assert train == sorted(train) and test == sorted(test)
    # The documented rule, which the generated module repeats.
    order = np.random.default_rng(7).permutation(50)
    assert test == np.sort(order[:10]).tolist()
    assert first.y_test.tolist() == [int(i) % 2 for i in test]


def test_many_rows_match_a_plain_reading(tmp_path: Path) -> None:
    """More rows than a block, columns that turn out text after numbers: the
    streamed reader agrees with the rules applied to rows held in memory."""
    rng = np.random.default_rng(3)
    rows = 9_000
    numbers = rng.normal(size=(rows, 3)).round(4)
    late_text = [str(i) if i < 200 else f"w{i % 7}" for i in range(rows)]
    words = rng.choice(["red", "green", "blue"], size=rows)
    labels = rng.choice(["p", "q", "r"], size=rows)
    lines = ["a,b,late,c,colour,y"] + [
        f"{n[0]},{n[1]},{late},{n[2]},{w},{y}"
        for n, late, w, y in zip(numbers, late_text, words, labels, strict=True)
    ]
    path = _csv(tmp_path, "\n".join(lines) + "\n", "many.csv")
    held = round(rows * 0.25)
    order = np.random.default_rng(5).permutation(rows)
    test_rows, train_rows = np.sort(order[:held]), np.sort(order[held:])
    late_vocab = sorted({late_text[i] for i in train_rows})
    colours = sorted({str(words[i]) for i in train_rows})
    width = 3 + len(late_vocab) + 1 + len(colours) + 1
    data = _read(path, SPECIES, width, test_split=0.25, seed=5)

    def plain(i: int) -> list[float]:
        late = late_text[i]
        return [
            float(numbers[i, 0]),
            float(numbers[i, 1]),
            late_vocab.index(late) + 1 if late in late_vocab else 0,
            float(numbers[i, 2]),
            colours.index(str(words[i])) + 1,
        ]

    assert data.columns[2].vocabulary == tuple(late_vocab)
    np.testing.assert_array_equal(
        data.x_train, np.array([plain(i) for i in train_rows], np.float32)
    )
    np.testing.assert_array_equal(
        data.x_test, np.array([plain(i) for i in test_rows], np.float32)
    )
    classes = ["p", "q", "r"]
    assert data.y_test.tolist() == [classes.index(labels[i]) for i in test_rows]


# --- errors: the file's shape -----------------------------------------------------


def test_a_row_with_the_wrong_number_of_fields(tmp_path: Path) -> None:
    path = _csv(tmp_path, "a,b,c,y\n1,2,3,a\n1,2,3\n1,2,3,4,5\n")
    assert _refused(path) == (
        f"{path}: line 3 has 3 fields, but the header has 4 columns"
    )


def test_lines_count_quoted_newlines_and_blank_lines(tmp_path: Path) -> None:
    path = _csv(tmp_path, 'a,b,y\n1,"two\nlines",a\n\n2,x\n')
    assert _refused(path) == (
        f"{path}: line 5 has 2 fields, but the header has 3 columns"
    )
    # A row spanning lines is named by its first.
    path = _csv(tmp_path, 'a,b,y\n1,x,a\n,"two\nlines",b\n', "second.csv")
    assert _refused(path, missing=Missing(numeric="error")).startswith(
        f"{path}: missing values in 1 column:\n  - 'a': 1 row (line 3)\n"
    )


_FILL = (
    "train.missing says error for {}: fill those cells or remove those rows, or "
    "let the build fill them (train.missing: numbers median, mean or zero; text "
    "own_category or most_frequent)"
)
REFUSE = Missing(numeric="error", categorical="error")


@pytest.mark.parametrize("cell", ["", "  ", "NA", "n/a", "NaN", " null "])
def test_a_missing_value_is_refused_where_its_policy_is_error(
    tmp_path: Path, cell: str
) -> None:
    path = _csv(tmp_path, f"age,y\n1,a\n2,b\n{cell},a\n3,b\n")
    assert _refused(path, BINARY, missing=REFUSE, test_split=0.25) == (
        f"{path}: missing values in 1 column:\n  - 'age': 1 row (line 4)\n"
        + _FILL.format("this column")
    )
    # By default it is NaN, which the model fills with the training median.
    data = _read(path, BINARY, 1, test_split=0.25)
    both = np.concatenate([data.x_train, data.x_test])[:, 0]
    assert np.isnan(both).sum() == 1
    assert data.columns[0].fill == float(
        np.median(data.x_train[~np.isnan(data.x_train)])
    )


def test_every_column_with_missing_values_is_named_at_once(tmp_path: Path) -> None:
    """Not only the first missing cell: each column whose policy is error,
    in the order found, with how many rows miss it and its first three
    lines; each file apart. A row without a label is dropped, not refused."""
    train, test = _pair(
        tmp_path,
        "bill,flipper,island,note,y\n"
        "1,2,a,,x\nNA,3,b,,y\n4,NA,a,,x\n5,6,NA,,y\n7,8,b,,\n,,b,,x\nnull,1,a,,y\n",
        "bill,flipper,island,note,y\n1,2,a,,x\n1,2,N/A,,x\n",
    )
    assert _refused(
        train,
        width=3,
        features=("bill", "flipper", "island"),
        test=test,
        missing=REFUSE,
    ) == (
        f"{train}: missing values in 3 columns:\n"
        "  - 'bill': 3 rows (lines 3, 7, 8)\n"
        "  - 'flipper': 2 rows (lines 4, 7)\n"
        "  - 'island': 1 row (line 5)\n"
        f"{test}: missing values in 1 column:\n"
        "  - 'island': 1 row (line 3)\n" + _FILL.format("these columns")
    )
    # Only the columns whose own policy is error.
    one = Missing(columns=(("island", "error"),))
    assert _refused(
        train, width=3, features=("bill", "flipper", "island"), test=test, missing=one
    ).startswith(
        f"{train}: missing values in 1 column:\n  - 'island': 1 row (line 5)\n"
    )
    # More than three rows: the first three lines, and the rest counted.
    path = _csv(tmp_path, "a,y\n" + "NA,x\n" * 5 + "1,y\n", "many.csv")
    assert _refused(path, missing=REFUSE).startswith(
        f"{path}: missing values in 1 column:\n  - 'a': 5 rows (lines 2, 3, 4, ...)\n"
    )


def test_rows_without_a_label_are_dropped_and_reported(tmp_path: Path) -> None:
    train, test = _pair(
        tmp_path, "x,y\n1,a\n2,\n3,b\n4,NA\n", "x,y\n1,a\n2,NULL\n3,b\n"
    )
    data = _read(train, BINARY, 1, test=test)
    assert data.x_train[:, 0].tolist() == [1, 3]
    assert data.x_test[:, 0].tolist() == [1, 3]
    # split.json names the rows that were read: the others are not there.
    assert data.ids(False).tolist() == [0, 2] and data.ids(True).tolist() == [0, 2]
    assert data.warnings == (
        f"{train}: dropped 2 rows without a label in 'y' (lines 3, 5): a row "
        "needs its label to train or to be scored",
        f"{test}: dropped 1 row without a label in 'y' (line 3): a row needs "
        "its label to train or to be scored",
    )
    only = _csv(tmp_path, "x,y\n1,\n2,NA\n", "none.csv")
    assert _refused(only, BINARY, test=test) == f"{only}: no data row has a label"


def test_missing_values_become_nan_and_slot_zero_and_fills_follow_the_policy(
    tmp_path: Path,
) -> None:
    """Fills come from the training rows only: median, mean or zero for
    numbers, and for text the most frequent training value's id or slot 0;
    indicator marks the numeric columns whose training rows miss a value."""
    train, test = _pair(
        tmp_path,
        "a,b,c,t,y\n1,10,5,p,x\nNA,20,6,q,y\n3,,7,q,x\n10,40,8,,y\n",
        "a,b,c,t,y\n,1000,,,x\n100,2,NA,zz,y\n",
    )
    data = _read(train, BINARY, 6, test=test)
    np.testing.assert_array_equal(
        data.x_test, [[np.nan, 1000, np.nan, 0], [100, 2, np.nan, 0]]
    )
    assert data.x_train[:, 3].tolist() == [1, 2, 2, 0]
    assert [c.fill for c in data.columns] == [3.0, 20.0, 6.5, None]
    policy = Missing(
        numeric="mean",
        categorical="most_frequent",
        indicator=True,
        columns=(("c", "zero"),),
    )
    data = _read(train, BINARY, 8, test=test, missing=policy)
    assert [c.fill for c in data.columns] == [
        pytest.approx(14 / 3),
        pytest.approx(70 / 3),
        0.0,
        2.0,  # q, the commonest training value
    ]
    # c misses values only in the test file: no was-missing input.
    assert [c.indicator for c in data.columns] == [True, True, False, False]
    assert [c.policy for c in data.columns] == ["mean", "mean", "zero", "most_frequent"]
    # A policy of the wrong kind for its column is refused.
    wrong = Missing(columns=(("t", "median"),))
    assert _refused(train, BINARY, test=test, missing=wrong) == (
        f"{train}: train.missing.columns: 't' is a text column, which median "
        "cannot fill: own_category, most_frequent or error"
    )


def test_a_column_without_a_training_value_is_refused(tmp_path: Path) -> None:
    path = _csv(tmp_path, "a,b,y\n1,,x\n2,NA,y\n3,,x\n4,,y\n")
    assert _refused(path, BINARY) == (
        f"{path}: 1 feature column without a value in the training rows: 'b'; "
        "leave it out (train.columns: {b: ignore})"
    )


def test_a_non_number_in_a_numeric_column(tmp_path: Path) -> None:
    path = _csv(tmp_path, "age,y\n1,a\n2,b\nabc,c\n4,a\n")
    assert _refused(path) == (
        f"{path}: line 4, column 'age': 'abc' is not a number "
        "(the column's other values are numbers)"
    )


def test_half_numbers_make_a_numeric_column(tmp_path: Path) -> None:
    train, test = _pair(tmp_path, "age,y\n1,a\nx,b\n", "age,y\n3,a\n")
    assert _refused(train, test=test) == (
        f"{train}: line 3, column 'age': 'x' is not a number "
        "(the column's other values are numbers)"
    )


@pytest.mark.parametrize(
    ("a", "numeric"), [("1,2,3,x,y,z", True), ("1,2,w,x,y,z", False)]
)
def test_numbers_are_counted_across_rows_read_fast_and_slowly(
    tmp_path: Path, a: str, numeric: bool
) -> None:
    """Row 2's text in b sends that row down the slow path: a's number there
    still counts, and a's count holds when a's own text comes."""
    b = "1,t,u,v,w,q"
    rows = "".join(
        f"{x},{y},c\n" for x, y in zip(a.split(","), b.split(","), strict=True)
    )
    train, test = _pair(tmp_path, "a,b,y\n" + rows, "a,b,y\n1,t,c\n")
    if numeric:
        assert _refused(train, test=test) == (
            f"{train}: line 5, column 'a': 'x' is not a number "
            "(the column's other values are numbers)"
        )
        return
    one_class = Classification(
        "sparse_categorical_crossentropy", ("accuracy",), 1, ("c",)
    )
    data = _read(train, one_class, 7 + 7, test=test)
    assert data.columns[0].vocabulary == ("1", "2", "w", "x", "y", "z")
    assert data.columns[1].vocabulary == ("1", "q", "t", "u", "v", "w")


def test_a_non_number_in_a_test_row_of_a_numeric_column(tmp_path: Path) -> None:
    train, test = _pair(tmp_path, "age,y\n1,a\n2,b\n", "age,y\n3,a\ninf,b\n")
    assert _refused(train, test=test) == (
        f"{test}: line 3, column 'age': 'inf' is not a number "
        "(the column's other values are numbers)"
    )


def test_a_misspelled_label_column_gets_a_suggestion(tmp_path: Path) -> None:
    path = _csv(tmp_path, "radius,diagnosis\n1,M\n")
    assert _refused(path, BINARY, label=("diagnosiss",)) == (
        f"{path}: no column 'diagnosiss' (train.label); did you mean 'diagnosis'?"
    )


def test_an_unknown_feature_column_lists_the_columns(tmp_path: Path) -> None:
    names = [f"c{i}" for i in range(10)]
    path = _csv(tmp_path, ",".join(names) + ",y\n" + "1," * 10 + "a\n")
    assert _refused(path, features=("c1", "zzz")) == (
        f"{path}: no column 'zzz' (train.features); its columns are: "
        "c0, c1, c2, c3, c4, c5, c6, c7 and 3 more"
    )


def test_a_column_named_twice(tmp_path: Path) -> None:
    path = _csv(tmp_path, "x, y ,z,y\n1,2,3,a\n")
    assert _refused(path) == (
        f"{path}: line 1: column 'y' appears twice in the header (columns 2 and 4)"
    )
    path = _csv(tmp_path, "\nx,a,a,y,a\n1,2,3,a,4\n")
    assert _refused(path) == (
        f"{path}: line 2: column 'a' appears 3 times in the header (columns 2, 3 and 5)"
    )


def test_empty_files(tmp_path: Path) -> None:
    empty = _csv(tmp_path, "", "empty.csv")
    assert _refused(empty) == f"{empty}: no header row"
    blank = _csv(tmp_path, "\n\n", "blank.csv")
    assert _refused(blank) == f"{blank}: no header row"
    header = _csv(tmp_path, "x,y\n\n", "header.csv")
    assert _refused(header) == f"{header}: no data rows"
    train, test = _pair(tmp_path, "x,y\n1,a\n", "x,y\n")
    assert _refused(train, test=test) == f"{test}: no data rows"
    train, test = _pair(tmp_path, "x,y\n", "x,y\n1,a\n")
    assert _refused(train, test=test) == f"{train}: no data rows"


def test_a_test_file_with_other_columns(tmp_path: Path) -> None:
    train, test = _pair(tmp_path, "a,b,c,y\n1,2,3,a\n", "y,a,d\na,1,2\n")
    assert _refused(train, test=test) == (
        f"{test}: its header differs from {train}'s: missing columns 'b', 'c'; "
        "extra column 'd'"
    )


def test_a_test_file_with_the_columns_in_another_order(tmp_path: Path) -> None:
    train, test = _pair(tmp_path, "a,b,y\n1,2,a\n", "b,a,y\n2,1,a\n")
    assert _refused(train, test=test) == (
        f"{test}: its header differs from {train}'s: the same columns in another "
        f"order (a, b, y in {train})"
    )


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("x,y\n1,a\n2,café\n".encode("latin-1"))
    assert _refused(path) == f"{path}: line 3 is not UTF-8 text (byte 0xe9)"


def test_a_field_beyond_the_csv_module_limit(tmp_path: Path) -> None:
    limit = csv.field_size_limit()
    path = _csv(tmp_path, "x,y\n1,a\n" + "2," + "b" * (limit + 1) + "\n")
    assert _refused(path) == (
        f"{path}: line 3: field larger than field limit ({limit})"
    )


def test_no_test_data(tmp_path: Path) -> None:
    path = _csv(tmp_path, "x,y\n1,a\n")
    assert _refused(path, test_split=None) == (
        "the csv recipe needs test data: a test file (data: {train: ..., "
        "test: ...}) or train.test_split"
    )


def test_a_test_split_of_no_rows(tmp_path: Path) -> None:
    path = _numbered(tmp_path, 3)
    assert _refused(path, BINARY, test_split=0.1) == (
        f"{path}: train.test_split 0.1 of 3 data rows tests on none"
    )
    one = _numbered(tmp_path, 1)
    assert _refused(one, BINARY, test_split=0.9) == (
        f"{one}: train.test_split 0.9 of 1 data row leaves none to train on"
    )


# --- errors: labels against the task ------------------------------------------------


def test_a_binary_label_2(tmp_path: Path) -> None:
    path, test = _pair(
        tmp_path,
        "x,diagnosis\n1,0\n2,1\n3,1\n4,0\n5,0\n6,1\n7,0\n8,2\n",
        "x,diagnosis\n1,0\n",
    )
    assert _refused(path, BINARY, label=("diagnosis",), test=test) == (
        f"{path}: line 9, column 'diagnosis': 2 is not a label of task binary (0 or 1)"
    )


def test_a_binary_column_of_three_names(tmp_path: Path) -> None:
    train, test = _pair(
        tmp_path, "x,diagnosis\n1,M\n2,B\n3,X\n4,M\n", "x,diagnosis\n1,M\n"
    )
    assert _refused(train, BINARY, label=("diagnosis",), test=test) == (
        f"{train}: column 'diagnosis' has 3 values in the training rows (B, M, X); "
        "task binary needs two (0 and 1, or two names)"
    )
    train, test = _pair(tmp_path, "x,diagnosis\n1,M\n2,M\n", "x,diagnosis\n1,M\n")
    assert _refused(train, BINARY, label=("diagnosis",), test=test) == (
        f"{train}: column 'diagnosis' has 1 value in the training rows (M); "
        "task binary needs two (0 and 1, or two names)"
    )


def test_a_binary_test_label_that_is_not_a_number(tmp_path: Path) -> None:
    train, test = _pair(tmp_path, "x,y\n1,0\n2,1\n", "x,y\n1,0\n2,yes\n")
    assert _refused(train, BINARY, test=test) == (
        f"{test}: line 3, column 'y': 'yes' is not a label of task binary (0 or 1)"
    )


def test_a_binary_test_name_not_among_the_training_names(tmp_path: Path) -> None:
    train, test = _pair(tmp_path, "x,y\n1,B\n2,M\n", "x,y\n1,B\n2,X\n")
    assert _refused(train, BINARY, test=test) == (
        f"{test}: line 3, column 'y': 'X' is not among the training rows' "
        "classes (B, M)"
    )


def test_classes_by_name_against_the_last_layer(tmp_path: Path) -> None:
    species = Classification(
        "sparse_categorical_crossentropy", ("accuracy",), 4, ("0", "1", "2", "3")
    )
    train, test = _pair(tmp_path, "x,species\n1,a\n2,b\n3,c\n4,a\n", "x,species\n1,a\n")
    assert _refused(train, species, label=("species",), test=test) == (
        f"{train}: column 'species' has 3 classes in the training rows (a, b, c), "
        "but the last layer has 4 units"
    )


def test_a_class_id_beyond_the_last_layer(tmp_path: Path) -> None:
    species = Classification(
        "sparse_categorical_crossentropy", ("accuracy",), 4, ("0", "1", "2", "3")
    )
    train, test = _pair(
        tmp_path,
        "x,species\n1,0\n2,3\n3,1\n4,2\n5,1\n6,0\n7,1\n8,7\n",
        "x,species\n1,0\n",
    )
    assert _refused(train, species, label=("species",), test=test) == (
        f"{train}: line 9, column 'species': 7 is not a class id (0 to 3: the "
        "last layer has 4 units)"
    )


def test_a_fractional_class_id(tmp_path: Path) -> None:
    train, test = _pair(tmp_path, "x,y\n1,0\n2,2.5\n", "x,y\n1,0\n")
    assert _refused(train, test=test) == (
        f"{train}: line 3, column 'y': 2.5 is not a class id (0 to 2: the last "
        "layer has 3 units)"
    )


def test_a_test_class_not_among_the_training_classes(tmp_path: Path) -> None:
    train, test = _pair(
        tmp_path,
        "x,species\n1,a\n2,b\n3,c\n",
        "x,species\n" + "".join(f"{i},a\n" for i in range(9)) + "10,d\n",
    )
    assert _refused(train, label=("species",), test=test) == (
        f"{test}: line 11, column 'species': 'd' is not among the training rows' "
        "classes (a, b, c)"
    )


def test_many_distinct_names_are_not_counted_forever(tmp_path: Path) -> None:
    train, test = _pair(
        tmp_path,
        "x,y\n" + "".join(f"{i},n{i:04}\n" for i in range(500)),
        "x,y\n1,n0000\n",
    )
    assert _refused(train, test=test) == (
        f"{train}: column 'y' has more than 103 classes in the training rows "
        "(n0000, n0001, n0002, n0003, n0004, n0005, n0006, n0007 and more), but "
        "the last layer has 3 units"
    )


def test_a_multilabel_label_2_or_a_name(tmp_path: Path) -> None:
    path = _csv(tmp_path, "x,t,u\n1,0,1\n2,1,2\n")
    assert _refused(path, TAGS, label=("t", "u")) == (
        f"{path}: line 3, column 'u': 2 is not a label of task multilabel (0 or 1)"
    )
    path, test = _pair(tmp_path, "x,t,u\n1,yes,1\n", "x,t,u\n1,0,1\n")
    assert _refused(path, TAGS, label=("t", "u"), test=test) == (
        f"{path}: line 2, column 't': 'yes' is not a label of task multilabel (0 or 1)"
    )


def test_a_regression_target_that_is_not_a_number(tmp_path: Path) -> None:
    path = _csv(tmp_path, "x,p\n1,2\n2,abc\n")
    assert _refused(path, PRICE, label=("p",)) == (
        f"{path}: line 3, column 'p': 'abc' is not a number (task regression "
        "predicts numbers)"
    )


def test_label_columns_against_the_task(tmp_path: Path) -> None:
    path = _csv(tmp_path, "x,a,b\n1,0,1\n")
    assert _refused(path, BINARY, label=("a", "b")) == (
        "train.label names 2 columns (a, b); task binary reads one label column"
    )
    assert _refused(path, TAGS, label=("a",)) == (
        "train.label names 1 column (a), but the model outputs 2 values: task "
        "multilabel needs one label column per output"
    )


# --- errors: the model's input, and memory --------------------------------------------


def test_numeric_columns_against_input_shape(tmp_path: Path) -> None:
    path, test = _pair(tmp_path, "a,b,y\n1,2,a\n3,4,b\n5,6,c\n", "a,b,y\n1,2,a\n")
    assert _refused(path, width=30, test=test) == (
        f"input.shape [30] must equal the number of feature values, but {path} "
        "gives 2 (numeric columns)"
    )


def test_one_hot_columns_against_input_shape(tmp_path: Path) -> None:
    path, test = _pair(
        tmp_path,
        "a,sex,b,city,y\n1,m,2,Oslo,a\n3,f,4,Oslo,b\n5,f,6,Oslo,c\n",
        "a,sex,b,city,y\n1,m,2,Rome,a\n",
    )
    assert _refused(path, width=30, test=test) == (
        f"input.shape [30] must equal the number of feature values after encoding, "
        f"but {path} gives 7: 2 numeric columns, and 'sex' one-hot as 3 "
        "(2 categories and an out-of-vocabulary slot), 'city' one-hot as 2 "
        "(1 category and an out-of-vocabulary slot)"
    )


def test_data_too_large_for_memory_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, test = _pair(tmp_path, "a,b,y\n1,2,0\n3,4,1\n", "a,b,y\n5,6,1\n7,8,0\n")
    monkeypatch.setattr(datasets, "available_memory", lambda: 96)  # just enough
    assert _read(path, BINARY, 2, test=test).x_train.shape == (2, 2)
    monkeypatch.setattr(datasets, "available_memory", lambda: 90)
    assert _refused(path, BINARY, width=2, test=test) == (
        f"{path}: too large for the memory available: its arrays take 64 bytes "
        "(x_train 16 bytes, y_train 16 bytes, x_test 16 bytes, y_test 16 bytes), "
        "and training at least 32 bytes more for float32 copies of the samples: "
        "96 bytes in all, but only 90 bytes is available"
    )


def test_a_class_name_that_is_not_one_printable_line_is_refused(
    tmp_path: Path,
) -> None:
    """A quoted label may hold a newline; as a line of labels.txt it would
    shift every class after it."""
    path = _csv(tmp_path, 'x,y\n1,a\n2,"b\nc"\n3,d\n4,a\n5,"b\nc"\n6,d\n')
    assert _refused(path, SPECIES, 1, test_split=0.5) == (
        f"{path}: column 'y' holds the class name 'b\\nc'; a class name becomes "
        "a line of labels.txt: it must be printable, on one line"
    )


def test_a_text_column_of_nearly_all_distinct_values_is_refused(
    tmp_path: Path,
) -> None:
    """A date or an ID read as text would be one-hot encoded into a category
    per row; the build names every such column instead, and the escape."""
    rows = "".join(
        f"2012-{1 + i // 28:02d}-{1 + i % 28:02d},id{i},{'ab'[i % 2]},{i % 3}\n"
        for i in range(60)
    )
    path = _csv(tmp_path, "date,id,kind,y\n" + rows, "weather.csv")
    assert _refused(path, width=3, label=("y",), test_split=0.1) == (
        f"{path}: 2 text columns whose values are nearly all distinct, which "
        "l2compile does not one-hot encode by inference:\n"
        "  - 'date': 54 distinct values in 54 training rows; they read as dates "
        "(%Y-%m-%d)\n"
        "  - 'id': 54 distinct values in 54 training rows\n"
        "such a column is an ID, a date or free text: a category per row only "
        "memorizes the rows. Say what it is in train.columns: ignore (an ID or "
        "free text), date (year, month and weekday become inputs) or categorical "
        "(one-hot it anyway), e.g. train.columns: {date: ignore}"
    )
    # Declared, each is read as it says: a date's parts, no id, one-hot ids.
    read = _read(
        path,
        SPECIES,
        5 + 3,
        test_split=0.1,
        types={"date": "date", "id": "ignore", "kind": "categorical"},
    )
    assert [(c.name, c.part) for c in read.columns] == [
        ("date", "years_since_2000"),
        ("date", "month_sin"),
        ("date", "month_cos"),
        ("date", "weekday_sin"),
        ("date", "weekday_cos"),
        ("kind", ""),
    ]
    # Without them the table reads; a category with few values is kept.
    read = _read(path, SPECIES, 3, features=("kind",), test_split=0.1)
    assert [c.vocabulary for c in read.columns] == [("a", "b")]
    # Under 50 distinct values, or under 0.9 of the rows, is a category.
    small = _csv(tmp_path, "id,y\n" + "".join(f"x{i},{i % 2}\n" for i in range(40)))
    assert len(_read(small, SPECIES, 37, test_split=0.1).columns[0].vocabulary) == 36


def test_a_date_column_becomes_its_year_month_and_weekday(tmp_path: Path) -> None:
    """The format is inferred from the training values where one common,
    unambiguous form fits them all, or given; a test value of another form is
    an error at its line, and a missing date is NaN in every part."""
    train, test = _pair(
        tmp_path,
        "day,y\n2012-01-02,a\n2012-07-01,b\n,a\n",
        "day,y\n2013-12-31,b\n",
    )
    data = _read(train, BINARY, 5, test=test, types={"day": "date"})
    assert {c.format for c in data.columns} == {"%Y-%m-%d"}
    # 2012-01-02 is a Monday in January: both angles 0.
    np.testing.assert_allclose(data.x_train[0], [12, 0, 1, 0, 1], atol=1e-6)
    # 2012-07-01: July (6/12 of a turn), a Sunday (6/7 of a turn).
    july, sunday = np.pi, 2 * np.pi * 6 / 7
    np.testing.assert_allclose(
        data.x_train[1],
        [12, np.sin(july), np.cos(july), np.sin(sunday), np.cos(sunday)],
        atol=1e-6,
    )
    assert np.isnan(data.x_train[2]).all()
    assert data.x_test[0, 0] == 13
    # Day/month against month/day is not guessed: the format must be given.
    odd, odd_test = _pair(
        tmp_path, "day,y\n01/02/2012,a\n03/04/2012,b\n", "day,y\n01/02/2012,a\n"
    )
    assert _refused(odd, BINARY, test=odd_test, types={"day": "date"}) == (
        f"{odd}: column 'day' (train.columns: date): its training values fit no "
        "common, unambiguous date form ('01/02/2012', '03/04/2012', ...); give its "
        "format, as strptime reads it: train.columns: {day: {type: date, format: "
        "'%d/%m/%Y'}}"
    )
    given, given_test = _pair(
        tmp_path, "day,y\n01/02/2012,a\n03/04/2012,b\n", "day,y\n2012-01-01,a\n"
    )
    assert _refused(
        given, BINARY, test=given_test, types={"day": ("date", "%d/%m/%Y")}
    ) == (
        f"{given_test}: line 2, column 'day': '2012-01-01' is not a date of the "
        "form '%d/%m/%Y' (train.columns' format)"
    )


def test_declared_numeric_and_categorical_columns(tmp_path: Path) -> None:
    train, test = _pair(
        tmp_path, "code,n,y\n1,1,a\n2,2,b\n1,x,a\n", "code,n,y\n3,4,b\n"
    )
    data = _read(
        train, BINARY, 3, features=("code",), test=test, types={"code": "categorical"}
    )
    assert data.columns[0].vocabulary == ("1", "2")
    assert data.x_test[0].tolist() == [0]
    assert _refused(train, BINARY, test=test, types={"n": "numeric"}) == (
        f"{train}: line 4, column 'n': 'x' is not a number (train.columns says numeric)"
    )
    assert _refused(train, BINARY, test=test, types={"nn": "numeric"}) == (
        f"{train}: no column 'nn' (train.columns); did you mean 'n'?"
    )


def test_a_number_past_float32_is_not_a_number(tmp_path: Path) -> None:
    """1e39 is a finite double but infinity in the float32 arrays: it is
    refused where a number is read, at its line and column."""
    path = _csv(tmp_path, "a,y\n1,a\n1e39,b\n2,a\n3,b\n")
    assert _refused(path, BINARY, test_split=0.5) == (
        f"{path}: line 3, column 'a': '1e39' is not a number (the column's other "
        "values are numbers)"
    )
    from l2compile import tables

    assert tables.is_number("3.4e38") and not tables.is_number("-3.5e38")


def test_policies_name_only_feature_columns_and_a_table_needs_one(
    tmp_path: Path,
) -> None:
    path = _csv(tmp_path, "id,a,y\n1,2,a\n2,3,b\n3,4,a\n4,5,b\n")
    ignored = {"id": "ignore"}
    assert _refused(
        path, BINARY, types=ignored, missing=Missing(columns=(("id", "zero"),))
    ) == (
        f"{path}: train.missing.columns names column 'id', which is not a feature "
        "column (features: a)"
    )
    assert _refused(path, BINARY, types={"id": "ignore", "a": "ignore"}) == (
        f"{path}: no feature columns: every column is a label or ignored "
        "(train.columns)"
    )


def test_new_rows_for_predict_are_read_by_the_models_columns(tmp_path: Path) -> None:
    """predict's reader: by name, labels may stay, missing values NaN or slot
    0, and a missing value where the model fills none is an error."""
    from l2compile.tables import read_inputs

    inputs = [
        {"name": "a", "kind": "number", "missing": "median", "fill": 1.0},
        {"name": "c", "kind": "category", "vocabulary": ["x", "y"]},
        {"name": "b", "kind": "number", "missing": "error"},
    ]
    path = _csv(tmp_path, "c,y,b,a\nx,1,2,NA\nzz,0,3,4\n,1,5,6\n")
    keys, x = read_inputs(path, inputs, ("y",))
    assert keys == [2, 3, 4]
    np.testing.assert_array_equal(x, [[np.nan, 1, 2], [4, 0, 3], [6, 0, 5]])
    gap = _csv(tmp_path, "a,c,b\n1,x,NA\n", "gap.csv")
    with pytest.raises(BuildError) as err:
        read_inputs(gap, inputs)
    assert str(err.value) == (
        f"{gap}: line 2, column 'b': missing value, which the model does not fill "
        "(it was built with train.missing: error for this column)"
    )


def test_new_rows_may_keep_columns_the_model_never_read(tmp_path: Path) -> None:
    """With train.features, the file's other columns were never read: new
    rows may keep them (allowed None); without, another column is an error."""
    from l2compile.tables import read_inputs

    inputs = [{"name": "a", "kind": "number", "missing": "median", "fill": 0.0}]
    path = _csv(tmp_path, "note,a,y\nhi,1,0\n")
    _, x = read_inputs(path, inputs, None)
    assert x.tolist() == [[1.0]]
    with pytest.raises(BuildError) as err:
        read_inputs(path, inputs, ("y",))
    assert str(err.value) == (
        f"{path}: 1 column the model does not read: 'note'; remove it (the model "
        "reads a)"
    )
