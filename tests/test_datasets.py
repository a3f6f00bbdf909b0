"""Where a recipe's data comes from, in order, and what is accepted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from l2compile.datasets import Dataset, load_dataset
from l2compile.errors import BuildError
from l2compile.sources import RECIPES
from l2compile.sources import Source as Recipe

from .conftest import ROOT, make_fashion_idx, make_mnist_npz

MNIST = RECIPES["mnist"]


def no_download(recipe: Recipe) -> Dataset:
    raise AssertionError("should not download")


def offline(recipe: Recipe) -> Dataset:
    raise Exception(
        "URL fetch failure on https://example.invalid/mnist.npz: None -- "
        "[Errno -2] Name or service not known"
    )


@pytest.mark.unit
def test_data_option_file_is_used(tmp_path: Path) -> None:
    path = make_mnist_npz(tmp_path / "any-name.npz", n_train=20, n_test=10)
    data = load_dataset(MNIST, path, env={}, download=no_download)
    assert data.source == str(path)
    assert data.x_train.shape == (20, 28, 28)
    assert data.y_test.shape == (10,)


@pytest.mark.unit
def test_data_option_folder_holds_the_recipe_file(tmp_path: Path) -> None:
    path = make_mnist_npz(tmp_path / "mnist.npz")
    data = load_dataset(MNIST, tmp_path, env={}, download=no_download)
    assert data.source == str(path)


@pytest.mark.unit
def test_data_option_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError) as err:
        load_dataset(MNIST, tmp_path / "missing.npz", env={}, download=no_download)
    assert str(err.value) == f"--data {tmp_path / 'missing.npz'}: no such file"


@pytest.mark.unit
def test_data_option_folder_without_the_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError) as err:
        load_dataset(MNIST, tmp_path, env={}, download=no_download)
    assert str(err.value) == (
        f"--data {tmp_path}: no such file (looked for {tmp_path / 'mnist.npz'})"
    )


@pytest.mark.unit
def test_env_folder_comes_before_the_keras_cache(tmp_path: Path) -> None:
    env_file = make_mnist_npz(tmp_path / "env" / "mnist.npz", seed=1)
    make_mnist_npz(tmp_path / "keras" / "datasets" / "mnist.npz", seed=2)
    env = {
        "L2COMPILE_DATA": str(tmp_path / "env"),
        "KERAS_HOME": str(tmp_path / "keras"),
    }
    assert load_dataset(MNIST, None, env=env, download=no_download).source == str(
        env_file
    )


@pytest.mark.unit
def test_keras_cache_is_used_when_the_env_folder_lacks_the_file(tmp_path: Path) -> None:
    cached = make_mnist_npz(tmp_path / "keras" / "datasets" / "mnist.npz")
    env = {
        "L2COMPILE_DATA": str(tmp_path / "empty"),
        "KERAS_HOME": str(tmp_path / "keras"),
    }
    assert load_dataset(MNIST, None, env=env, download=no_download).source == str(
        cached
    )


@pytest.mark.unit
def test_keras_cache_under_home_without_keras_home(tmp_path: Path) -> None:
    cached = make_mnist_npz(tmp_path / ".keras" / "datasets" / "mnist.npz")
    env = {"HOME": str(tmp_path)}
    assert load_dataset(MNIST, None, env=env, download=no_download).source == str(
        cached
    )


@pytest.mark.unit
def test_download_is_the_last_resort(tmp_path: Path) -> None:
    calls = []

    def download(recipe: Recipe) -> Dataset:
        calls.append(recipe.name)
        x = np.zeros((1, 28, 28), np.uint8)
        y = np.zeros((1,), np.uint8)
        return Dataset(x, y, x, y, "downloaded")

    env = {"KERAS_HOME": str(tmp_path / "keras")}
    assert load_dataset(MNIST, None, env=env, download=download).source == "downloaded"
    assert calls == ["mnist"]


@pytest.mark.unit
def test_offline_without_a_file_says_what_to_put_where(tmp_path: Path) -> None:
    env = {"KERAS_HOME": str(tmp_path / "keras")}
    with pytest.raises(BuildError) as err:
        load_dataset(MNIST, None, env=env, download=offline)
    assert str(err.value) == (
        "MNIST data not found, and Keras could not download it (URL fetch failure on "
        "https://example.invalid/mnist.npz: None -- [Errno -2] Name or service not "
        "known).\n"
        "Put Keras' mnist.npz (arrays x_train, y_train, x_test, y_test) in one of:\n"
        "  - any path, passed as --data PATH\n"
        "  - a folder named by $L2COMPILE_DATA (not set now)\n"
        f"  - {tmp_path / 'keras' / 'datasets' / 'mnist.npz'} (the Keras cache)"
    )


@pytest.mark.unit
def test_offline_message_names_the_env_folder_when_set(tmp_path: Path) -> None:
    env = {"KERAS_HOME": str(tmp_path / "k"), "L2COMPILE_DATA": str(tmp_path / "d")}
    with pytest.raises(BuildError) as err:
        load_dataset(MNIST, None, env=env, download=offline)
    assert f"  - {tmp_path / 'd' / 'mnist.npz'} ($L2COMPILE_DATA)" in str(err.value)
    assert "(not set now)" not in str(err.value)


def _write(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _good() -> dict[str, np.ndarray]:
    x = np.zeros((4, 28, 28), np.uint8)
    y = np.array([0, 1, 2, 9], np.uint8)
    return {"x_train": x, "y_train": y, "x_test": x, "y_test": y}


@pytest.mark.unit
def test_missing_arrays_are_named(tmp_path: Path) -> None:
    arrays = _good()
    del arrays["y_test"]
    path = _write(tmp_path / "m.npz", **arrays)
    with pytest.raises(BuildError) as err:
        load_dataset(MNIST, path, env={})
    assert str(err.value) == (
        f"{path}: not a MNIST file in Keras' layout: missing arrays y_test "
        "(it has: x_train, y_train, x_test)"
    )


@pytest.mark.unit
def test_content_is_checked_not_the_hash(tmp_path: Path) -> None:
    arrays = _good()
    arrays["x_train"] = np.zeros((4, 784), np.float64)
    arrays["y_test"] = np.array([0, 1, 2, 10], np.int64)
    path = _write(tmp_path / "m.npz", **arrays)
    with pytest.raises(BuildError) as err:
        load_dataset(MNIST, path, env={})
    # Shapes and dtypes come from the headers, before any array is read.
    assert str(err.value) == (
        f"{path}: not usable as MNIST data:\n"
        "  - x_train has dtype float64; expected uint8 pixels\n"
        "  - x_train has shape (4, 784); expected (N, 28, 28)"
    )


@pytest.mark.unit
def test_labels_outside_the_classes_are_named(tmp_path: Path) -> None:
    arrays = _good()
    arrays["y_test"] = np.array([0, 1, 2, 10], np.int64)
    path = _write(tmp_path / "m.npz", **arrays)
    with pytest.raises(BuildError) as err:
        load_dataset(MNIST, path, env={})
    assert str(err.value) == (
        f"{path}: not usable as MNIST data:\n"
        "  - y_test has labels from 0 to 10; expected 0 to 9"
    )


@pytest.mark.unit
def test_pickled_arrays_are_never_loaded(tmp_path: Path) -> None:
    arrays: dict[str, np.ndarray] = _good()
    arrays["y_train"] = np.array([object(), 1], dtype=object)
    path = _write(tmp_path / "m.npz", **arrays)
    with pytest.raises(BuildError) as err:
        load_dataset(MNIST, path, env={})
    assert str(err.value) == (
        f"{path}: not usable as MNIST data:\n"
        "  - y_train holds Python objects (dtype object), which l2compile never "
        "unpickles\n"
        "  - y_train has shape (2,); expected (4,)"
    )


@pytest.mark.unit
def test_a_file_that_is_not_npz(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    path.write_text("not a zip")
    with pytest.raises(BuildError) as err:
        load_dataset(MNIST, path, env={})
    assert str(err.value) == (
        f"{path}: is a text file, not an .npz archive (numpy's savez format)"
    )


@pytest.mark.unit
def test_the_package_never_names_the_workspace_data_folder() -> None:
    for source in (ROOT / "l2compile").rglob("*.py"):
        assert "shared/datasets" not in source.read_text(encoding="utf-8"), source


FASHION = RECIPES["fashion_mnist"]


@pytest.mark.unit
def test_fashion_idx_folder_from_the_env_folder(tmp_path: Path) -> None:
    folder = make_fashion_idx(tmp_path / "data" / "fashion-mnist")
    env = {"L2COMPILE_DATA": str(tmp_path / "data")}
    data = load_dataset(FASHION, None, env=env, download=no_download)
    assert data.source == str(folder)
    assert data.x_train.shape == (64, 28, 28)
    assert data.y_test.shape == (32,)


@pytest.mark.unit
def test_fashion_data_option_is_the_folder_or_its_parent(tmp_path: Path) -> None:
    folder = make_fashion_idx(tmp_path / "fashion-mnist")
    for given in (folder, tmp_path):
        data = load_dataset(FASHION, given, env={}, download=no_download)
        assert data.source == str(folder)


@pytest.mark.unit
def test_fashion_in_the_keras_cache(tmp_path: Path) -> None:
    folder = make_fashion_idx(tmp_path / "k" / "datasets" / "fashion-mnist")
    env = {"KERAS_HOME": str(tmp_path / "k")}
    assert load_dataset(FASHION, None, env=env, download=no_download).source == str(
        folder
    )


@pytest.mark.unit
def test_a_truncated_idx_file_is_named(tmp_path: Path) -> None:
    import gzip

    folder = make_fashion_idx(tmp_path / "fashion-mnist")
    bad = folder / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(gzip.decompress(bad.read_bytes())[:-5]))
    with pytest.raises(BuildError) as err:
        load_dataset(FASHION, folder, env={}, download=no_download)
    assert str(err.value) == f"{bad}: holds 25083 bytes of data, not (32, 28, 28)"


@pytest.mark.build
def test_generated_fashion_loader_reads_the_same_arrays(tmp_path: Path) -> None:
    from l2compile.contract import GeneratedModule, import_generated
    from l2compile.generate import compile_spec

    folder = make_fashion_idx(tmp_path / "fashion-mnist")
    compiled = compile_spec(ROOT / "specs" / "fashion_mnist.yaml")
    assert not isinstance(compiled, list)
    (tmp_path / "fashion_mlp.py").write_text(compiled.code)
    module: GeneratedModule = import_generated(
        tmp_path / "fashion_mlp.py", "fashion_loader"
    )
    (x_train, y_train), (x_test, y_test) = module.load_data(str(folder))
    ours = load_dataset(FASHION, folder, env={}, download=no_download)
    np.testing.assert_array_equal(x_train, ours.x_train)
    np.testing.assert_array_equal(y_train, ours.y_train)
    np.testing.assert_array_equal(x_test, ours.x_test)
    np.testing.assert_array_equal(y_test, ours.y_test)


@pytest.mark.unit
def test_offline_fashion_message_names_the_folder_and_its_files(tmp_path: Path) -> None:
    env = {"KERAS_HOME": str(tmp_path / "k"), "L2COMPILE_DATA": str(tmp_path / "d")}
    with pytest.raises(BuildError) as err:
        load_dataset(FASHION, None, env=env, download=offline)
    assert str(err.value).splitlines()[1:] == [
        "Put Keras' fashion-mnist/ folder (train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz) in one of:",
        "  - any path, passed as --data PATH",
        f"  - {tmp_path / 'd' / 'fashion-mnist'} ($L2COMPILE_DATA)",
        f"  - {tmp_path / 'k' / 'datasets' / 'fashion-mnist'} (the Keras cache)",
    ]


@pytest.mark.unit
def test_a_truncated_npz_is_named(tmp_path: Path) -> None:
    path = make_mnist_npz(tmp_path / "mnist.npz", n_train=20, n_test=10)
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(BuildError) as err:
        load_dataset(MNIST, path, env={})
    assert str(err.value).startswith(f"{path}: cannot read as an .npz file: ")
