"""Keras weights files (`.weights.h5`), checked before training: a file
must hold a weight of each shape the model has, and only finite values."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

#: The names Keras loads a whole model's weights from (save_weights).
SUFFIX = ".weights.h5"


def array_shapes(path: Path) -> Counter[tuple[int, ...]] | str:
    """The shapes of the arrays in a weights file, counted (scalars left
    out), or why it is not a weights file."""
    import h5py

    shapes: Counter[tuple[int, ...]] = Counter()
    bad: list[str] = []

    def visit(name: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset) and item.ndim > 0:
            shapes[tuple(int(n) for n in item.shape)] += 1
            if item.dtype.kind == "f" and not _finite(item):
                bad.append(name)

    try:
        with h5py.File(path, "r") as file:
            file.visititems(visit)
    except OSError as error:
        return f"{path} is not a Keras weights file (HDF5): {error}"
    if bad:
        return (
            f"{path}: {bad[0]} holds NaN or infinite values: the file was saved "
            "from a model whose training diverged"
        )
    return shapes


def _finite(item: Any) -> bool:
    import numpy as np

    return bool(np.isfinite(item[()]).all())


def check_weights(path: Path, wanted: Counter[tuple[int, ...]]) -> str | None:
    """Why `path` is not a weights file of a model whose weights have the
    shapes `wanted` (None: it is one)."""
    if not path.is_file():
        return (
            f"{path} is not a file (paths are relative to the spec's folder); "
            "l2compile import --weights-from-model writes one beside the spec"
        )
    if not path.name.endswith(SUFFIX):
        return (
            f"{path} is not named as a Keras weights file ({SUFFIX}, as "
            "save_weights writes it)"
        )
    shapes = array_shapes(path)
    if isinstance(shapes, str):
        return shapes
    if shapes == wanted:
        return None
    missing = sorted(wanted - shapes)
    extra = sorted(shapes - wanted)
    said = []
    if missing:
        said.append("no weight of shape " + ", ".join(map(str, missing[:3])))
    if extra:
        said.append(
            "weights of shapes the model lacks: " + ", ".join(map(str, extra[:3]))
        )
    return (
        f"{path} was saved from another model: it holds {shapes.total():,} "
        f"weights and the model has {wanted.total():,}; it has " + "; ".join(said)
    )
