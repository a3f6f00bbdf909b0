"""What every source of text shares: the model reads token ids, made by
MediaPipe's regex tokenizer (l2compile.text), and the build writes the
vocabulary beside the model. A folder of documents (text_folder) and a csv's
text column (csv_text) are each one source on this base."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from l2compile.layers.base import INPUT, py_str
from l2compile.layers.base import PlannedLayer as Layer
from l2compile.sources.base import Report, Source
from l2compile.text import SPECIAL, VOCABULARY_FILE, TextSettings, vocabulary_text


@dataclass(frozen=True)
class ReadsText(Source):
    """A source whose samples are texts, fed to the model as token ids."""

    input_dtype: ClassVar[str] = "int32"
    vocabulary_size: ClassVar[bool] = True
    #: The standard-library imports of templates/parts/text.py.jinja.
    text_imports: ClassVar[tuple[str, ...]] = (
        "import re",
        "from collections import Counter",
        "from collections.abc import Iterable, Sequence",
    )

    @property
    def settings(self) -> TextSettings:
        return self.text or TextSettings()

    def text_constants(self) -> list[tuple[str, str, str]]:
        """The generated module's tokenizer constants."""
        text = self.settings
        return [
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

    def sample_text(self, dtype: str, shape: Sequence[int] = ()) -> str:
        return (
            f"a text as {shape[0] if shape else 'max_len'} int32 token ids: "
            "<START>, each token's id, then <PAD> (see tokenizer)"
        )

    def input_json(
        self, shape: Sequence[int], columns: Sequence[Any]
    ) -> dict[str, Any]:
        """How an app makes the ids (MediaPipe's TextClassifier does it from
        the TFLite file's metadata)."""
        text = self.settings
        app = {
            "app": "MediaPipe's TextClassifier does not lower-case: lower-case "
            "ASCII letters in the text before classify()"
        }
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
                **(app if text.lowercase else {}),
            }
        }

    def check_input(self, shape: Sequence[int], report: Report) -> None:
        if len(shape) != 1:
            report(
                ("input", "shape"),
                f"recipe {self.name!r} gives each text as [max_len] token ids; "
                f"got {list(shape)}",
            )

    def refuses_layer(self, layer: Layer) -> str | None:
        if not layer.kind.adapted:
            return None
        return f"a {layer.type} layer cannot read token ids; start with an embedding"

    def refuses_ids(self, layer: Layer) -> str | None:
        return None

    def check_layers(self, layers: Sequence[Layer], report: Report) -> None:
        super().check_layers(layers, report)
        for layer in layers:
            if INPUT in layer.inputs and not layer.reads_ids:
                report(
                    ("layers", layer.index, "type"),
                    f"the model's input is token ids, so the layers reading it "
                    f"look them up: an embedding, not a {layer.type}",
                )

    def new_texts(self, data: Path) -> tuple[list[str], list[str]]:
        """New texts to predict on, with a key for each (the build stage)."""
        raise NotImplementedError

    def files(self, dataset: Any) -> dict[str, str]:
        return {VOCABULARY_FILE: vocabulary_text(dataset.vocabulary)}


def _int(value: int) -> str:
    """An int literal, with underscores from 10_000 on, as ruff writes it."""
    return f"{value:_}" if value >= 10_000 else str(value)
