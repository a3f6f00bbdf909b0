"""Data sources: each kind in one module of this package, with one template
fragment (templates/sources/<name>.py.jinja). See `base` for the protocol.

Importing the package registers every source below, in this order: the order
the JSON Schema and the spec's messages list them.
"""

from __future__ import annotations

import importlib

from l2compile.sources.base import (
    SOURCES,
    KerasDataset,
    Report,
    Request,
    Source,
    register,
    source_for,
)

#: The modules that hold the sources, in the order they are listed.
FAMILIES = (
    "mnist",
    "fashion_mnist",
    "npz",
    "csv",
    "parquet",
    "image_folder",
    "text_folder",
)

for _family in FAMILIES:
    importlib.import_module(f"l2compile.sources.{_family}")

#: The Keras datasets, as found with no spec's say.
RECIPES = {
    name: kind() for name, kind in SOURCES.items() if issubclass(kind, KerasDataset)
}

__all__ = [
    "FAMILIES",
    "RECIPES",
    "SOURCES",
    "KerasDataset",
    "Report",
    "Request",
    "Source",
    "register",
    "source_for",
]
