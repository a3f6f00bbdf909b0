"""The text_folder recipe's data: a folder of `.txt` documents, one subfolder
per class, in the layouts `l2compile.folders` reads.

Each document is read as UTF-8 (a byte-order mark dropped), tokenized as
MediaPipe's TextClassifier tokenizes (`l2compile.text`), and becomes one row
of token ids. The vocabulary comes from the training split only (its
validation share included, which the build holds out later), or is the one a
build made (eval, predict). The documents are read twice, once to count
tokens and once to write ids, and never held: what is kept in memory is the
ids, `max_len` int32 a document. A document over `MAX_DOCUMENT_BYTES`, or
that is not UTF-8, stops the build with its path and the place.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from l2compile import folders, text
from l2compile.errors import BuildError
from l2compile.files import TooLarge, open_binary, read_bounded, unreadable
from l2compile.recipes import ModelInput
from l2compile.sources.base import Source as Recipe

if TYPE_CHECKING:
    from l2compile.datasets import Dataset

__all__ = ["EXTENSIONS", "MAX_DOCUMENT_BYTES", "new_documents", "read_folder"]

#: The document files read, by extension (any case).
EXTENSIONS = (".txt",)
KIND = folders.Kind(EXTENSIONS, "documents", "text_folder")
#: The largest document read: a longer one is most likely not one document
#: (a log, a dump), and is read whole to be tokenized.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024


def read_document(path: str) -> str:
    """A document's text: UTF-8, a leading byte-order mark dropped."""
    try:
        with open_binary(path) as f:  # never a FIFO's wait
            data = f.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise BuildError(f"{path}: {unreadable(exc)}") from exc
    if len(data) > MAX_DOCUMENT_BYTES:
        raise BuildError(
            f"{path}: over {MAX_DOCUMENT_BYTES // 2**20} MiB, more than l2compile "
            "reads as one document; split it"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BuildError(
            f"{path}: line {line}: byte {exc.start} is not UTF-8 "
            f"({data[exc.start : exc.start + 1]!r}); save the file as UTF-8"
        ) from None


def _texts(paths: Iterable[str]) -> Iterator[str]:
    for path in paths:
        yield read_document(path)


def encode_all(
    paths: np.ndarray, tokenizer: text.Tokenizer, ids: dict[str, int], max_len: int
) -> np.ndarray:
    """Each document's token ids, one row each (int32)."""
    return encode_texts(_texts(paths), tokenizer, ids, max_len, len(paths))


def encode_texts(
    texts: Iterable[str],
    tokenizer: text.Tokenizer,
    ids: dict[str, int],
    max_len: int,
    count: int | None = None,
) -> np.ndarray:
    """Each text's token ids, one row each (int32); `count`: how many texts
    there are, where known (the rows are then filled in place)."""
    if count is None:
        rows = [text.encode(tokenizer.tokens(t), ids, max_len) for t in texts]
        return np.array(rows, dtype=np.int32).reshape((-1, max_len))
    found = np.zeros((count, max_len), dtype=np.int32)
    for i, document in enumerate(texts):
        found[i] = text.encode(tokenizer.tokens(document), ids, max_len)
    return found


def check_vocabulary(
    where: Path, vocabulary: Sequence[str], model_input: ModelInput
) -> None:
    """The embedding must look up every id of the vocabulary."""
    if model_input.ids is not None and len(vocabulary) > model_input.ids:
        raise BuildError(
            f"{where}: the vocabulary has {len(vocabulary):,} tokens (the "
            f"specials included), but the embedding looks up {model_input.ids:,} "
            "ids (input_dim); leave input_dim out to size it by the vocabulary, "
            "or lower train.text.max_tokens"
        )


def read_folder(
    recipe: Recipe,
    folder: Path,
    *,
    seed: int,
    model_input: ModelInput,
    vocabulary: tuple[str, ...] | None = None,
) -> Dataset:
    """List, check, tokenize and encode a text folder: x is each document's
    token ids, y its class id."""
    from l2compile.datasets import Dataset  # it imports this module

    settings = recipe.text or text.TextSettings()
    layout = folders.read_layout(
        KIND, folder, recipe.test_split, seed=seed, model_input=model_input
    )
    tokenizer = text.Tokenizer(settings.regex, settings.lowercase)
    if vocabulary is None:
        counts = text.count(tokenizer, _texts(layout.x_train))
        vocabulary = tuple(text.vocabulary(counts, settings.max_tokens))
    check_vocabulary(folder, vocabulary, model_input)
    ids = {token: i for i, token in enumerate(vocabulary)}
    (max_len,) = model_input.shape
    x_train = encode_all(layout.x_train, tokenizer, ids, max_len)
    x_test = encode_all(layout.x_test, tokenizer, ids, max_len)
    return Dataset(
        x_train,
        layout.y_train,
        x_test,
        layout.y_test,
        str(folder),
        classes=layout.classes,
        train_ids=layout.relative(folder, test=False),
        test_ids=layout.relative(folder, test=True),
        vocabulary=vocabulary,
        warnings=unknown_warning(x_train),
    )


def unknown_warning(x_train: np.ndarray) -> tuple[str, ...]:
    """A warning where most of the training texts' tokens are unknown."""
    tokens = x_train > text.SPECIAL.index(text.START)
    unknown = x_train == text.SPECIAL.index(text.UNKNOWN)
    if tokens.sum() and unknown.sum() / tokens.sum() > 0.5:
        share = unknown.sum() / tokens.sum()
        return (
            f"{share:.0%} of the training texts' tokens are <UNKNOWN>: raise "
            "train.text.max_tokens, or check train.text.regex",
        )
    return ()


def new_documents(path: Path) -> tuple[list[str], list[str]]:
    """The documents predict reads (`folders.files_under`), with their keys."""
    return folders.files_under(KIND, path)


#: The most bytes of a build's vocabulary file read (a million tokens of up
#: to about 60 bytes each).
MAX_VOCABULARY_BYTES = 64 * 1024 * 1024


def trained_vocabulary(artifact: Path) -> tuple[str, ...]:
    """The vocabulary a text model was trained with: the build's vocab.txt
    beside `artifact` (eval and predict tokenize new text by it, not by
    their own data's)."""
    found = Path(artifact).resolve().parent / text.VOCABULARY_FILE
    try:
        data = read_bounded(found, MAX_VOCABULARY_BYTES)
    except FileNotFoundError:
        raise BuildError(
            f"{found}: not found; a text model's build writes it beside the "
            "model, and new text is tokenized by the vocabulary it was trained "
            "with"
        ) from None
    except OSError as exc:
        raise BuildError(f"{found}: {unreadable(exc)}") from None
    except TooLarge as exc:
        raise BuildError(f"{found}: {exc}") from None
    try:
        return tuple(text.read_vocabulary(data.decode("utf-8")))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BuildError(f"{found}: not a vocabulary file: {exc}") from None
