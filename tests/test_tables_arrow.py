"""tables_arrow.read_fast against tables.read_csv: on generated tables and on
hand-written edge cases, the fast path gives the Python reader's dataset bit
for bit, or falls back; it never gives another result, and never raises
anything else. Clean common tables must not fall back."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pv
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l2compile import datasets
from l2compile import tables_arrow as arrow_tables
from l2compile.errors import BuildError
from l2compile.recipes import ModelInput
from l2compile.sources import source_for
from l2compile.sources.base import ColumnType, Missing
from l2compile.tables import FLOAT32_LIMIT, is_missing, read_csv
from l2compile.tables_arrow import Fallback, read_fast
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


def _same(a: datasets.Dataset, b: datasets.Dataset) -> None:
    """Equal datasets: arrays bit for bit (NaN's place and bits too)."""
    for name in ("x_train", "y_train", "x_test", "y_test", "train_ids", "test_ids"):
        left, right = getattr(a, name), getattr(b, name)
        assert left.dtype == right.dtype, name
        assert left.shape == right.shape, name
        assert left.tobytes() == right.tobytes(), name
    assert a.columns == b.columns
    assert a.classes == b.classes
    assert a.warnings == b.warnings
    assert a.source == b.source


def _compare(
    train: Path,
    test: Path | None,
    task: Task,
    *,
    label: tuple[str, ...] = ("y",),
    features: tuple[str, ...] | None = None,
    test_split: float | None = 0.5,
    seed: int = 0,
    missing: Missing = DEFAULTS,
    types: dict[str, str | tuple[str, str]] | None = None,
    width: int | None = None,
) -> str:
    """Run both readers: 'fast' (equal results), 'fallback' (the Python
    reader then gives a result or an error), or 'both refuse'."""
    recipe = source_for(
        "csv",
        None,
        data=str(train),
        label=label,
        features=features,
        test_split=None if test else test_split,
        missing=missing,
        types=tuple(
            ColumnType(name, kind) if isinstance(kind, str) else ColumnType(name, *kind)
            for name, kind in (types or {}).items()
        ),
    )
    shape = (width or 1,)
    model_input = ModelInput(shape, task=task, derived=width is None)
    try:
        expected: datasets.Dataset | None = read_csv(
            recipe, train, test, seed=seed, model_input=model_input
        )
    except BuildError:
        expected = None
    try:
        got = read_fast(recipe, train, test, seed=seed, model_input=model_input)
    except Fallback:
        return "fallback" if expected is not None else "both refuse"
    assert expected is not None, "the fast path read a file the Python reader refuses"
    _same(got, expected)
    return "fast"


def _write(folder: Path, content: str | bytes, name: str = "d.csv") -> Path:
    path = folder / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


# --- hand-written cases ---------------------------------------------------------------

#: (name, file text, task, options, must the fast path read it?)
CASES: list[tuple[str, str | bytes, Task, dict[str, Any], bool]] = [
    ("plain", "a,b,y\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n", BINARY, {}, True),
    ("bom", b"\xef\xbb\xbfa,b,y\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n", BINARY, {}, True),
    (
        "bom and crlf",
        b"\xef\xbb\xbfa,y\r\n1,0\r\n2,1\r\n3,0\r\n4,1\r\n",
        BINARY,
        {},
        True,
    ),
    ("blank lines", "\n\na,y\n\n1,0\n2,1\n\n\n3,0\n4,1\n\n", BINARY, {}, True),
    (
        "blank crlf lines",
        "\r\na,y\r\n\r\n1,0\r\n2,1\r\n\r\n3,0\r\n4,1",
        BINARY,
        {},
        True,
    ),
    ("lone cr", "a,y\r1,0\r2,1\r\r3,0\r4,1\r", BINARY, {}, True),
    ("no final newline", "a,y\n1,0\n2,1\n3,0\n4,1", BINARY, {}, True),
    (
        "quoted newlines",
        'a,t,y\n1,"x\ny",0\n2,"p,q",1\n3,"say ""hi""",0\n4,"x\r\ny",1\n',
        BINARY,
        {},
        True,
    ),
    (
        "missing cells in every spelling",
        "a,c,y\n1,x,0\n,na,1\nNA,N/A,0\nnan,NaN,1\nnull,NULL,0\n  ,  nA ,1\n7,x,0\n"
        "8,y,1\n",
        BINARY,
        {},
        True,
    ),
    (
        "whitespace around numbers and words",
        "a,c,y\n 1 ,\tx ,0\n2\t, y,1\n 3, x\t,0\n4 ,y,1\n",
        BINARY,
        {},
        True,
    ),
    (
        "rows without a label",
        "a,y\n1,0\n2,\n3,1\n4,NA\n5,0\n6,null\n7,1\n8, \n9,0\n",
        BINARY,
        {},
        True,
    ),
    ("one row without a label", "a,y\n1,0\n2,\n3,1\n4,0\n5,1\n", BINARY, {}, True),
    (
        "text column with numbers",
        "a,c,y\n1,x,0\n2,3,1\n3,x,0\n4,y,1\n5,4,0\n6,z,1\n7,x,0\n8,y,1\n9,z,0\n10,x,1\n",
        BINARY,
        {},
        True,
    ),
    (
        "mixed column, mostly numbers",
        "a,c,y\n1,1,0\n2,2,1\n3,x,0\n4,4,1\n",
        BINARY,
        {},
        False,
    ),
    (
        "numbers in odd forms",
        "a,y\n1e3,0\n-2.5E-1,1\n+.5,0\n5.,1\n1_000,0\n0x10,1\ninf,0\n-nan,1\n",
        BINARY,
        {},
        False,
    ),
    (
        "unicode digits and spaces",
        "a,c,y\n\u0661\u0662,\u00a0x,0\n\uff13,y\u3000,1\n4,x,0\n5,y,1\n",
        BINARY,
        {},
        False,
    ),
    (
        "overflowing exponent",
        "a,y\n1e400,0\n2,1\n3,0\n4,1\n5,0\n",
        BINARY,
        {},
        False,
    ),
    (
        "class names",
        "a,y\n" + "".join(f"{i},{('cat', 'dog')[i % 2]}\n" for i in range(16)),
        BINARY,
        {},
        True,
    ),
    ("class ids", "a,y\n1,0\n2,2.0\n3,1\n4,1e0\n5,2\n6,0\n", SPECIES, {}, True),
    (
        "class names, three",
        "a,y\n" + "".join(f"{i},{'abc'[i % 3]}\n" for i in range(30)),
        SPECIES,
        {},
        True,
    ),
    ("too many classes", "a,y\n1,a\n2,b\n3,c\n4,d\n", SPECIES, {}, False),
    ("not a class id", "a,y\n1,0\n2,5\n3,1\n4,2\n", SPECIES, {}, False),
    ("regression", "a,y\n1,1.5\n2,-3\n3,1e3\n4, 7 \n5,NA\n", PRICE, {}, True),
    (
        "regression, two targets",
        "a,p,q\n1,1.5,2\n2,-3,4\n3,1e3,6\n4,7,8\n",
        PRICES,
        {"label": ("p", "q")},
        True,
    ),
    ("regression, text label", "a,y\n1,1.5\n2,x\n3,3\n4,4\n", PRICE, {}, False),
    (
        "multilabel",
        "a,t,u\n1,0,1\n2,1,1\n3,0,0\n4,1.0,0\n5,,1\n",
        TAGS,
        {"label": ("t", "u")},
        True,
    ),
    (
        "multilabel, a 2",
        "a,t,u\n1,0,1\n2,2,1\n3,0,0\n4,1,0\n",
        TAGS,
        {"label": ("t", "u")},
        False,
    ),
    (
        "declared types and a date",
        "a,c,d,y\n1,7,2024-01-05,0\n2,8,2024-02-10,1\n3,7,,0\n4,9,2023-12-31,1\n",
        BINARY,
        {"types": {"c": "categorical", "d": "date", "a": "numeric"}},
        True,
    ),
    (
        "date with a format",
        "a,d,y\n1,05/01/2024,0\n2,10/02/2024,1\n3,NA,0\n4,31/12/2023,1\n",
        BINARY,
        {"types": {"d": ("date", "%d/%m/%Y")}},
        True,
    ),
    (
        "date that does not parse",
        "a,d,y\n1,2024-01-05,0\n2,2024-02-10,1\n3,2024-13-01,0\n4,x,1\n",
        BINARY,
        {"types": {"d": "date"}},
        False,
    ),
    (
        "ignored column",
        "a,tag,y\n1,id1,0\n2,id2,1\n3,id3,0\n4,id4,1\n",
        BINARY,
        {"types": {"tag": "ignore"}},
        True,
    ),
    (
        "indicator and most_frequent",
        "a,c,y\n1,x,0\n,x,1\n3,,0\n4,y,1\nNA,x,0\n6,z,1\n",
        BINARY,
        {"missing": Missing(indicator=True, columns=(("c", "most_frequent"),))},
        True,
    ),
    (
        "zero and mean",
        "a,b,y\n1,2,0\n,4,1\n3,,0\n4,8,1\n",
        BINARY,
        {"missing": Missing(numeric="mean", columns=(("b", "zero"),))},
        True,
    ),
    (
        "error policy with a missing value",
        "a,b,y\n1,2,0\n,4,1\n3,5,0\n4,8,1\n",
        BINARY,
        {"missing": Missing(numeric="error")},
        False,
    ),
    (
        "error policy without missing values",
        "a,b,y\n1,2,0\n2,4,1\n3,5,0\n4,8,1\n",
        BINARY,
        {"missing": Missing(numeric="error")},
        True,
    ),
    (
        "policy of the wrong kind",
        "a,c,y\n1,x,0\n2,y,1\n3,x,0\n4,y,1\n",
        BINARY,
        {"missing": Missing(columns=(("c", "median"),))},
        False,
    ),
    ("field count", "a,b,y\n1,2,0\n3,1\n5,6,0\n", BINARY, {}, False),
    ("not utf-8", b"a,y\n1,0\n2,1\n\xff,0\n4,1\n", BINARY, {}, False),
    ("no data rows", "a,y\n", BINARY, {}, False),
    ("empty file", "", BINARY, {}, False),
    ("header only blank", "\n\n", BINARY, {}, False),
    ("duplicate header", "a,a,y\n1,2,0\n3,4,1\n", BINARY, {}, False),
    ("column without values", "a,b,y\n1,,0\n2,,1\n3,,0\n", BINARY, {}, False),
    ("quote inside a field", 'a,c,y\n1,x"y,0\n2,"p"q,1\n3,x,0\n', BINARY, {}, False),
    ("unterminated quote", 'a,c,y\n1,x,0\n2,"p,1\n', BINARY, {}, False),
    (
        "field over the bound",
        "a,c,y\n1," + "x" * 140_000 + ",0\n2,y,1\n",
        BINARY,
        {},
        False,
    ),
    (
        "id-like column",
        "a,c,y\n" + "".join(f"{i},id{i},{i % 2}\n" for i in range(120)),
        BINARY,
        {},
        False,
    ),
    (
        "features chosen and ordered",
        "a,b,y,c\n1,2,0,x\n3,4,1,\n5,6,0,z\n7,8,1,w\n",
        BINARY,
        {"features": ("b", "a")},
        True,
    ),
    (
        "one row per split",
        "a,y\n1,0\n2,1\n",
        BINARY,
        {},
        True,
    ),
]


@pytest.mark.parametrize("name", [case[0] for case in CASES])
def test_edge_case(tmp_path: Path, name: str) -> None:
    _, text, task, options, fast = next(case for case in CASES if case[0] == name)
    path = _write(tmp_path, text)
    for seed in (0, 1, 2):
        outcome = _compare(path, None, task, seed=seed, **options)
        if fast:
            assert outcome == "fast", f"{name}: fell back on a table it reads"


def test_test_file_and_its_warnings(tmp_path: Path) -> None:
    train = _write(tmp_path, "a,c,y\n1,x,0\n2,y,1\n3,,0\n4,x,\n5,y,1\n", "train.csv")
    test = _write(tmp_path, "a,c,y\n6,x,1\n7,w,0\n,NA,\n9,y,1\n", "test.csv")
    assert _compare(train, test, BINARY) == "fast"
    other = _write(tmp_path, "a,y,c\n6,1,x\n", "other.csv")
    assert _compare(train, other, BINARY) == "both refuse"
    unseen = _write(tmp_path, "a,c,y\n6,x,2\n", "unseen.csv")
    assert _compare(train, unseen, BINARY) == "both refuse"


def test_width_checked(tmp_path: Path) -> None:
    path = _write(tmp_path, "a,c,y\n1,x,0\n2,y,1\n3,x,0\n4,z,1\n")
    for width in range(1, 7):
        outcome = _compare(path, None, BINARY, width=width)
        assert outcome in ("fast", "both refuse")


def test_wrong_guess_is_read_again(tmp_path: Path) -> None:
    """The first block's numbers guess number mode; the column is text."""
    rows = [f"{i},{i},{i % 2}" for i in range(40000)]
    rows += [f"{i},w{i % 7},{i % 2}" for i in range(40000, 160000)]
    path = _write(tmp_path, "a,c,y\n" + "\n".join(rows) + "\n")
    assert _compare(path, None, BINARY, test_split=0.25) == "fast"


def test_numbers_after_text_block(tmp_path: Path) -> None:
    """The first block's words guess text mode; the column is numeric
    (its codes become their values)."""
    rows = [f"{i},{('x', 'y', 'NA')[i % 3]},{i % 2}" for i in range(30000)]
    rows += [f"{i},{i % 50 * 0.5},{i % 2}" for i in range(30000, 120000)]
    path = _write(tmp_path, "a,c,y\n" + "\n".join(rows) + "\n")
    assert _compare(path, None, BINARY, test_split=0.25) in ("fast", "both refuse")
    rows = [f"{i},{i % 50 * 0.5},{i % 2}" for i in range(120000)]
    rows[:30000] = [f"{i},{('1', '2', 'NA')[i % 3]},{i % 2}" for i in range(30000)]
    path = _write(tmp_path, "a,c,y\n" + "\n".join(rows) + "\n")
    assert _compare(path, None, BINARY, test_split=0.25) == "fast"


def test_many_blocks_with_drops_and_quotes(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["a", "b", "note", "y"])
    for i in range(20000):
        note = ("plain", "with, comma", 'say "hi"', "two\nlines", "")[i % 5]
        label = "" if rng.random() < 0.01 else str(int(rng.integers(2)))
        a = "" if rng.random() < 0.05 else f"{rng.normal():.5f}"
        writer.writerow([a, f"{rng.normal():.3e}", note, label])
    path = _write(tmp_path, out.getvalue())
    assert _compare(path, None, BINARY, test_split=0.2, seed=3) == "fast"


def test_cells_arrow_reads_otherwise_go_through_the_exact_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the first pieces, a number-mode column is read as numbers by
    Arrow; a piece holding a cell it reads otherwise than `float` (" nan ",
    "1_0", an Arabic-Indic digit) or past float32 ("inf", "1e39") is read
    as text, and the result is still the Python reader's."""
    monkeypatch.setattr(arrow_tables, "_CHUNK", 2048)  # 150 pieces
    read = {True: 0, False: 0}
    fill = arrow_tables._fill_numbers

    def counted(*args: Any) -> bool:
        done = fill(*args)
        read[done] += 1
        return done

    monkeypatch.setattr(arrow_tables, "_fill_numbers", counted)
    odd = [" nan ", "1_0", " 7 ", '"NA"', "\u0661", "+.5", "-0", "", "NaN"]
    rows = [f"{i * 0.25},{i % 3},{i % 2}" for i in range(20000)]
    for k, cell in enumerate(odd):
        rows[10000 + 997 * k] = f"{cell},{k % 3},{k % 2}"
    path = _write(tmp_path, "a,b,y\n" + "\n".join(rows) + "\n")
    assert _compare(path, None, BINARY, test_split=0.25) == "fast"
    assert read[True] > 100, "Arrow read no piece as numbers"
    assert read[False] >= 1, "no piece with ' nan ' was read again as text"
    for stray in ("inf", "1e39", "word"):  # text in a numeric column
        rows[15000] = f"{stray},1,0"
        path = _write(tmp_path, "a,b,y\n" + "\n".join(rows) + "\n")
        assert _compare(path, None, BINARY, test_split=0.25) == "both refuse"


def test_blank_lines_inside_a_large_file_are_counted(tmp_path: Path) -> None:
    """The first pass guesses the rows of windows without quotes; blank
    lines inside one make the guess wrong, and the file is counted again
    rather than given to the Python reader."""
    rows = [f"{i},{i % 5},{i % 2}" for i in range(200000)]
    rows[150000] = ""
    path = _write(tmp_path, "a,b,y\n" + "\n".join(rows) + "\n")
    assert _compare(path, None, BINARY, test_split=0.25) == "fast"


@pytest.mark.parametrize("quoted", [False, True])
def test_a_long_field_in_a_column_nothing_reads(tmp_path: Path, quoted: bool) -> None:
    """csv.reader refuses a field past csv.field_size_limit() in any column:
    the fast path never reads such a file."""
    note = "x, " * 60 if quoted else "x" * 180
    body = "".join(f"{i},{note if i == 7 else 'n'},{i % 2}\n" for i in range(40))
    path = _write(tmp_path, "a,note,y\n" + body.replace(note, f'"{note}"'))
    saved = csv.field_size_limit(100)
    try:
        outcome = _compare(path, None, BINARY, features=("a",))
    finally:
        csv.field_size_limit(saved)
    assert outcome == "both refuse"
    assert arrow_tables._fields_within(b"ab,cd\n" * 50, 2)
    assert not arrow_tables._fields_within(b"ab,cde\n" * 50, 2)
    assert arrow_tables._fields_within(b'"a,b",c\n' * 50, 5)
    assert not arrow_tables._fields_within(b'"a,b,",c\n' * 50, 5)


def test_arrow_cast_is_float() -> None:
    """Where Arrow's cast of a string gives a finite number, `float` gives
    the same one: the rule the fast path's first conversion rests on."""
    rng = np.random.default_rng(0)
    alphabet = [*"0123456789.eE+-_ xinfa", "\u0661", "\t"]
    cells = sorted(
        {
            "".join(rng.choice(alphabet, size=int(rng.integers(0, 7))))
            for _ in range(40000)
        }
    )
    values, present = arrow_tables._numbers(arrow_tables._strings(cells))
    if present is None:
        present = np.ones(len(cells), np.bool_)
    for cell, value, here in zip(cells, values, present, strict=True):
        word = cell.strip()
        expected = float(word) if _is_number(word) else math.nan
        assert here == (word.lower() not in ("", "na", "n/a", "nan", "null")), cell
        assert (np.isnan(value) and np.isnan(expected)) or value == expected, cell


def test_arrow_parser_numbers_are_float() -> None:
    """Where Arrow's parser, reading a column as numbers, gives a value
    finite in float32, `float` gives the same one from the stripped cell;
    where it gives null, the cell is a missing form."""
    rng = np.random.default_rng(1)
    alphabet = [*"0123456789" * 3, *".eE+-_ xinfaNAul/", "\u0661", "\t"]
    cells = sorted(
        {
            "".join(rng.choice(alphabet, size=int(rng.integers(0, 6))))
            for _ in range(6000)
        }
    )
    options = pv.ConvertOptions(
        column_types={"c": pa.float64()},
        null_values=arrow_tables._NULL_VALUES,
        strings_can_be_null=False,
    )
    read = 0
    for cell in cells:
        text = f'c\n"{cell}"\n'.encode()
        try:
            column = pv.read_csv(io.BytesIO(text), convert_options=options)["c"]
        except pa.ArrowInvalid:
            continue  # the piece is read as text
        read += 1
        word = cell.strip()
        value = column[0].as_py()
        if value is None:
            assert is_missing(word), cell
        elif abs(value) < FLOAT32_LIMIT:
            assert _is_number(word) and float(word) == value, cell
    assert read > 500


def _is_number(cell: str) -> bool:
    """The reader's rule: a number finite in float32."""
    from l2compile.tables import is_number

    return is_number(cell)


# --- generated tables -----------------------------------------------------------------

NUMBER = st.one_of(
    st.integers(-1000, 1000).map(str),
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: f"{v:.6g}"),
    st.floats(-1e30, 1e30, allow_nan=False).map(repr),
)
MISSING = st.sampled_from(["", "NA", "n/a", "nan", "NULL", " ", "Nan"])
WORD = st.sampled_from(
    ["a", "b", "c", "x y", "1x", "é", "q,r", 'say "x"', "two\nlines"]
)
ODD = st.sampled_from(
    [" 1 ", "\t2", "1e3", "+.5", "-0", "inf", "-nan", "1_0", "\u0661"]
)


@st.composite
def tables(draw: st.DrawFn, common: bool = False) -> dict[str, Any]:
    """A small table: its text, and the options it is read with."""
    rows = draw(st.integers(2, 40))
    columns = draw(st.integers(1, 4))
    kinds = [draw(st.sampled_from(["number", "word", "mixed"])) for _ in range(columns)]
    task = draw(st.sampled_from(["binary", "names", "species", "price", "tags"]))
    gaps = 0.0 if common else draw(st.sampled_from([0.0, 0.1, 0.3]))
    body = []
    for _ in range(rows):
        row = []
        for kind in kinds:
            if draw(st.floats(0, 1)) < gaps:
                row.append(draw(MISSING))
            elif kind == "number" or (kind == "mixed" and draw(st.booleans())):
                row.append(draw(NUMBER if common else st.one_of(NUMBER, ODD)))
            else:
                row.append(draw(WORD))
        drop = not common and draw(st.floats(0, 1)) < 0.1
        if task == "tags":
            row += ["" if drop else draw(st.sampled_from(["0", "1"])) for _ in range(2)]
        elif task == "price":
            row.append("NA" if drop else draw(NUMBER))
        elif task == "names":
            row.append("" if drop else draw(st.sampled_from(["cat", "dog"])))
        elif task == "species":
            row.append("" if drop else draw(st.sampled_from(["0", "1", "2", "2.0"])))
        else:
            row.append("" if drop else draw(st.sampled_from(["0", "1"])))
        body.append(row)
    names = [f"f{k}" for k in range(columns)]
    label = ("t", "u") if task == "tags" else ("y",)
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    blanks = 0.0 if common else 0.05
    bom = not common and draw(st.booleans())
    text = _csv_text(names + list(label), body, ending, quoting, blanks, bom, draw)
    test_text = _csv_text(
        names + list(label), body[::-1], ending, quoting, 0, bom, draw
    )
    policy = draw(
        st.sampled_from(
            [
                Missing(),
                Missing(indicator=True),
                Missing(numeric="mean", categorical="most_frequent"),
                Missing(numeric="zero", indicator=True),
                Missing(numeric="error", categorical="error"),
            ]
        )
    )
    types: dict[str, str] = {}
    if not common and draw(st.booleans()):
        types[names[0]] = draw(st.sampled_from(["numeric", "categorical", "ignore"]))
    return {
        "text": text,
        "test_text": test_text,
        "task": {
            "binary": BINARY,
            "names": BINARY,
            "species": SPECIES,
            "price": PRICE,
        }.get(task, TAGS),
        "label": label,
        "missing": policy,
        "types": types,
        "split": draw(st.sampled_from([0.25, 0.5])),
        "test_file": draw(st.booleans()),
        "seed": draw(st.integers(0, 3)),
        "small": draw(st.booleans()),
    }


def _csv_text(
    header: list[str],
    body: list[list[str]],
    ending: str,
    quoting: int,
    blanks: float,
    bom: bool,
    draw: st.DrawFn,
) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=ending, quoting=quoting)
    writer.writerow(header)
    for row in body:
        writer.writerow(row)
        if blanks and draw(st.floats(0, 1)) < blanks:
            out.write(ending)  # a blank line
    return ("\ufeff" if bom else "") + out.getvalue()


def _run(tmp_path: Path, table: dict[str, Any]) -> str:
    train = _write(tmp_path, table["text"])
    test = None
    if table["test_file"]:
        test = _write(tmp_path, table["test_text"], "test.csv")
    saved = arrow_tables._CHUNK, arrow_tables._PIECE
    if table["small"]:  # pieces of a few bytes: every boundary case
        arrow_tables._CHUNK, arrow_tables._PIECE = 48, 7
    try:
        return _compare(
            train,
            test,
            table["task"],
            label=table["label"],
            test_split=table["split"],
            seed=table["seed"],
            missing=table["missing"],
            types=table["types"],
        )
    finally:
        arrow_tables._CHUNK, arrow_tables._PIECE = saved


@settings(
    max_examples=100,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(table=tables())
def test_generated_tables(tmp_path: Path, table: dict[str, Any]) -> None:
    """Either reader's result, or both refuse: never another dataset."""
    assert _run(tmp_path, table) in ("fast", "fallback", "both refuse")


@settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(table=tables(common=True))
def test_common_tables_do_not_fall_back(tmp_path: Path, table: dict[str, Any]) -> None:
    outcome = _run(tmp_path, table)
    assert outcome != "fallback", "a clean common table fell back"
