"""The image_folder recipe's data side: how a folder is listed and split, and
the bad folders a build refuses before training, each with its exact message."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from l2compile import images
from l2compile.datasets import Dataset, load_dataset
from l2compile.errors import BuildError
from l2compile.recipes import ModelInput
from l2compile.sources import source_for
from l2compile.tasks import Classification

from .conftest import SHAPES, make_image_folder, write_png

THREE = ModelInput(
    (16, 16, 1),
    task=Classification(
        loss_name="sparse_categorical_crossentropy",
        metric_names=("accuracy",),
        outputs=3,
        names=("0", "1", "2"),
    ),
)


def _read(folder: Path, test_split: float | None = None, seed: int = 0) -> Dataset:
    recipe = source_for("image_folder", data=str(folder), test_split=test_split)
    return load_dataset(recipe, folder, model_input=THREE, env={}, seed=seed)


def _refused(folder: Path, test_split: float | None = None) -> str:
    with pytest.raises(BuildError) as caught:
        _read(folder, test_split)
    return str(caught.value)


@pytest.mark.unit
def test_a_split_folder_gives_paths_and_sorted_class_ids(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "photos", per_class=4)
    data = _read(root)
    assert data.classes == SHAPES
    assert len(data.x_train) == 12 and len(data.x_test) == 6
    assert data.y_train.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert data.x_train[4] == str(root / "train" / "square" / "000.png")
    assert data.x_train.dtype.kind == "U"  # paths, not pixels


@pytest.mark.unit
def test_test_split_is_seeded_stratified_and_disjoint(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "photos", split=False, per_class=10)
    first, again = _read(root, 0.2), _read(root, 0.2)
    other = _read(root, 0.2, seed=1)
    assert first.x_test.tolist() == again.x_test.tolist()
    assert first.x_test.tolist() != other.x_test.tolist()
    assert np.bincount(first.y_test).tolist() == [2, 2, 2]  # 20 % of each class
    assert not set(first.x_train) & set(first.x_test)
    assert len(first.x_train) + len(first.x_test) == 30


@pytest.mark.unit
def test_files_of_other_kinds_are_left_alone(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "photos", per_class=2)
    (root / "train" / "circle" / "notes.txt").write_text("not an image")
    (root / "train" / "circle" / "UPPER.PNG").write_bytes(
        (root / "train" / "circle" / "000.png").read_bytes()
    )
    data = _read(root)
    names = [Path(p).name for p in data.x_train[data.y_train == 0]]
    assert names == ["000.png", "001.png", "UPPER.PNG"]


@pytest.mark.unit
def test_a_class_missing_from_test_is_named(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "photos", per_class=2)
    for file in (root / "test" / "square").iterdir():
        file.unlink()
    (root / "test" / "square").rmdir()
    assert _refused(root) == (
        f"{root}/test: has no class folder 'square', which {root}/train has "
        "(train and test need the same classes)"
    )


@pytest.mark.unit
def test_an_extra_class_in_test_is_named(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "photos", per_class=2)
    write_png(root / "test" / "zebra" / "a.png", np.zeros((4, 4, 1), np.uint8))
    assert _refused(root) == (
        f"{root}/test/zebra: a class folder {root}/train does not have "
        "(train and test need the same classes)"
    )


@pytest.mark.unit
def test_an_empty_class_is_named(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "photos", per_class=2)
    (root / "train" / "empty").mkdir()
    (root / "train" / "empty" / "readme.txt").write_text("nothing here")
    assert _refused(root) == (
        f"{root}/train/empty: no images (.bmp, .gif, .jpeg, .jpg, .png): every "
        "class needs some"
    )


@pytest.mark.unit
def test_a_file_that_is_no_image_is_named(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "photos", per_class=2)
    bad = root / "train" / "stripes" / "001.png"
    bad.write_text("id,label\n1,2\n")
    assert _refused(root) == f"{bad}: is not a BMP, GIF, JPEG or PNG image"
    bad.write_bytes(b"")
    assert _refused(root) == f"{bad}: is empty"


@pytest.mark.unit
def test_a_folder_without_test_needs_test_split(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "photos", split=False, per_class=2)
    assert _refused(root) == (
        f"{root}: has no train/ and test/ folders; put the class folders in "
        "both, or set train.test_split to test on a share of each class"
    )


@pytest.mark.unit
def test_test_split_with_a_test_folder_is_refused(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "photos", per_class=2)
    assert _refused(root, 0.2) == (
        f"{root}: has train/ and test/ folders, so train.test_split has nothing "
        f"to split; remove it, or put the class folders directly in {root}"
    )


@pytest.mark.unit
def test_a_class_too_small_to_split_is_named(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "photos", split=False, per_class=1)
    assert _refused(root, 0.6) == (
        f"{root}/circle: train.test_split 0.6 of its 1 images leaves none to train on"
    )


@pytest.mark.unit
def test_classes_must_match_the_last_layer(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "photos", per_class=2)
    write_png(root / "train" / "zebra" / "a.png", np.zeros((4, 4, 1), np.uint8))
    write_png(root / "test" / "zebra" / "a.png", np.zeros((4, 4, 1), np.uint8))
    assert _refused(root) == (
        f"{root}: has 4 class folders (circle, square, stripes, zebra), but the "
        "last layer has 3 units, one per class"
    )


@pytest.mark.unit
def test_no_class_folders_at_all(tmp_path: Path) -> None:
    (tmp_path / "photos" / "train").mkdir(parents=True)
    (tmp_path / "photos" / "test").mkdir()
    root = tmp_path / "photos"
    assert _refused(root) == (
        f"{root}/train: no class folders; put each class's images in a folder "
        "named after the class"
    )


@pytest.mark.unit
def test_a_file_given_for_the_folder(tmp_path: Path) -> None:
    file = tmp_path / "photos.zip"
    file.write_bytes(b"PK\x03\x04")
    assert _refused(file) == f"--data {file}: is a file, not a folder of images"


@pytest.mark.build
def test_an_image_that_does_not_decode_is_named(tmp_path: Path) -> None:
    """A file with a PNG's first bytes but a cut-off body passes the listing;
    TensorFlow's decoders find it before training."""
    root = make_image_folder(tmp_path / "photos", per_class=3)
    bad = root / "train" / "square" / "002.png"
    bad.write_bytes(bad.read_bytes()[:40])
    data = _read(root)  # the first bytes are a PNG's
    paths = np.concatenate([data.x_train, data.x_test])
    with pytest.raises(BuildError) as caught:
        images.check_decodable(paths)
    assert str(caught.value) == (
        f"{bad}: is not a decodable image: TensorFlow cannot read it"
    )
    os.remove(bad)
    images.check_decodable(paths[paths != str(bad)])  # the rest decode


@pytest.mark.unit
def test_a_class_folder_name_that_is_not_one_printable_line_is_refused(
    tmp_path: Path,
) -> None:
    root = make_image_folder(tmp_path / "photos", split=False, per_class=4)
    odd = root / "two\nlines"
    write_png(odd / "a.png", np.zeros((4, 4, 1), np.uint8))
    assert _refused(root, 0.5) == (  # the folder as a plain path, the name quoted
        f"{root}: a class folder's name, 'two\\nlines', becomes a line of "
        "labels.txt: it must be printable, on one line"
    )


@pytest.mark.unit
def test_a_test_split_that_tests_on_nothing_is_refused(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "photos", split=False, per_class=2)
    assert _refused(root, 0.2) == (
        f"{root}: train.test_split 0.2 of each class's images tests on none: "
        "there are too few; use a larger share"
    )


@pytest.mark.unit
def test_a_symlink_loop_is_named_not_a_traceback(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "photos", per_class=2)
    loop = root / "train" / "loop"
    loop.symlink_to(loop)
    assert _refused(root) == (
        f"{root}/train: cannot list: Too many levels of symbolic links"
    )


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["png", "bmp"])
def test_an_image_declaring_too_many_pixels_is_refused_unread(
    tmp_path: Path, kind: str
) -> None:
    """A decompression bomb: a small file whose header declares 20000x20000
    pixels is refused from its header, before anything decodes it."""
    root = make_image_folder(tmp_path / "photos", channels=3, per_class=2)
    small = root / "train" / "circle" / f"00{0 if kind == 'png' else 1}.{kind}"
    data = bytearray(small.read_bytes())
    big = (20_000).to_bytes(4, "big" if kind == "png" else "little")
    for offset in (16, 20) if kind == "png" else (18, 22):
        data[offset : offset + 4] = big
    small.write_bytes(bytes(data))
    assert _refused(root) == (
        f"{small}: is 20000x20000 pixels, more than the 89,478,485 l2compile "
        "decodes (Pillow's decompression-bomb limit): decoding it could take all "
        "the memory; shrink it"
    )
