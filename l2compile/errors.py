"""Errors as values: every problem a user can cause carries its place."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

#: A path into the spec document: mapping keys and sequence indexes.
FieldPath = tuple[str | int, ...]


def format_path(path: FieldPath) -> str:
    """Render a field path the way a user writes it: ``layers[1].activation``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def closest(word: object, choices: Iterable[str]) -> str | None:
    """The valid name closest to a misspelled one, if any is close enough."""
    if not isinstance(word, str):
        return None
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def some_of(names: Sequence[str], limit: int = 5) -> str:
    """Names for a message: `a, b, c and 4 more`."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def spoken_list(names: Sequence[str]) -> str:
    """Names as a sentence lists them: `a`, `a and b`, `a, b and c`."""
    if len(names) < 2:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


@dataclass(frozen=True)
class SpecError:
    """One problem in a spec file, with its place and, where known, a fix."""

    file: str
    line: int | None
    column: int | None
    path: FieldPath
    message: str
    suggestion: str | None = None
    expected: tuple[str, ...] = ()
    #: error: nothing is generated; warning: generated, but likely not what
    #: the spec means.
    level: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: {self.level}: "
        if self.path:
            text += f"{format_path(self.path)}: "
        text += self.message
        if self.suggestion is not None:
            text += f"; did you mean {self.suggestion!r}?"
        elif self.expected:
            text += f" (expected one of: {', '.join(self.expected)})"
        return text


class SpecErrors(Exception):
    """Raised at the edge (CLI, build) to carry a file's collected errors."""

    def __init__(self, errors: Sequence[SpecError]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


class BuildError(Exception):
    """A build could not finish: missing data, failed training or export."""


class Diverged(BuildError):
    """Training stopped on a loss that is not finite."""


class NotLearned(BuildError):
    """A model that does not beat the trivial baseline, where the build
    requires learning; its epochs are kept for --resume."""


class ParityError(BuildError):
    """A TFLite file predicts worse than allowed; its artifacts are kept."""


class Interrupted(KeyboardInterrupt):
    """A build stopped by Ctrl-C or SIGTERM after finishing some epochs, whose
    state was kept in its work folder for `--resume`."""

    def __init__(self, work: Path, epoch: int, epochs: int) -> None:
        super().__init__(f"interrupted after epoch {epoch} of {epochs}")
        self.work = work
        self.epoch = epoch
        self.epochs = epochs
