"""Bad data files, made here, and the exact message each gets: every one is
refused while the data is read, before any training, with the file, the
array and what is wrong named."""

from __future__ import annotations

import gzip
import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from l2compile import datasets
from l2compile.datasets import ModelInput, SpecPath, load_dataset
from l2compile.errors import BuildError
from l2compile.sources import RECIPES, source_for
from l2compile.tasks import Binary, Multilabel, Regression

from .conftest import make_fashion_idx, make_mnist_npz

pytestmark = pytest.mark.unit

MNIST = RECIPES["mnist"]
NPZ = source_for("npz", 3)
FLOATS = ModelInput((4,))
TOKENS = ModelInput((4,), ids=50)


def _floats(**changes: np.ndarray) -> dict[str, np.ndarray]:
    """A valid npz-recipe data set of float samples, with some arrays replaced."""
    x = np.linspace(0, 1, 24, dtype=np.float32).reshape(6, 4)
    y = np.array([0, 1, 2, 0, 1, 2], np.int64)
    return {"x_train": x, "y_train": y, "x_test": x[:3], "y_test": y[:3], **changes}


def _save(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, **arrays)
    return path


def _refused(
    path: Path, recipe: datasets.Recipe = NPZ, model_input: ModelInput | None = None
) -> str:
    with pytest.raises(BuildError) as err:
        load_dataset(recipe, path, model_input=model_input, env={})
    return str(err.value)


# --- values: numbers that are not finite, integers the model cannot read ----------


def test_nan_in_the_test_images_is_named_with_its_count_and_first_index(
    tmp_path: Path,
) -> None:
    x = _floats()["x_test"].copy()
    x[1, 2] = x[2, 0] = np.nan
    x[2, 3] = -np.inf
    path = _save(tmp_path / "d.npz", _floats(x_test=x))
    assert _refused(path, model_input=FLOATS) == (
        f"{path}: not usable as npz data:\n"
        "  - x_test holds 3 values that are not finite (2 NaN, 1 inf), the first at "
        "x_test[1, 2]"
    )


def test_inf_in_the_training_images_is_refused_before_training(
    tmp_path: Path,
) -> None:
    images = np.zeros((5, 28, 28), np.float32)
    images[4, 27, 3] = np.inf
    arrays = _floats(x_train=images, x_test=images[:2], y_train=np.zeros(5, np.int64))
    arrays["y_test"] = np.zeros(2, np.int64)
    path = _save(tmp_path / "d.npz", arrays)
    assert _refused(path) == (
        f"{path}: not usable as npz data:\n"
        "  - x_train holds a value that is not finite (inf) at x_train[4, 27, 3]"
    )


def test_float64_beyond_float32s_range_is_refused(tmp_path: Path) -> None:
    x = _floats()["x_train"].astype(np.float64)
    x[3, 1] = 1e300
    path = _save(tmp_path / "d.npz", _floats(x_train=x))
    assert _refused(path, model_input=FLOATS) == (
        f"{path}: not usable as npz data:\n"
        "  - x_train holds a value beyond float32's range (±3.4e+38), which "
        "training sees as inf at x_train[3, 1]"
    )


def test_float_labels_are_refused_and_their_nan_named(tmp_path: Path) -> None:
    y = np.array([0, 1, np.nan, 0, 1, 2], np.float32)
    path = _save(tmp_path / "d.npz", _floats(y_train=y))
    assert _refused(path, model_input=FLOATS) == (
        f"{path}: not usable as npz data:\n"
        "  - y_train has dtype float32; expected integer labels\n"
        "  - y_train holds a value that is not finite (NaN) at y_train[2]"
    )


# --- labels by task -----------------------------------------------------------------

BINARY = ModelInput(
    (4,), task=Binary("binary_crossentropy", ("accuracy",), 1, ("0", "1"))
)
TAGS = ModelInput(
    (4,), task=Multilabel("binary_crossentropy", ("auc",), 3, ("a", "b", "c"))
)
PRICES = ModelInput((4,), task=Regression("mse", ("mae",), 2, ("p", "q")))


def test_a_binary_label_2_is_named_with_its_place(tmp_path: Path) -> None:
    y = np.array([0, 1, 1, 0, 2, 2], np.int64)
    path = _save(tmp_path / "d.npz", _floats(y_train=y, y_test=y[:3]))
    assert _refused(path, source_for("npz"), BINARY) == (
        f"{path}: not usable as npz data:\n"
        "  - y_train holds 2 at y_train[4] (2 such values); expected labels 0 or 1"
    )


def test_binary_labels_may_be_0_1_floats_in_a_column(tmp_path: Path) -> None:
    y = np.array([[0.0], [1.0], [1.0], [0.0], [1.0], [0.0]], np.float32)
    path = _save(tmp_path / "d.npz", _floats(y_train=y, y_test=y[:3]))
    data = load_dataset(source_for("npz"), path, model_input=BINARY, env={})
    assert data.y_train.shape == (6, 1)


def test_multilabel_labels_may_be_bools(tmp_path: Path) -> None:
    y = np.zeros((6, 3), bool)
    y[0, 1] = True
    path = _save(tmp_path / "d.npz", _floats(y_train=y, y_test=y[:3]))
    data = load_dataset(source_for("npz"), path, model_input=TAGS, env={})
    assert data.y_train.dtype == bool


def test_multilabel_columns_that_do_not_match_the_output(tmp_path: Path) -> None:
    y = np.zeros((6, 4), np.int64)
    path = _save(tmp_path / "d.npz", _floats(y_train=y, y_test=y[:3]))
    assert _refused(path, source_for("npz"), TAGS) == (
        f"{path}: not usable as npz data:\n"
        "  - y_train has shape (6, 4); expected (6, 3): 3 columns of 0 or 1, one "
        "per label\n"
        "  - y_test has shape (3, 4); expected (3, 3): 3 columns of 0 or 1, one "
        "per label"
    )


def test_a_regression_target_with_nan_is_named(tmp_path: Path) -> None:
    y = np.ones((6, 2), np.float64)
    y[3, 1] = np.nan
    path = _save(tmp_path / "d.npz", _floats(y_train=y, y_test=y[:3]))
    assert _refused(path, source_for("npz"), PRICES) == (
        f"{path}: not usable as npz data:\n"
        "  - y_train holds a value that is not finite (NaN) at y_train[3, 1]"
    )


def test_regression_targets_of_one_column_for_two_outputs(tmp_path: Path) -> None:
    y = np.ones(6, np.float32)
    path = _save(tmp_path / "d.npz", _floats(y_train=y, y_test=y[:3]))
    assert _refused(path, source_for("npz"), PRICES).splitlines()[1] == (
        "  - y_train has shape (6,); expected (6, 2): float targets, 2 columns"
    )


def test_integers_beyond_float32s_exact_range_are_refused(tmp_path: Path) -> None:
    x = np.arange(24, dtype=np.int64).reshape(6, 4)
    x[2, 1] = 10**9
    x[4, 0] = -5
    path = _save(tmp_path / "d.npz", _floats(x_train=x))
    assert _refused(path, model_input=FLOATS) == (
        f"{path}: not usable as npz data:\n"
        "  - x_train holds integers from -5 to 1000000000, the first beyond "
        "16777216 in size at x_train[2, 1]; integers other than uint8 pixels are "
        "fed unscaled, as float32, which holds them exactly only up to 16777216: "
        "scale the data, or save 8-bit pixels as uint8"
    )


def test_integers_float32_holds_exactly_are_used_as_they_are(tmp_path: Path) -> None:
    x = np.array([[-(2**24), 0, 7, 2**24]] * 6, np.int64)
    path = _save(tmp_path / "d.npz", _floats(x_train=x))
    data = load_dataset(NPZ, path, model_input=FLOATS, env={})
    np.testing.assert_array_equal(data.x_train, x)


def test_token_ids_outside_the_embedding_are_refused(tmp_path: Path) -> None:
    x = np.full((6, 4), 3, np.int64)
    x[1, 3] = 50
    x[5, 0] = -1
    test = np.full((3, 4), 49, np.int64)
    path = _save(tmp_path / "d.npz", _floats(x_train=x, x_test=test))
    assert _refused(path, model_input=TOKENS) == (
        f"{path}: not usable as npz data:\n"
        "  - x_train holds ids from -1 to 50, the first outside 0 to 49 at "
        "x_train[1, 3]; the model's embedding looks up ids 0 to 49 (input_dim 50)"
    )


def test_token_ids_up_to_input_dim_are_read(tmp_path: Path) -> None:
    x = np.array([[0, 1, 48, 49]] * 6, np.int32)
    path = _save(tmp_path / "d.npz", _floats(x_train=x, x_test=x[:3]))
    data = load_dataset(NPZ, path, model_input=TOKENS, env={})
    assert data.x_train.dtype == np.int32


def test_float_samples_for_an_embedding_are_refused(tmp_path: Path) -> None:
    path = _save(tmp_path / "d.npz", _floats())
    assert _refused(path, model_input=TOKENS) == (
        f"{path}: not usable as npz data:\n"
        "  - x_train has dtype float32; the model's embedding looks up integer ids\n"
        "  - x_test has dtype float32; the model's embedding looks up integer ids"
    )


# --- layout, from the headers alone --------------------------------------------------


def test_samples_that_do_not_fit_the_input_are_refused_from_the_headers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _save(tmp_path / "d.npz", _floats())
    monkeypatch.setattr(datasets, "npz_array", _never_read)
    assert _refused(path, model_input=ModelInput((2, 3))) == (
        f"{path}: not usable as npz data:\n"
        "  - x_train: each sample has shape (4,), which does not fit input.shape "
        "[2, 3] (4 values, not 6)\n"
        "  - x_test: each sample has shape (4,), which does not fit input.shape "
        "[2, 3] (4 values, not 6)"
    )


def test_test_samples_of_another_size_than_the_training_samples(
    tmp_path: Path,
) -> None:
    path = _save(tmp_path / "d.npz", _floats(x_test=np.zeros((3, 5), np.float32)))
    assert _refused(path) == (
        f"{path}: not usable as npz data:\n"
        "  - x_test's samples have shape (5,), x_train's (4,): they must hold as "
        "many values"
    )


def _never_read(*args: object) -> np.ndarray:
    raise AssertionError("an array was read")


def test_row_counts_are_checked_before_any_array_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shape of a zip bomb: a large, highly compressible x_train whose
    # labels do not match it. It is refused from the headers alone.
    path = tmp_path / "bomb.npz"
    np.savez_compressed(
        path,
        x_train=np.zeros((20_000, 28, 28), np.uint8),
        y_train=np.zeros(19_999, np.uint8),
        x_test=np.zeros((1, 28, 28), np.uint8),
        y_test=np.zeros(1, np.uint8),
    )
    monkeypatch.setattr(datasets, "npz_array", _never_read)
    assert _refused(path, MNIST) == (
        f"{path}: not usable as MNIST data:\n"
        "  - y_train has shape (19999,); expected (20000,)"
    )


def test_data_larger_than_the_memory_available_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.npz"
    np.savez_compressed(
        path,
        x_train=np.zeros((20_000, 28, 28), np.uint8),
        y_train=np.zeros(20_000, np.uint8),
        x_test=np.zeros((1_000, 28, 28), np.uint8),
        y_test=np.zeros(1_000, np.uint8),
    )
    monkeypatch.setattr(datasets, "npz_array", _never_read)
    monkeypatch.setattr(datasets, "available_memory", lambda: 50 * 2**20)
    assert _refused(path, MNIST) == (
        f"{path}: too large for the memory available: its arrays take 15.7 MiB "
        "(x_train 15.0 MiB, y_train 19.5 KiB, x_test 765.6 KiB, y_test 1,000 "
        "bytes), and training at least 62.8 MiB more for float32 copies of the "
        "samples: 78.5 MiB in all, but only 50.0 MiB is available"
    )


def test_the_memory_available_is_known_here() -> None:
    available = datasets.available_memory()
    assert available is not None and available > 0


def _zip_member(path: Path, name: str, data: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for key in ("x_train", "y_train", "x_test", "y_test"):
            array = np.zeros((2, 28, 28) if key[0] == "x" else (2,), np.uint8)
            if f"{key}.npy" == name:
                archive.writestr(name, data)
            else:
                buffer = io.BytesIO()
                np.save(buffer, array)
                archive.writestr(f"{key}.npy", buffer.getvalue())
    return path


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_a_header_that_claims_more_data_than_the_zip_holds(tmp_path: Path) -> None:
    # The header of a 60000x28x28 array, with no data after it.
    header = _npy_bytes(np.zeros((60_000, 28, 28), np.uint8))[:128]
    path = _zip_member(tmp_path / "d.npz", "x_train.npy", header)
    assert _refused(path, MNIST) == (
        f"{path}: cannot read as an .npz file: x_train.npy: the zip declares 128 "
        "bytes, but its header describes 47,040,128 (shape (60000, 28, 28), dtype "
        "uint8): the file is damaged, or not numpy's"
    )


def test_a_header_too_long_to_be_numpys_is_not_read(tmp_path: Path) -> None:
    data = b"\x93NUMPY\x02\x00" + (2**31).to_bytes(4, "little") + b"{" * 64
    path = _zip_member(tmp_path / "d.npz", "y_test.npy", data)
    assert _refused(path, MNIST) == (
        f"{path}: cannot read as an .npz file: y_test.npy: its .npy header claims "
        "2,147,483,648 bytes; numpy reads at most 10,000"
    )


def test_a_member_that_is_not_an_npy_array(tmp_path: Path) -> None:
    path = _zip_member(tmp_path / "d.npz", "x_test.npy", b"hello, world")
    assert _refused(path, MNIST) == (
        f"{path}: cannot read as an .npz file: x_test.npy: the magic string is not "
        "correct; expected b'\\x93NUMPY', got b'hello,'"
    )


# --- files that are not an .npz at all ------------------------------------------


def _npy(path: Path) -> None:
    np.save(path.with_suffix(".npy"), np.zeros((3, 28, 28), np.uint8))
    path.with_suffix(".npy").rename(path)


SAVEZ = "not an .npz archive (numpy's savez format)"
NOT_NPZ: list[tuple[str, Callable[[Path], object], str]] = [
    (
        "npy",
        _npy,
        f"is a single NumPy array (an .npy file, numpy's save format), {SAVEZ}; save "
        "the four arrays into one file with np.savez(path, x_train=..., y_train=..., "
        "x_test=..., y_test=...)",
    ),
    (
        "png",
        lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(20)),
        f"is a PNG image, {SAVEZ}",
    ),
    (
        "jpeg",
        lambda p: p.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(20)),
        f"is a JPEG image, {SAVEZ}",
    ),
    (
        "gzip",
        lambda p: p.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + bytes(12))),
        f"is a gzip file, {SAVEZ}",
    ),
    (
        "text",
        lambda p: p.write_text("x_train,y_train\n1,2\n"),
        f"is a text file, {SAVEZ}",
    ),
    ("empty", lambda p: p.write_bytes(b""), f"is empty, {SAVEZ}"),
    (
        "pickle",
        lambda p: p.write_bytes(b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00"),
        f"is a Python pickle, {SAVEZ}",
    ),
    (
        "bytes",
        lambda p: p.write_bytes(bytes(range(7, 40)) + b"\x00\xff"),
        f"is not a zip file (it starts with bytes 07 08 09 0a 0b 0c 0d 0e), {SAVEZ}",
    ),
]


@pytest.mark.parametrize(("kind", "make", "said"), NOT_NPZ, ids=[c[0] for c in NOT_NPZ])
def test_a_file_that_is_not_an_npz_is_said_what_it_is(
    tmp_path: Path, kind: str, make: Callable[[Path], object], said: str
) -> None:
    path = tmp_path / "mnist.npz"
    make(path)
    assert _refused(path, MNIST) == f"{path}: {said}"


def test_a_truncated_zip_is_named(tmp_path: Path) -> None:
    path = make_mnist_npz(tmp_path / "mnist.npz", n_train=20, n_test=10)
    path.write_bytes(path.read_bytes()[:-300])
    assert _refused(path, MNIST) == (
        f"{path}: cannot read as an .npz file: File is not a zip file"
    )


# --- Keras' IDX folder: headers first too --------------------------------------------


def test_idx_images_of_another_size_are_refused_from_their_headers(
    tmp_path: Path,
) -> None:
    folder = make_fashion_idx(tmp_path / "fashion-mnist")
    images = folder / "t10k-images-idx3-ubyte.gz"
    header = b"\x00\x00\x08\x03" + b"".join(d.to_bytes(4, "big") for d in (32, 29, 28))
    images.write_bytes(gzip.compress(header))  # no data: it is never read
    with pytest.raises(BuildError) as err:
        load_dataset(RECIPES["fashion_mnist"], folder, env={})
    assert str(err.value) == (
        f"{folder}: not usable as Fashion-MNIST data:\n"
        "  - x_test has shape (32, 29, 28); expected (N, 28, 28)"
    )


def test_idx_data_longer_than_its_header_says_is_refused(tmp_path: Path) -> None:
    folder = make_fashion_idx(tmp_path / "fashion-mnist")
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(gzip.decompress(labels.read_bytes()) + b"\x01"))
    with pytest.raises(BuildError) as err:
        load_dataset(RECIPES["fashion_mnist"], folder, env={})
    assert str(err.value) == (
        f"{labels}: holds more data than its header's shape (32,)"
    )


# --- where the data path comes from ------------------------------------------------


def test_a_spec_data_path_is_read_from_the_specs_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "specs" / "data").mkdir(parents=True)
    _save(tmp_path / "specs" / "data" / "d.npz", _floats())
    monkeypatch.chdir(tmp_path)
    where = SpecPath(
        "train.data", "specs/s.yaml", "data/d.npz", str(tmp_path / "specs")
    )
    data = load_dataset(NPZ, spec_path=where, env={})
    assert data.source == os.path.join("specs", "data", "d.npz")


def test_a_missing_spec_data_path_names_the_field_and_the_folder(
    tmp_path: Path,
) -> None:
    where = SpecPath("train.data", "specs/s.yaml", "data/x.npz", str(tmp_path))
    with pytest.raises(BuildError) as err:
        load_dataset(NPZ, spec_path=where, env={})
    assert str(err.value) == (
        "train.data (in specs/s.yaml): data/x.npz: no such file (resolved against "
        f"the spec's folder: {tmp_path})"
    )


def test_the_data_option_wins_over_the_spec_and_is_named_as_such(
    tmp_path: Path,
) -> None:
    where = SpecPath("train.data", "s.yaml", "d.npz", str(tmp_path))
    _save(tmp_path / "d.npz", _floats())
    with pytest.raises(BuildError) as err:
        load_dataset(NPZ, tmp_path / "other.npz", spec_path=where, env={})
    assert str(err.value) == f"--data {tmp_path / 'other.npz'}: no such file"


def test_a_folder_given_for_the_npz_recipe(tmp_path: Path) -> None:
    with pytest.raises(BuildError) as err:
        load_dataset(NPZ, tmp_path, env={})
    assert str(err.value) == f"--data {tmp_path}: is a folder, not an .npz file"


def test_a_file_given_for_an_idx_recipe(tmp_path: Path) -> None:
    (tmp_path / "f.gz").write_bytes(b"")
    with pytest.raises(BuildError) as err:
        load_dataset(RECIPES["fashion_mnist"], tmp_path / "f.gz", env={})
    assert str(err.value) == (
        f"--data {tmp_path / 'f.gz'}: is a file, not Keras' fashion-mnist/ folder"
    )


# --- what the pixels mean ----------------------------------------------------------


def test_the_mnist_recipes_say_what_their_pixels_mean() -> None:
    assert RECIPES["mnist"].pixels is not None
    assert "white digit on black" in RECIPES["mnist"].pixels
    assert "centre of mass" in RECIPES["mnist"].pixels
    assert RECIPES["fashion_mnist"].pixels is not None
    assert "light garment" in RECIPES["fashion_mnist"].pixels
    assert NPZ.pixels is None


FLOAT_SPEC = """\
name: floats
input: {shape: [4]}
layers:
  - {type: dense, units: 3, activation: softmax}
train: {recipe: npz, num_classes: 3, epochs: 1, batch_size: 2}
"""


def test_a_build_on_nan_training_data_fails_before_training(tmp_path: Path) -> None:
    from l2compile import build as builder

    from .conftest import compiled

    x = _floats()["x_train"].copy()
    x[5, 3] = np.nan
    path = _save(tmp_path / "d.npz", _floats(x_train=x))
    spec = compiled(tmp_path, FLOAT_SPEC)
    with pytest.raises(BuildError) as err:
        builder.build(spec.plan, spec.code, tmp_path / "out", data=path, log=print)
    assert str(err.value) == (
        f"{path}: not usable as npz data:\n"
        "  - x_train holds a value that is not finite (NaN) at x_train[5, 3]"
    )
    assert not (tmp_path / "out").exists()
