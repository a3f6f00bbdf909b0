"""What the data is checked against: the model's input and the spec's paths.

`ModelInput` is what the model reads and is trained to give; `SpecPath` a
file named in a spec. The data sources themselves are `l2compile.sources`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from l2compile.tasks import Task

__all__ = ["ModelInput", "SpecPath"]


@dataclass(frozen=True)
class ModelInput:
    """What the model reads and is trained to give, for checking data against
    it: each sample's shape; where embeddings read it, how many ids they all
    look up (the smallest input_dim among them); and the task, which says
    what the labels must be (None: the recipe's classes)."""

    shape: tuple[int, ...]
    ids: int | None = None
    task: Task | None = None
    #: The shape is a placeholder, to be derived from the data (a csv's).
    derived: bool = False


@dataclass(frozen=True)
class SpecPath:
    """A file named in a spec, resolved against the spec file's folder (as
    docker-compose and tsconfig resolve theirs), not the working folder."""

    field: str  #: the field that names it, as `train.data`
    spec: str  #: the spec file, as messages name it
    written: str  #: the path as the spec writes it
    folder: str  #: the spec file's folder, absolute

    @property
    def path(self) -> Path:
        """The file, shown relative to the working folder where it is inside it."""
        path = Path(os.path.normpath(Path(self.folder) / self.written))
        try:
            return path.relative_to(Path.cwd().resolve())
        except ValueError:
            return path

    @property
    def origin(self) -> str:
        return f"{self.field} (in {self.spec})"
