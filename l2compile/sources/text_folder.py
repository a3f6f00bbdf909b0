"""A folder of text documents, one subfolder per class (with train/ and
test/, or split by test_split), tokenized as MediaPipe's TextClassifier
tokenizes text: the model reads token ids (l2compile.text)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from l2compile.errors import BuildError
from l2compile.layers.base import PlannedLayer as Layer
from l2compile.layers.base import py_str
from l2compile.sources.base import Report, Request, Source, register
from l2compile.text import (
    SPECIAL,
    VOCABULARY_FILE,
    TextSettings,
    vocabulary_text,
)

if TYPE_CHECKING:
    from l2compile.datasets import Dataset


@register
@dataclass(frozen=True)
class TextFolder(Source):
    name: ClassVar[str] = "text_folder"
    title: ClassVar[str] = "text folder"
    own_data: ClassVar[bool] = True
    classes_from_data: ClassVar[bool] = True
    folder: ClassVar[bool] = True
    wanted: ClassVar[str] = "a folder of text documents"
    fields: ClassVar[frozenset[str]] = frozenset({"data", "test_split", "text"})
    imports: ClassVar[tuple[str, ...]] = (
        "import re",
        "from collections import Counter",
        "from collections.abc import Iterable, Sequence",
    )
    example: ClassVar[str] = "documents/"
    input_dtype: ClassVar[str] = "int32"
    vocabulary_size: ClassVar[bool] = True

    def constants(self) -> list[tuple[str, str, str]]:
        text = self.text or TextSettings()
        return [
            *super().constants(),
            (
                "REGEX",
                py_str(text.regex),
                "tokens are split at its matches (ASCII \\w, as MediaPipe's RE2)",
            ),
            (
                "LOWERCASE",
                repr(text.lowercase),
                "lower-case ASCII letters first (MediaPipe does not)",
            ),
            ("MAX_TOKENS", _int(text.max_tokens), "the most frequent tokens kept"),
            (
                "SPECIAL",
                "(" + ", ".join(py_str(t) for t in SPECIAL) + ")",
                "ids 0, 1 and 2: padding, the start, a token not in the vocabulary",
            ),
            (
                "VOCABULARY_FILE",
                py_str(VOCABULARY_FILE),
                "the vocabulary, one 'token id' a line, beside the model",
            ),
        ]

    @property
    def data_help(self) -> str:
        return py_str("folder of .txt documents, one subfolder per class")

    def sample_text(self, dtype: str, shape: Sequence[int] = ()) -> str:
        return (
            f"a document as {shape[0] if shape else 'max_len'} int32 token ids: "
            "<START>, each token's id, then <PAD> (see tokenizer)"
        )

    def input_json(
        self, shape: Sequence[int], columns: Sequence[Any]
    ) -> dict[str, Any]:
        """How an app makes the ids (MediaPipe's TextClassifier does it from
        the TFLite file's metadata)."""
        text = self.text or TextSettings()
        return {
            "tokenizer": {
                "kind": "MediaPipe's regex tokenizer (RegexTokenizerOptions)",
                "delimiter_regex": text.regex,
                "regex_engine": "RE2: \\w, \\d and \\s are ASCII only",
                "lowercase": text.lowercase,
                "vocabulary_file": VOCABULARY_FILE,
                "special_tokens": {token: i for i, token in enumerate(SPECIAL)},
                "max_len": shape[0] if shape else None,
                "ids": "<START>, then each token's id (<UNKNOWN> where the "
                "vocabulary lacks it), cut at max_len, padded with <PAD>",
                **(
                    {
                        "app": "MediaPipe's TextClassifier does not lower-case: "
                        "lower-case ASCII letters in the text before classify()"
                    }
                    if text.lowercase
                    else {}
                ),
            }
        }

    def check_input(self, shape: Sequence[int], report: Report) -> None:
        if len(shape) != 1:
            report(
                ("input", "shape"),
                "recipe 'text_folder' gives each document as [max_len] token "
                f"ids; got {list(shape)}",
            )

    def refuses_layer(self, layer: Layer) -> str | None:
        if not layer.kind.adapted:
            return None
        return f"a {layer.type} layer cannot read token ids; start with an embedding"

    def check_layers(self, layers: Sequence[Layer], report: Report) -> None:
        super().check_layers(layers, report)
        readers = [layer for layer in layers if "input" in layer.inputs]
        for layer in readers:
            if not layer.reads_ids:
                report(
                    ("layers", layer.index, "type"),
                    f"the model's input is token ids, so the layers reading it "
                    f"look them up: an embedding, not a {layer.type}",
                )

    def files(self, dataset: Dataset) -> dict[str, str]:
        return {VOCABULARY_FILE: vocabulary_text(dataset.vocabulary)}

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


def _int(value: int) -> str:
    """An int literal, with underscores from 10_000 on, as ruff would not
    change it."""
    return f"{value:_}" if value >= 10_000 else str(value)


__all__ = ["TextFolder"]
