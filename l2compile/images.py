"""The image_folder recipe's data: a folder of images, one subfolder per class.

Two layouts, as Keras' `image_dataset_from_directory` reads them:

- `DATA/train/<class>/*` and `DATA/test/<class>/*`: the test split is its own
  folder, and both must have the same class folders;
- `DATA/<class>/*` with `train.test_split`: the test split is a seeded share of
  each class's images (stratified), the same share of every class.

Class names are the folder names, sorted; a class's id is its place among
them. Image files are the ones with an extension of `EXTENSIONS` (any case),
sorted by name; other files are left alone, as Keras leaves them.

Listing and checking the folders happens before anything is trained: a
missing or extra class folder, an empty class, a file that is no image (its
first bytes), an image whose header declares more than l2compile decodes
(`MAX_PIXELS`: every frame of a GIF counts, as TensorFlow decodes them all),
and a number of classes the model's last layer does not have, each stop the
build with the path named. The headers are read without decompressing
anything, and only so far (`MAX_GIF_BLOCKS`, `MAX_JPEG_MARKERS`). JPEG files
whose EXIF orientation turns them, which TensorFlow does not apply, are
counted in one warning. Whether every file decodes is checked by
`check_decodable`, with TensorFlow's own decoders, in the process that trains
(TensorFlow is not imported here otherwise).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

import numpy as np

from l2compile import folders
from l2compile.errors import BuildError
from l2compile.files import open_binary, unreadable
from l2compile.recipes import ModelInput
from l2compile.sources.base import Source as Recipe

if TYPE_CHECKING:
    from l2compile.datasets import Dataset

#: The image files TensorFlow's `decode_image` reads, by extension.
EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
#: The first bytes of each format `decode_image` reads.
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")


#: An image folder's files, for the folder layout's checks.
KIND = folders.Kind(EXTENSIONS, "images", "image_folder")


def read_folder(
    recipe: Recipe, folder: Path, *, seed: int, model_input: ModelInput
) -> Dataset:
    """List and check an image folder: x is the images' paths, y their class ids."""
    from l2compile.datasets import Dataset  # it imports this module

    layout = folders.read_layout(
        KIND, folder, recipe.test_split, seed=seed, model_input=model_input
    )
    rotated = _check_headers([*layout.x_train, *layout.x_test])
    return Dataset(
        layout.x_train,
        layout.y_train,
        layout.x_test,
        layout.y_test,
        str(folder),
        classes=layout.classes,
        train_ids=layout.relative(folder, test=False),
        test_ids=layout.relative(folder, test=True),
        warnings=(_rotated_warning(rotated),) if rotated else (),
    )


#: The most pixels an image may decode to: Pillow's limit against decompression
#: bombs (Image.MAX_IMAGE_PIXELS), beyond which it refuses to open a file. A
#: GIF's frames count together: TensorFlow decodes every one of them.
MAX_PIXELS = 89_478_485
#: The most frames a GIF may have: TensorFlow decodes them all, though the
#: reader keeps only the first.
MAX_GIF_FRAMES = 1_000
#: The most blocks the check walks in a GIF: its records, and the sub-blocks
#: (up to 255 bytes each) its frames' compressed pixels come in. A GIF within
#: MAX_PIXELS needs at most about 530,000 (12-bit codes, one pixel each).
MAX_GIF_BLOCKS = 1_000_000
#: The most markers the check reads in a JPEG before its frame header, each
#: stray byte between them (which libjpeg skips with a warning) counted as one.
MAX_JPEG_MARKERS = 1_000

#: The JPEG frame headers (SOFn) libjpeg reads a size from: baseline,
#: extended, progressive and lossless, Huffman- or arithmetic-coded.
_SOF = frozenset((*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC)))
_SOF |= frozenset(range(0xCD, 0xD0))


@dataclass(frozen=True)
class _Header:
    """What an image file's header says TensorFlow will decode: a canvas of
    width x height pixels, from `frames` frames of `pixels` pixels in all.
    Zeros where the header does not say (the decoder then refuses the file)."""

    width: int = 0
    height: int = 0
    pixels: int = 0
    frames: int = 1
    #: A JPEG whose EXIF orientation turns or mirrors it (TensorFlow does not).
    rotated: bool = False


def _check_headers(paths: list[str]) -> list[str]:
    """Every file starts as an image of a format TensorFlow decodes, of a
    size it can decode: its header's width and height (every frame's, for a
    GIF), before any pixel. The JPEG files whose EXIF orientation turns them."""
    rotated = []
    for path in paths:
        try:
            with open_binary(path) as f:  # never a FIFO's wait
                header = _read_header(f)
        except OSError as exc:
            raise BuildError(f"{path}: {unreadable(exc)}") from exc
        problem = header if isinstance(header, str) else _over_limits(header)
        if problem is not None:
            raise BuildError(f"{path}: {problem}")
        if isinstance(header, _Header) and header.rotated:
            rotated.append(path)
    return rotated


def _read_header(f: BinaryIO) -> _Header | str:
    """An open image file's header, or what is wrong with it."""
    head = f.read(32)
    if not head.startswith(_MAGIC):
        return "is empty" if not head else "is not a BMP, GIF, JPEG or PNG image"
    if head.startswith(b"\xff\xd8"):
        return _jpeg_header(f)
    if head.startswith(b"GIF"):
        return _gif_header(f)
    width, height = _header_size(head)
    return _Header(width, height, width * height)


def _over_limits(header: _Header) -> str | None:
    """How a header passes the limits on what l2compile decodes, if it does."""
    if header.width * header.height > MAX_PIXELS:
        return (
            f"is {header.width}x{header.height} pixels, more than the "
            f"{MAX_PIXELS:,} l2compile decodes (Pillow's decompression-bomb "
            "limit): decoding it could take all the memory; shrink it"
        )
    if header.pixels > MAX_PIXELS:
        return (
            f"is a GIF of {header.frames:,} frames, {header.pixels:,} pixels in "
            f"all, more than the {MAX_PIXELS:,} l2compile decodes (Pillow's "
            "decompression-bomb limit): TensorFlow decodes every frame, though "
            "only the first is trained on; save the first frame alone"
        )
    return None


def _header_size(head: bytes) -> tuple[int, int]:
    """A PNG's or BMP's width and height, from its first 32 bytes (0, 0 where
    the header is too short to say: the decoder then refuses it). A PNG's is
    its IHDR's: TensorFlow's libpng decodes an APNG's default image alone, and
    an APNG's other frames (fcTL) lie within it."""
    if head.startswith(b"\x89PNG") and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head.startswith(b"BM") and len(head) >= 26:
        width = int.from_bytes(head[18:22], "little", signed=True)
        height = int.from_bytes(head[22:26], "little", signed=True)
        return abs(width), abs(height)
    return 0, 0


def _gif_header(f: BinaryIO) -> _Header | str:
    """A GIF's frames, from their image descriptors. TensorFlow's decoder
    (giflib) holds every frame at once, and draws the first on a canvas as wide
    as the widest frame and as tall as the tallest (the logical screen's size
    is not used). Walks the blocks from the start without decompressing:
    color tables, extensions and each frame's data skipped by their lengths."""
    f.seek(10)
    _skip_color_table(f, f.read(3))  # after the background color, aspect ratio
    sizes: list[tuple[int, int]] = []
    blocks = 0
    while (kind := f.read(1)) in (b",", b"!"):  # an image; an extension
        blocks += 1
        if kind == b",":
            if len(sizes) == MAX_GIF_FRAMES:
                return (
                    f"is a GIF of more than {MAX_GIF_FRAMES:,} frames, more than "
                    "l2compile decodes: TensorFlow decodes every frame, though "
                    "only the first is trained on; save the first frame alone"
                )
            place = f.read(9)
            if len(place) < 9:
                break
            width, height = place[4:6], place[6:8]
            sizes.append(
                (int.from_bytes(width, "little"), int.from_bytes(height, "little"))
            )
            _skip_color_table(f, place[8:])
        f.seek(1, os.SEEK_CUR)  # an extension's label; the LZW code size
        blocks += _skip_sub_blocks(f, MAX_GIF_BLOCKS - blocks)
        if blocks > MAX_GIF_BLOCKS:
            return (
                f"is a GIF of more than {MAX_GIF_BLOCKS:,} blocks, more than "
                "l2compile reads to find its frames' sizes; save it again, or "
                "its first frame alone"
            )
    if not sizes:
        return _Header()
    return _Header(
        max(width for width, _ in sizes),
        max(height for _, height in sizes),
        sum(width * height for width, height in sizes),
        len(sizes),
    )


def _skip_color_table(f: BinaryIO, flags: bytes) -> None:
    """Past the color table a GIF's screen or image descriptor announces in
    the first of `flags`."""
    if flags and flags[0] & 0x80:
        f.seek(3 << ((flags[0] & 7) + 1), os.SEEK_CUR)


def _skip_sub_blocks(f: BinaryIO, most: int) -> int:
    """Past a GIF's data sub-blocks, up to their terminator, the file's end,
    or one more than `most` of them: how many it passed."""
    count = 0
    while count <= most and (length := f.read(1)) not in (b"", b"\0"):
        f.seek(length[0], os.SEEK_CUR)
        count += 1
    return count


#: The EXIF orientations that turn or mirror the stored pixels (1: as stored).
_TURNED = frozenset(range(2, 9))


def _jpeg_header(f: BinaryIO) -> _Header | str:
    """A JPEG's width and height, from its frame header (SOFn), reading marker
    by marker from the start as libjpeg does: stray bytes between markers
    skipped (libjpeg warns and goes on), each segment by its length; and
    whether the EXIF data of its first APP1 segment turns it. No size where
    the file ends or a marker libjpeg refuses comes first: the decoder refuses
    it."""
    f.seek(2)
    orientation = None
    after_ff = False  # whether the byte before was 0xFF
    steps = 0
    while steps < MAX_JPEG_MARKERS:
        byte = f.read(1)
        if not byte:
            break
        if byte == b"\xff" and not after_ff:  # a marker's first byte
            after_ff = True
            continue
        steps += 1
        if byte == b"\xff" or not after_ff or byte == b"\x00":
            after_ff = byte == b"\xff"  # fill before a marker; a stray byte
            continue
        after_ff = False
        kind = byte[0]
        if kind in (0xD9, 0xDA):  # the image's end or a scan, before a frame
            break
        if kind == 0x01 or 0xD0 <= kind <= 0xD7:  # markers without a length
            continue
        length = int.from_bytes(f.read(2), "big") - 2
        if length < 0:
            break
        if kind in _SOF:
            frame = f.read(5)
            if len(frame) < 5:
                break
            width = int.from_bytes(frame[3:5], "big")
            height = int.from_bytes(frame[1:3], "big")
            return _Header(
                width, height, width * height, rotated=orientation in _TURNED
            )
        if kind == 0xE1 and orientation is None:
            orientation = _exif_orientation(f.read(length))
        else:
            f.seek(length, os.SEEK_CUR)
    else:
        return (
            f"has more than {MAX_JPEG_MARKERS:,} markers and stray bytes before "
            "its frame header, more than l2compile reads to find its size; save "
            "it again"
        )
    return _Header(rotated=orientation in _TURNED)


def _exif_orientation(segment: bytes) -> int:
    """The orientation (tag 0x0112 of the first image file directory) in an
    APP1 segment's EXIF data; 1 (as stored) where it has none."""
    tiff = segment[6:] if segment.startswith(b"Exif\0\0") else b""
    order: Literal["little", "big"]
    if tiff[:2] == b"II":
        order = "little"
    elif tiff[:2] == b"MM":
        order = "big"
    else:
        return 1
    directory = int.from_bytes(tiff[4:8], order)
    count = int.from_bytes(tiff[directory : directory + 2], order)
    end = min(directory + 2 + 12 * count, len(tiff) - 11)
    for entry in range(directory + 2, end, 12):
        if int.from_bytes(tiff[entry : entry + 2], order) == 0x0112:
            return int.from_bytes(tiff[entry + 8 : entry + 10], order)
    return 1


def _rotated_warning(paths: list[str]) -> str:
    """The one warning for the JPEG files an EXIF orientation turns."""
    if len(paths) == 1:
        some, they, them = f"{paths[0]}: has", "it is", "it"
    else:
        some = f"{len(paths):,} JPEG images (the first: {paths[0]}) have"
        they, them = "they are", "them"
    return (
        f"warning: {some} an EXIF orientation, which TensorFlow's decoder does "
        f"not apply: {they} trained as stored, turned or mirrored from how a "
        f"photo viewer shows {them}; save the pixels turned (exiftran -ai, or "
        "Pillow's ImageOps.exif_transpose) to train on what a viewer shows"
    )


def check_decodable(paths: np.ndarray) -> None:
    """Every image decodes with TensorFlow's decoders (raise BuildError naming
    the first that does not). Runs where training runs: it imports TensorFlow."""
    import tensorflow as tf

    def decode(index: tf.Tensor, path: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(
            tf.io.read_file(path), channels=3, expand_animations=False
        )
        return index + 0 * tf.cast(tf.size(image[:1, :1, :1]), tf.int64)

    indices = tf.data.Dataset.from_tensor_slices(
        (np.arange(len(paths), dtype=np.int64), paths)
    )
    decoded = indices.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    decoded = decoded.ignore_errors()
    good = np.zeros(len(paths), dtype=bool)
    for batch in decoded.batch(4096).as_numpy_iterator():
        good[batch] = True
    if not good.all():
        bad = paths[np.argmin(good)]
        count = int(np.count_nonzero(~good))
        more = f" ({count} files do not)" if count > 1 else ""
        raise BuildError(
            f"{bad}: is not a decodable image: TensorFlow cannot read it{more}"
        )


def new_images(path: Path) -> tuple[list[str], list[str]]:
    """The images predict reads (`folders.files_under`), each checked as a
    build checks its images, with each one's key."""
    found, keys = folders.files_under(KIND, path)
    _check_headers(found)
    return found, keys
