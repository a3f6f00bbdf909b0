"""A folder of text documents, one subfolder per class (with train/ and
test/, or split by test_split), tokenized as MediaPipe's TextClassifier
tokenizes text: the model reads token ids (l2compile.text)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from l2compile.errors import BuildError
from l2compile.layers.base import py_str
from l2compile.sources.base import ReadsText, Request, register

if TYPE_CHECKING:
    from l2compile.datasets import Dataset


@register
@dataclass(frozen=True)
class TextFolder(ReadsText):
    name: ClassVar[str] = "text_folder"
    title: ClassVar[str] = "text folder"
    own_data: ClassVar[bool] = True
    classes_from_data: ClassVar[bool] = True
    folder: ClassVar[bool] = True
    wanted: ClassVar[str] = "a folder of text documents"
    fields: ClassVar[frozenset[str]] = frozenset({"data", "test_split", "text"})
    imports: ClassVar[tuple[str, ...]] = ReadsText.text_imports
    example: ClassVar[str] = "documents/"

    def constants(self) -> list[tuple[str, str, str]]:
        return [*super().constants(), *self.text_constants()]

    @property
    def data_help(self) -> str:
        return py_str("folder of .txt documents, one subfolder per class")

    def sample_text(self, dtype: str, shape: Sequence[int] = ()) -> str:
        return "a document as " + super().sample_text(dtype, shape).removeprefix(
            "a text as "
        )

    def new_texts(self, data: Path) -> tuple[list[str], list[str]]:
        """A .txt file, or every .txt file under a folder; keyed by path."""
        from l2compile import documents

        paths, keys = documents.new_documents(data)
        return keys, [documents.read_document(path) for path in paths]

    def read(self, request: Request) -> Dataset:
        from l2compile import datasets, documents

        given = request.given
        assert given is not None and request.model_input is not None
        if not given.is_dir():
            origin = request.spec_path if request.data is None else None
            raise BuildError(datasets.missing(self, given, given, origin))
        return documents.read_folder(
            self,
            given,
            seed=request.seed,
            model_input=request.model_input,
            vocabulary=request.vocabulary,
        )


__all__ = ["TextFolder"]
