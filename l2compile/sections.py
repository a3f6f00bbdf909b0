"""The parts of a report page: sections of text, tables, images and callouts,
as `templates/report.html.jinja` lays them out (l2compile.pages assembles a
build's page and a sweep's from them; an export format adds its own section).
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Cell:
    text: str
    number: bool = False


@dataclass(frozen=True)
class Row:
    cells: tuple[Cell, ...]
    best: bool = False


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class Image:
    data: str  #: base64 PNG
    alt: str
    width: int
    height: int


@dataclass(frozen=True)
class Details:
    """Tables folded under a one-line summary (HTML's <details>, no script)."""

    summary: str
    tables: tuple[Table, ...]
    open: bool = False


@dataclass(frozen=True)
class Callout:
    """A line that stands out: the verdict, a warning when `warning`."""

    text: str
    warning: bool = False


@dataclass(frozen=True)
class Section:
    title: str
    notes: tuple[str, ...] = ()
    images: tuple[Image, ...] = ()
    tables: tuple[Table, ...] = ()
    code: str = ""
    anchor: str = ""  #: the section's id, for a link to it
    callout: Callout | None = None
    details: tuple[Details, ...] = ()


def image(png: bytes, alt: str) -> Image:
    """An inline image, with its size from the PNG header."""
    width, height = struct.unpack(">II", png[16:24])
    return Image(base64.b64encode(png).decode("ascii"), alt, width, height)


def number(value: Any) -> Cell:
    """A number as a table shows it: 4 significant digits, - for none."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return Cell("-" if value is None else str(value))
    if isinstance(value, int):
        return Cell(f"{value:,}", number=True)
    if not math.isfinite(value):
        return Cell(str(value), number=True)
    return Cell(f"{value:.4g}", number=True)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    return Table(
        tuple(header),
        tuple(
            Row(tuple(c if isinstance(c, Cell) else number(c) for c in row))
            for row in rows
        ),
    )
