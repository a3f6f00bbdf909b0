"""What an image folder's header check bounds before TensorFlow decodes a
pixel (issue 27): every frame of a GIF, a JPEG's frame header past stray
bytes, the work the check itself does, and the JPEG files an EXIF orientation
turns. The files are written here, by hand where a decoder must never see
them, with Pillow where TensorFlow must decode them."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from l2compile import images
from l2compile.datasets import Dataset, load_dataset
from l2compile.errors import BuildError
from l2compile.recipes import ModelInput
from l2compile.sources import source_for
from l2compile.tasks import Classification

from .conftest import make_image_folder

THREE = ModelInput(
    (16, 16, 3),
    task=Classification(
        loss_name="sparse_categorical_crossentropy",
        metric_names=("accuracy",),
        outputs=3,
        names=("0", "1", "2"),
    ),
)

BOMB = (
    "is 20000x20000 pixels, more than the 89,478,485 l2compile decodes "
    "(Pillow's decompression-bomb limit): decoding it could take all the "
    "memory; shrink it"
)

#: A frame's LZW data: minimum code size 2, then one sub-block holding the
#: 3-bit codes clear (4), pixel 0 and end (5), then the terminator. It ends
#: long before a large frame is whole: only the descriptors can refuse it.
_LZW = bytes([2, 2, 0x44, 0x01, 0])


def _read(folder: Path) -> Dataset:
    recipe = source_for("image_folder", data=str(folder))
    return load_dataset(recipe, folder, model_input=THREE, env={}, seed=0)


def _refused(folder: Path) -> str:
    with pytest.raises(BuildError) as caught:
        _read(folder)
    return str(caught.value)


def _folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "photos", channels=3, per_class=2)


def _gif(screen: tuple[int, int], frames: list[tuple[int, int]]) -> bytes:
    """A GIF by hand: a logical screen, a two-color table, and one image
    descriptor (with `_LZW`) per frame size."""
    out = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\0" * 3
    out += b"\xff" * 3
    for width, height in frames:
        out += b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + _LZW
    return out + b";"


def _jpeg(*, progressive: bool = False, size: int = 16) -> bytes:
    buffer = io.BytesIO()
    pixels = np.full((size, size, 3), 90, np.uint8)
    Image.fromarray(pixels).save(buffer, "JPEG", progressive=progressive)
    return buffer.getvalue()


def _declaring(jpeg: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header (SOF0 or SOF2) declaring another size."""
    at = max(jpeg.find(b"\xff\xc0"), jpeg.find(b"\xff\xc2"))
    return jpeg[: at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9 :]


def _after_app0(jpeg: bytes, extra: bytes) -> bytes:
    """The JPEG with `extra` between its APP0 segment and the next marker."""
    end = 4 + int.from_bytes(jpeg[4:6], "big")
    return jpeg[:end] + extra + jpeg[end:]


@pytest.mark.unit
@pytest.mark.parametrize(
    "frames",
    [[(20_000, 20_000)], [(10, 10), (20_000, 20_000)], [(20_000, 1), (1, 20_000)]],
    ids=["its-only-frame", "a-later-frame", "thin-frames-make-the-canvas"],
)
def test_a_gif_is_measured_by_its_frames_not_its_logical_screen(
    tmp_path: Path, frames: list[tuple[int, int]]
) -> None:
    """TensorFlow decodes a GIF onto a canvas as wide as its widest frame and
    as tall as its tallest; the 10x10 logical screen says nothing of that."""
    root = _folder(tmp_path)
    bomb = root / "train" / "circle" / "bomb.gif"
    bomb.write_bytes(_gif((10, 10), frames))
    assert _refused(root) == f"{bomb}: {BOMB}"


@pytest.mark.unit
def test_a_gifs_frames_count_together(tmp_path: Path) -> None:
    """Each 6000x6000 frame is within the limit; the decoder holds all three."""
    root = _folder(tmp_path)
    gif = root / "train" / "circle" / "long.gif"
    gif.write_bytes(_gif((6000, 6000), [(6000, 6000)] * 3))
    assert _refused(root) == (
        f"{gif}: is a GIF of 3 frames, 108,000,000 pixels in all, more than the "
        "89,478,485 l2compile decodes (Pillow's decompression-bomb limit): "
        "TensorFlow decodes every frame, though only the first is trained on; "
        "save the first frame alone"
    )


@pytest.mark.unit
def test_a_gif_of_too_many_frames_is_refused(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    gif = root / "train" / "circle" / "flip.gif"
    gif.write_bytes(_gif((1, 1), [(1, 1)] * 1001))
    assert _refused(root) == (
        f"{gif}: is a GIF of more than 1,000 frames, more than l2compile "
        "decodes: TensorFlow decodes every frame, though only the first is "
        "trained on; save the first frame alone"
    )


#: An image descriptor of a 1x1 frame, without a color table.
_ONE_PIXEL = b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0)


@pytest.mark.unit
@pytest.mark.parametrize(
    "blocks",
    [_ONE_PIXEL + b"\2" + b"\1\0" * 200 + b"\0", b"!\xfe\0" * 200],
    ids=["data-sub-blocks", "empty-extensions"],
)
def test_the_gif_walk_stops_after_max_gif_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blocks: bytes
) -> None:
    """However a GIF spends its blocks, the check reads a bounded number."""
    monkeypatch.setattr(images, "MAX_GIF_BLOCKS", 100)
    root = _folder(tmp_path)
    gif = root / "train" / "circle" / "long.gif"
    gif.write_bytes(_gif((1, 1), [])[:-1] + blocks + b";")
    assert _refused(root) == (
        f"{gif}: is a GIF of more than 100 blocks, more than l2compile reads to "
        "find its frames' sizes; save it again, or its first frame alone"
    )


@pytest.mark.unit
@pytest.mark.parametrize(
    ("progressive", "extra"),
    [
        (False, b""),
        (True, b""),
        (False, b"\x00\x12\x34"),
        (False, b"\xff\x00"),
        (False, b"\xff\xff\xff"),
    ],
    ids=["baseline", "progressive", "stray-bytes", "stray-ff00", "fill-bytes"],
)
def test_a_jpeg_is_measured_from_its_frame_header_past_stray_bytes(
    tmp_path: Path, progressive: bool, extra: bytes
) -> None:
    """libjpeg skips stray bytes between markers with a warning and decodes
    on, so the check skips them too rather than give up on the size."""
    root = _folder(tmp_path)
    jpeg = root / "train" / "circle" / "big.jpg"
    big = _declaring(_jpeg(progressive=progressive), 20_000, 20_000)
    jpeg.write_bytes(_after_app0(big, extra))
    assert _refused(root) == f"{jpeg}: {BOMB}"


@pytest.mark.unit
@pytest.mark.parametrize(
    "extra", [b"\xff\xfe\0\2" * 20, b"\0" * 20], ids=["comments", "stray-bytes"]
)
def test_the_jpeg_walk_stops_after_max_jpeg_markers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: bytes
) -> None:
    monkeypatch.setattr(images, "MAX_JPEG_MARKERS", 10)
    root = _folder(tmp_path)
    jpeg = root / "train" / "circle" / "long.jpg"
    jpeg.write_bytes(_after_app0(_jpeg(), extra))
    assert _refused(root) == (
        f"{jpeg}: has more than 10 markers and stray bytes before its frame "
        "header, more than l2compile reads to find its size; save it again"
    )


@pytest.mark.unit
@pytest.mark.parametrize(
    "head", [b"RIFF\x24\0\0\0WEBPVP8 ", b"\xff\x0a\xfa"], ids=["webp", "jpeg-xl"]
)
def test_formats_tensorflow_reads_but_l2compile_does_not_are_refused(
    tmp_path: Path, head: bytes
) -> None:
    """decode_image also reads WebP (animated too) and JPEG XL, whose frames
    the check does not measure: a .png that holds one is refused."""
    root = _folder(tmp_path)
    other = root / "train" / "circle" / "other.png"
    other.write_bytes(head + b"\0" * 40)
    assert _refused(root) == f"{other}: is not a BMP, GIF, JPEG or PNG image"


def _turned(orientation: int, order: bytes) -> bytes:
    """A JPEG with an APP1 segment whose EXIF data holds one tag: the
    orientation, in `order` (b"II": little-endian; b"MM": big-endian)."""
    end = "<" if order == b"II" else ">"
    tiff = order + struct.pack(end + "HI", 42, 8) + struct.pack(end + "H", 1)
    tiff += struct.pack(end + "HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff += struct.pack(end + "I", 0)
    app1 = b"Exif\0\0" + tiff
    jpeg = _jpeg()
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


@pytest.mark.unit
def test_jpegs_an_exif_orientation_turns_are_counted_in_one_warning(
    tmp_path: Path,
) -> None:
    root = _folder(tmp_path)
    (root / "train" / "circle" / "a.jpg").write_bytes(_turned(6, b"II"))
    (root / "train" / "square" / "b.jpg").write_bytes(_turned(3, b"MM"))
    (root / "test" / "square" / "c.jpg").write_bytes(_turned(1, b"MM"))
    data = _read(root)
    assert f"{root}/test/square/c.jpg" in data.x_test  # upright: read, unnamed
    assert data.warnings == (
        f"warning: 2 JPEG images (the first: {root}/train/circle/a.jpg) "
        "have an EXIF orientation, which TensorFlow's decoder does not apply: "
        "they are trained as stored, turned or mirrored from how a photo viewer "
        "shows them; save the pixels turned (exiftran -ai, or Pillow's "
        "ImageOps.exif_transpose) to train on what a viewer shows",
    )
    (root / "train" / "circle" / "a.jpg").unlink()
    assert _read(root).warnings == (
        f"warning: {root}/train/square/b.jpg: has an EXIF orientation, "
        "which TensorFlow's decoder does not apply: it is trained as stored, "
        "turned or mirrored from how a photo viewer shows it; save the pixels "
        "turned (exiftran -ai, or Pillow's ImageOps.exif_transpose) to train on "
        "what a viewer shows",
    )


def _frame_gif(frames: list[tuple[int, int, int]]) -> bytes:
    """A GIF of frames (width, height, gray value) on a 1x1 logical screen,
    each frame's descriptor and data cut from a one-frame GIF Pillow writes."""
    out = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0, 0, 0)
    for width, height, value in frames:
        buffer = io.BytesIO()
        pixels = np.full((height, width), value, np.uint8)
        Image.fromarray(pixels, "L").save(buffer, "GIF")
        one = buffer.getvalue()
        table = 3 << ((one[10] & 7) + 1) if one[10] & 0x80 else 0
        at = one.index(b",", 13 + table)
        descriptor = bytearray(one[at : at + 10])
        descriptor[9] = 0x80 | (one[10] & 7)  # the global table, as its own
        out += bytes(descriptor) + one[13 : 13 + table] + one[at + 10 : -1]
    return out + b";"


def _apng(frames: list[int]) -> bytes:
    buffer = io.BytesIO()
    stills = [Image.fromarray(np.full((8, 12, 3), v, np.uint8)) for v in frames]
    stills[0].save(buffer, "PNG", save_all=True, append_images=stills[1:])
    return buffer.getvalue()


@pytest.mark.build
def test_tensorflow_decodes_what_the_header_check_measures(tmp_path: Path) -> None:
    """The reader's decode (`decode_image`, expand_animations=False) keeps a
    GIF's first frame on a canvas of the widest and tallest frames, and an
    APNG's default image alone: pinned, as the check's sizes rest on them."""
    import tensorflow as tf

    def decoded(data: bytes) -> np.ndarray:
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        return np.asarray(image)

    thin = decoded(_frame_gif([(30, 2, 40), (2, 20, 200)]))
    assert thin.shape == (20, 30, 3)
    animated = decoded(_frame_gif([(12, 8, 40), (12, 8, 200), (12, 8, 120)]))
    assert animated.shape == (8, 12, 3) and (animated == 40).all()
    apng = _apng([10, 120, 240])
    assert b"fcTL" in apng and decoded(apng).shape == (8, 12, 3)
    assert (decoded(apng) == 10).all()
    root = _folder(tmp_path)
    (root / "train" / "circle" / "moving.gif").write_bytes(
        _frame_gif([(12, 8, 40), (12, 8, 200)])
    )
    (root / "train" / "circle" / "moving.png").write_bytes(apng)
    data = _read(root)  # both within the limits
    images.check_decodable(np.concatenate([data.x_train, data.x_test]))
