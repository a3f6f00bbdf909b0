"""The user's own .npz: arrays x_train, y_train, x_test, y_test, of any task."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from l2compile.layers.base import py_str
from l2compile.sources.base import Request, Source, register

if TYPE_CHECKING:
    from l2compile.datasets import Dataset
    from l2compile.recipes import ModelInput


@register
@dataclass(frozen=True)
class Npz(Source):
    name: ClassVar[str] = "npz"
    title: ClassVar[str] = "npz"
    own_data: ClassVar[bool] = True
    any_task: ClassVar[bool] = True
    fields: ClassVar[frozenset[str]] = frozenset({"data", "num_classes", "labels"})

    @property
    def data_help(self) -> str:
        return py_str(".npz with x_train, y_train, x_test, y_test")

    @property
    def classes_origin(self) -> str:
        return f"train.num_classes is {self.num_classes}"

    def read(self, request: Request) -> Dataset:
        from l2compile import datasets

        return datasets.find_file(self, request)

    def read_found(self, path: Path, model_input: ModelInput | None) -> Dataset:
        from l2compile import datasets

        return datasets.read_npz(self, path, model_input)
