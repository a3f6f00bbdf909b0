"""The data node of the plan: a source, where a spec's data comes from.

Each kind of data source (a Keras dataset, a user's .npz, a CSV table, a
folder of images) is one registered subclass of `Source`, in one module of
this package, with one template fragment, `templates/sources/<name>.py.jinja`,
that writes the generated module's `load_data` and `preprocess`. A source
declares its facts as class attributes (reads the user's files or not,
streamed or in memory, labels from the data, the spec fields it takes, the
tasks it serves), and owns its checks and how the build reads it. Nothing
outside `l2compile/sources/` compares a source's name: the rest of the
compiler asks the source.

An instance is a source as one spec configures it (`source_for`): where the
data is, what it holds and, for a table, which columns are labels.

The declarations are plan-stage code: nothing here reads a file or imports
numpy at import time. A source's `read` imports the build stage's readers
(`l2compile.datasets`, `.tables`, `.images`) when the build calls it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from l2compile.errors import FieldPath
from l2compile.layers.base import INPUT, py_str
from l2compile.layers.base import PlannedLayer as Layer
from l2compile.text import SPECIAL, VOCABULARY_FILE, TextSettings, vocabulary_text

__all__ = [
    "SOURCES",
    "ColumnType",
    "KerasDataset",
    "Missing",
    "ReadsText",
    "Report",
    "Request",
    "Source",
    "register",
    "source_for",
]

#: How a plan node reports a problem: the field it is about, and the message.
Report = Callable[[FieldPath, str], None]

#: The spec fields a source may take, besides `recipe` (`data_files`: a
#: train.data of {train: ..., test: ...}; `columns`: label and features).
FIELDS = (
    "data",
    "data_files",
    "num_classes",
    "labels",
    "columns",
    "test_split",
    "text",
)


@dataclass(frozen=True)
class Missing:
    """A table's missing-value policy (train.missing): what a missing value
    of a numeric and of a text feature column becomes, by default and for
    single columns, and whether numeric columns get was-missing inputs."""

    numeric: str = "median"  #: median, mean, zero or error
    categorical: str = "own_category"  #: own_category, most_frequent or error
    indicator: bool = False
    columns: tuple[tuple[str, str], ...] = ()  #: (column, policy)

    def policy(self, column: str, numeric: bool) -> str:
        """The policy of one feature column, as it was found to be."""
        return dict(self.columns).get(
            column, self.numeric if numeric else self.categorical
        )


@dataclass(frozen=True)
class ColumnType:
    """A type the spec gives a table's column (train.columns): numeric,
    categorical, date (with its strptime format, or None to infer it) or
    ignore."""

    name: str
    kind: str
    format: str | None = None


@dataclass(frozen=True)
class Request:
    """What the build asks of a source: where its data is (`given`: --data,
    else the spec's train.data; `data`: --data alone), the spec paths,
    the model it must feed, the split seed, the environment and Keras'
    downloader."""

    given: Path | None
    data: Path | None
    spec_path: Any  #: recipes.SpecPath | None
    test_path: Any  #: recipes.SpecPath | None
    model_input: Any  #: recipes.ModelInput | None
    seed: int
    env: Any  #: Mapping[str, str]
    download: Any  #: datasets.Downloader | None
    #: A text recipe's vocabulary, as a build made it (eval, predict); None:
    #: made from the training split.
    vocabulary: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Source:
    """A data source as a spec configures it.

    Class attributes are the kind's facts; instance fields are what one spec
    says (or, for a Keras dataset, what the dataset is).
    """

    # --- the kind's facts -----------------------------------------------------
    name: ClassVar[str]
    title: ClassVar[str]
    #: The file (or folder) name in Keras' layout; "" where the user names it.
    filename: ClassVar[str] = ""
    keras_dataset: ClassVar[str | None] = None
    #: How Keras stores it, for the message that says where to put it
    #: ({files}: Keras' IDX files; {arrays}: the .npz's arrays).
    stored: ClassVar[str] = ""
    #: Reads the user's own files (train.data or --data).
    own_data: ClassVar[bool] = False
    #: Its labels can be any task's (else: class labels).
    any_task: ClassVar[bool] = False
    #: The data, not the spec, says how many classes there are.
    classes_from_data: ClassVar[bool] = False
    #: Samples are read from files (x is the files' paths): decoded once where
    #: they fit in the generated IN_MEMORY_BYTES, else a batch at a time.
    streamed: ClassVar[bool] = False
    #: The model encodes its input itself (a csv's text columns become
    #: one-hot vectors in the model), before the spec's layers.
    encodes: ClassVar[bool] = False
    #: Its data is a folder, not a file.
    folder: ClassVar[bool] = False
    #: What its data is, for messages: "an .npz file".
    wanted: ClassVar[str] = "an .npz file"
    #: The spec fields it takes (FIELDS), and those it needs.
    fields: ClassVar[frozenset[str]] = frozenset()
    needs: ClassVar[frozenset[str]] = frozenset()
    #: The folder holding its template fragment, `<name>.py.jinja` (None:
    #: l2compile's templates/sources/): a source defined outside l2compile
    #: ships its fragment beside it.
    template_folder: ClassVar[Path | None] = None
    #: The standard-library imports its template fragment needs, as lines.
    imports: ClassVar[tuple[str, ...]] = ()
    #: Its fragment reads with TensorFlow (the module imports it).
    tensorflow: ClassVar[bool] = False
    #: The `--data` argument the module's usage line shows, where the spec
    #: names no data.
    example: ClassVar[str] = "data.npz"
    #: The dtype an app feeds the TFLite model (token ids: int32, as
    #: MediaPipe's TextClassifier feeds them).
    input_dtype: ClassVar[str] = "float32"
    #: The data is text: its vocabulary (l2compile.text) sizes an embedding
    #: that leaves out input_dim, and is saved beside the model.
    vocabulary_size: ClassVar[bool] = False

    # --- what one spec says ------------------------------------------------------
    image_shape: tuple[int, ...] | None = None
    num_classes: int | None = None  #: None: from the spec or the data
    labels: tuple[str, ...] = ()
    #: What the pixel values mean, for apps that feed the model their own
    #: images (None where the source does not know).
    pixels: str | None = None
    #: Where the user's data is, as the spec writes it (train.data), and a
    #: separate test file's (csv: data: {train: ..., test: ...}).
    data: str | None = None
    test_data: str | None = None
    #: csv: the label columns, and the feature columns (None: all the others).
    label: tuple[str, ...] = ()
    features: tuple[str, ...] | None = None
    #: The share of the data tested on (None: its own test file or folder).
    test_split: float | None = None
    #: csv: what missing values become, and the columns' declared types.
    missing: Missing = Missing()
    types: tuple[ColumnType, ...] = ()
    #: A text recipe's tokenizer and vocabulary size (train.text).
    text: TextSettings | None = None

    @classmethod
    def reads_text(cls, kinds: Sequence[str]) -> bool:
        """Whether the source reads text, with columns of these declared
        kinds (train.columns): its vocabulary then sizes embeddings."""
        return cls.vocabulary_size

    @classmethod
    def configured(cls, **data: Any) -> Source:
        """The source a spec's fields make of this kind: itself, or a variant
        the fields pick (a csv with a text column reads text)."""
        return cls(**data)

    @property
    def template(self) -> str:
        """Its fragment of the generated module's template."""
        return f"sources/{self.name}.py.jinja"

    def constants(self) -> list[tuple[str, str, str]]:
        """The generated module's data constants: (name, value, comment)."""
        found = []
        if self.data is not None:
            what = "folder" if self.folder else "file"
            found.append(("DATA", py_str(self.data), f"the data {what}"))
        if self.test_data is not None:
            found.append(("TEST_DATA", py_str(self.test_data), "the test file"))
        if self.test_split is not None:
            found.append(
                (
                    "TEST_SPLIT",
                    repr(self.test_split),
                    "share of the data tested on, seeded"
                    + (", per class" if self.streamed else ""),
                )
            )
        return found

    @property
    def input_size(self) -> int:
        return math.prod(self.image_shape or ())

    # --- how the generated module reads it ----------------------------------

    @property
    def data_example(self) -> str:
        """The `--data` argument the module's usage line shows."""
        if self.data is not None:
            return self.data
        return self.filename or self.example

    @property
    def data_help(self) -> str:
        """The help of the module's `--data` option, as a Python literal."""
        return py_str(f"{self.filename} in Keras' layout")

    # --- what it tells others -------------------------------------------------

    @property
    def classes_origin(self) -> str:
        """Where its number of classes is declared, for messages."""
        if self.classes_from_data:
            return "the last layer's units"
        return f"recipe {self.name!r} has {self.num_classes} classes"

    def sample_text(self, dtype: str, shape: Sequence[int] = ()) -> str:
        """What an app feeds the model, one sample: `dtype` is the data's own,
        `shape` the spec's input.shape."""
        if self.image_shape is None:
            return f"one sample of the npz's x arrays ({dtype})"
        size = "x".join(str(d) for d in self.image_shape)
        return f"a {size} grayscale image as uint8 pixels (0-255), row by row"

    def input_json(
        self, shape: Sequence[int], columns: Sequence[Any]
    ) -> dict[str, Any]:
        """What model.json adds about the input for an app (`columns`: the
        data's `datasets.Column`s)."""
        return {}

    # --- the model against it -------------------------------------------------

    def check_input(self, shape: Sequence[int], report: Report) -> None:
        """The spec's input.shape must hold one of its samples."""
        size = math.prod(shape)
        if self.image_shape is not None and size != self.input_size:
            image = "x".join(str(d) for d in self.image_shape)
            report(
                ("input", "shape"),
                f"recipe {self.name!r} gives {image} images ({self.input_size} "
                f"values each), but this shape holds {size}",
            )

    def refuses_ids(self, layer: Layer) -> str | None:
        """Why a layer that looks up integer ids cannot read this source's
        samples (None: it can, where it reads the model's input)."""
        return None

    def check_layers(self, layers: Sequence[Layer], report: Report) -> None:
        """Embeddings look up integer ids: they must see the data unscaled,
        and only as the model's input. Then every layer that reads the input
        reads ids."""
        readers = [layer for layer in layers if INPUT in layer.inputs]
        ids = [layer for layer in readers if layer.reads_ids]
        for layer in layers:
            refused = self.refuses_layer(layer)
            if refused is not None:
                report(("layers", layer.index, "type"), refused)
            if layer.reads_ids and (why := self.refuses_ids(layer)) is not None:
                report(("layers", layer.index, "type"), why)
                continue
            if layer.reads_ids and (layer not in readers or self.image_shape):
                report(
                    ("layers", layer.index, "type"),
                    f"an {layer.type} looks up integer ids, so it must read the "
                    "model's input (as the first layer of a stack, or with "
                    "inputs: [input]) and an npz recipe's integers"
                    + (
                        f"; recipe {self.name!r} gives scaled pixels"
                        if self.image_shape
                        else ""
                    ),
                )
        for layer in readers if ids else ():
            if not layer.reads_ids:
                report(
                    ("layers", layer.index),
                    f"layers[{layer.index}] ({layer.type}) reads the model's input "
                    f"as numbers, but layers[{ids[0].index}] ({ids[0].type}) reads "
                    "it as integer ids; one input is one or the other",
                )

    def refuses_layer(self, layer: Layer) -> str | None:
        """Why this source cannot feed a layer at all (None: it can)."""
        return None

    # --- the build ------------------------------------------------------------------

    def files(self, dataset: Any) -> dict[str, str]:
        """The files a build writes beside its model for this data (a text
        recipe's vocabulary), by name: their text."""
        return {}

    def holds(self, path: Path) -> bool:
        """Whether `path` holds this source's data, as found."""
        return path.is_file()

    def read(self, request: Request) -> Any:
        """Find, read and check the data (the build stage): a
        `datasets.Dataset`. A source that reads one file or folder found
        by `holds` calls `datasets.find_file`, which reads it with
        `read_found`."""
        raise NotImplementedError

    def read_found(self, path: Path, model_input: Any) -> Any:
        """Read the data found at `path` (where `holds` says it is)."""
        raise NotImplementedError


@dataclass(frozen=True)
class KerasDataset(Source):
    """A dataset Keras downloads (keras.datasets), found in its file layout:
    by --data, in $L2COMPILE_DATA, in the Keras cache, else downloaded."""


@dataclass(frozen=True)
class ReadsText(Source):
    """A source whose samples are texts, fed to the model as token ids, made
    by MediaPipe's regex tokenizer (l2compile.text); the build writes the
    vocabulary beside the model. A folder of documents (text_folder) and a
    csv's text column (csv's CsvText) are each one source on this base."""

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


_S = TypeVar("_S", bound=type[Source])

#: Every source, by the name a spec's train.recipe gives it, in the order
#: the JSON Schema and messages list them.
SOURCES: dict[str, type[Source]] = {}


def register(kind: _S) -> _S:
    """Make a source known to the spec, the plan and the build."""
    SOURCES[kind.name] = kind
    return kind


def source_for(name: str, num_classes: int | None = None, **data: Any) -> Source:
    """The source a spec names, configured by it: `num_classes` where the
    spec says, and `data` (Source's fields) locating the user's files."""
    if num_classes is not None:
        data["num_classes"] = num_classes
    return SOURCES[name].configured(**data)


def taking(field: str) -> list[str]:
    """The sources that take a spec field, in registry order."""
    return [name for name, kind in SOURCES.items() if field in kind.fields]
