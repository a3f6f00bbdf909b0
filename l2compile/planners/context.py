"""The planners' shared state: the spec being planned and the problems found."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from l2compile import backends
from l2compile.backends import Choice, Device
from l2compile.errors import FieldPath, SpecError
from l2compile.recipes import SpecPath
from l2compile.spec import LoadedSpec


class Context:
    """What the planners share: the spec, the file it was read from and its
    folder, build --backend, the device `auto` picks a backend for, and the
    problems found so far."""

    def __init__(
        self,
        loaded: LoadedSpec,
        folder: Path | None,
        backend: Choice | None = None,
        device: Device | None = None,
    ) -> None:
        self.spec = loaded.spec
        self.source = loaded.source
        self.backend_option = backend  # build --backend, which overrides the spec
        self.device: Device = device or backends.device()
        # Paths in a spec are relative to its folder. Without one given, the
        # folder of the name the spec was loaded under, from the working folder
        # (generate.display_path names it so).
        self.folder = os.path.abspath(
            folder if folder is not None else Path(loaded.source.file).parent
        )
        self.errors: list[SpecError] = []
        self.warnings: list[SpecError] = []

    def error(
        self, path: FieldPath, message: str, suggestion: str | None = None
    ) -> None:
        self.errors.append(self.source.error(path, message, suggestion=suggestion))

    def warn(self, path: FieldPath, message: str) -> None:
        """A warning at `path`: the spec is valid, but likely not what it means."""
        self.warnings.append(replace(self.source.error(path, message), level="warning"))

    def spec_path(self, field_name: str, written: str | None) -> SpecPath | None:
        """A path the spec writes at `field_name`, resolved against its folder."""
        if written is None:
            return None
        return SpecPath(field_name, self.source.file, written, self.folder)


class Planner:
    """One part of planning: it reads the spec and reports into the shared
    context, so that every problem in a spec is found in one pass."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.spec = context.spec
        self.source = context.source
        self.folder = context.folder
        self.backend_option = context.backend_option
        self.device = context.device

    @property
    def errors(self) -> list[SpecError]:
        return self.context.errors

    def error(
        self, path: FieldPath, message: str, suggestion: str | None = None
    ) -> None:
        self.context.error(path, message, suggestion)

    def warn(self, path: FieldPath, message: str) -> None:
        self.context.warn(path, message)
