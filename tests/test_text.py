"""The text recipe's tokenizer, vocabulary and spec fields, without Keras:
MediaPipe's regex tokenizer as l2compile reads it (l2compile.text), and the
errors a text spec gets. tests/test_text_classifier.py checks the same
tokenizer against MediaPipe's own and builds real text classifiers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from l2compile import text
from l2compile.text import PAD, SPECIAL, START, UNKNOWN, Tokenizer

from .conftest import compile_errors, plan_text

SPEC = """\
name: reviews
input: {shape: [8]}
l2: 0.001
layers:
  - {type: embedding, output_dim: 4}
  - {type: global_average_pooling1d}
  - {type: dense, units: 2, activation: softmax}
train:
  recipe: text_folder
  data: docs
  test_split: 0.25
  epochs: 1
  batch_size: 4
"""


@pytest.mark.unit
@pytest.mark.parametrize(
    ("written", "tokens"),
    [
        ("Hello, world!", ["Hello", "world"]),
        # Apostrophes and underscores stay inside a token; digits are words.
        ("don't stop_me 42x", ["don't", "stop_me", "42x"]),
        # RE2's \w is ASCII: every other character splits, as a space does.
        ("héllo wörld", ["h", "llo", "w", "rld"]),
        ("日本語 text😀more", ["text", "more"]),
        ("e\u0301t\u00e9", ["e", "t"]),  # a combining mark splits too
        # The text ends at its first NUL, as a C string does.
        ("keep\x00dropped", ["keep"]),
        ("  \t\n ", []),
    ],
)
def test_the_tokenizer_splits_as_mediapipes_regex_tokenizer(
    written: str, tokens: list[str]
) -> None:
    assert Tokenizer().tokens(written) == tokens


@pytest.mark.unit
def test_lowercase_changes_ascii_letters_only() -> None:
    """MediaPipe does not lower-case; lowercase: true lower-cases what its
    tokens can hold, ASCII letters, and nothing else: the Kelvin sign, which
    str.lower turns into an ASCII k, stays a delimiter."""
    assert Tokenizer(lowercase=True).tokens("GREAT Movie \u212aelvin") == [
        "great",
        "movie",
        "elvin",
    ]
    assert Tokenizer().tokens("GREAT Movie") == ["GREAT", "Movie"]


@pytest.mark.unit
def test_the_vocabulary_is_the_specials_then_the_most_frequent_tokens() -> None:
    counts = Counter(["b", "a", "a", "c", "b", "d", "with space", "<PAD>"])
    counts.update(["with space"] * 5)
    # Ties keep the order first seen; a token a vocabulary line cannot hold
    # (a space) stays out, and so does one spelled like a special token.
    assert text.vocabulary(counts, 2) == [*SPECIAL, "b", "a"]
    assert text.vocabulary(counts, 10) == [*SPECIAL, "b", "a", "c", "d"]


@pytest.mark.unit
def test_ids_start_with_start_and_are_cut_and_padded_to_max_len() -> None:
    ids = {token: i for i, token in enumerate([*SPECIAL, "a", "b"])}
    assert text.encode(["a", "zz", "b"], ids, 6) == [1, 3, 2, 4, 0, 0]
    assert text.encode(["a", "b", "a", "b"], ids, 3) == [1, 3, 4]
    assert text.encode([], ids, 2) == [ids[START], ids[PAD]]
    assert ids[UNKNOWN] == 2


@pytest.mark.unit
def test_a_vocabulary_file_reads_back_as_written() -> None:
    tokens = [*SPECIAL, "it's", "naïve", "x"]
    written = text.vocabulary_text(tokens)
    assert written.splitlines()[:4] == ["<PAD> 0", "<START> 1", "<UNKNOWN> 2", "it's 3"]
    assert text.read_vocabulary(written) == tokens
    with pytest.raises(ValueError, match="not 'token id'"):
        text.read_vocabulary("<PAD> zero\n")
    with pytest.raises(ValueError, match="without gaps"):
        text.read_vocabulary("<PAD> 0\n<START> 2\n")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("regex", "problem"),
    [
        (r"\s*", "matches the empty string"),
        (r"(?=a)b", "lookahead"),
        (r"(a)\1", "backreference"),
        (r"[a-", "is not a regular expression"),
        (r"[^\w']+", None),
        (r"[\s,.;]+", None),
    ],
)
def test_a_regex_mediapipe_cannot_split_by_is_refused(
    regex: str, problem: str | None
) -> None:
    found = text.regex_problem(regex)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


@pytest.mark.unit
def test_a_text_spec_plans_an_embedding_sized_by_its_vocabulary(
    tmp_path: Path,
) -> None:
    plan = plan_text(SPEC + "  text: {max_tokens: 500}\n", tmp_path)
    embedding = plan.layers[0]
    assert embedding.weights[0].shape == (503, 4)
    assert plan.recipe.text == text.TextSettings(max_tokens=500)
    assert plan_text(SPEC, tmp_path).layers[0].weights[0].shape == (10_003, 4)


@pytest.mark.unit
def test_text_spec_errors_are_placed(tmp_path: Path) -> None:
    bad_regex = SPEC + "  text: {regex: '\\s*'}\n"
    assert compile_errors(bad_regex, tmp_path) == [
        "spec.yaml:14:17: error: train.text.regex: matches the "
        "empty string, so it cannot split text (MediaPipe's tokenizer would "
        "never finish)"
    ]
    npz = SPEC.replace("recipe: text_folder", "recipe: npz").replace(
        "  test_split: 0.25\n", "  num_classes: 2\n"
    )
    assert compile_errors(npz + "  text: {max_tokens: 5}\n", tmp_path) == [
        "spec.yaml:14:9: error: train.text: text is only for the csv and "
        "text_folder recipes"
    ]
    assert compile_errors(npz, tmp_path) == [
        "spec.yaml:5:5: error: layers[0]: input_dim: needed; only a text "
        "recipe's vocabulary gives it (text_folder)"
    ]
    dense_first = SPEC.replace(
        "  - {type: embedding, output_dim: 4}\n  - {type: global_average_pooling1d}\n",
        "",
    )
    assert compile_errors(dense_first, tmp_path) == [
        "spec.yaml:5:12: error: layers[0].type: the model's input is token ids, "
        "so the layers reading it look them up: an embedding, not a dense"
    ]
    image_shape = SPEC.replace("shape: [8]", "shape: [8, 8]")
    assert any(
        "recipe 'text_folder' gives each text as [max_len] token ids" in error
        for error in compile_errors(image_shape, tmp_path)
    )


CSV_SPEC = """\
name: reviews
input: {shape: [8]}
l2: 0.001
layers:
  - {type: embedding, output_dim: 4}
  - {type: global_average_pooling1d}
  - {type: dense, units: 2, activation: softmax}
train:
  recipe: csv
  data: reviews.csv
  label: sentiment
  columns: {review: text}
  test_split: 0.25
  epochs: 1
  batch_size: 4
"""


@pytest.mark.unit
def test_a_csv_text_column_plans_a_text_model(tmp_path: Path) -> None:
    from l2compile.sources.csv import CsvText

    plan = plan_text(CSV_SPEC, tmp_path)
    assert isinstance(plan.recipe, CsvText)
    assert plan.recipe.column == "review"
    assert plan.recipe.input_dtype == "int32" and not plan.recipe.encodes
    assert plan.layers[0].weights[0].shape == (10_003, 4)
    plain = (
        CSV_SPEC.replace("  columns: {review: text}\n", "")
        .replace("  - {type: embedding, output_dim: 4}\n", "")
        .replace("  - {type: global_average_pooling1d}\n", "")
        .replace("input: {shape: [8]}\n", "")
    )
    assert not isinstance(plan_text(plain, tmp_path).recipe, CsvText)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("columns: {review: text}", "columns: {review: text, title: text}"),
            "spec.yaml:12:12: error: train.columns: columns 'review' and 'title' "
            "are both text; a text model reads one text column (MediaPipe's "
            "TextClassifier feeds one)",
        ),
        (
            (
                "columns: {review: text}",
                "columns: {review: text}\n  features: [review, stars]",
            ),
            "spec.yaml:13:13: error: train.features: column 'review' is text, so it "
            "is the model's only input: features must be [review] alone, or left out",
        ),
        (
            ("columns: {review: text}", "text: {max_tokens: 50}"),
            "spec.yaml:12:9: error: train.text: text sets how a text column is "
            "tokenized, and no column is text: give one the type text in "
            "train.columns",
        ),
        (
            ("recipe: csv", "recipe: parquet"),
            "spec.yaml:12:12: error: train.columns: a text column is only for the "
            "csv recipe (a folder of documents: recipe text_folder)",
        ),
    ],
)
def test_csv_text_column_errors_are_placed(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    assert compile_errors(CSV_SPEC.replace(*change), tmp_path) == [message]


def _folder_source(tmp_path: Path, **fields: object) -> tuple[object, object]:
    from l2compile.recipes import ModelInput
    from l2compile.sources import source_for

    return (
        source_for("text_folder", data="docs", test_split=0.5, **fields),
        ModelInput((6,)),
    )


def _write(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


@pytest.mark.unit
def test_a_text_folder_reads_as_ids_by_its_training_vocabulary(tmp_path: Path) -> None:
    from l2compile import documents

    docs = _write(
        tmp_path / "docs",
        {
            "neg/a.txt": b"\xef\xbb\xbfbad bad movie",  # a byte-order mark, dropped
            "neg/b.txt": b"awful",
            "pos/a.txt": "good caf\u00e9 movie".encode(),
            "pos/b.txt": b"great",
        },
    )
    recipe, model_input = _folder_source(tmp_path)
    found = documents.read_folder(recipe, docs, seed=0, model_input=model_input)
    assert found.classes == ("neg", "pos")
    # Only the training split's tokens make the vocabulary; a test document's
    # own tokens read as <UNKNOWN> (2).
    tokenizer = text.Tokenizer()

    def tokens(files: list[str]) -> set[str]:
        return {
            t
            for f in files
            for t in tokenizer.tokens((docs / f).read_text(encoding="utf-8-sig"))
        }

    trained = tokens(found.train_ids.tolist())
    assert set(found.vocabulary[3:]) == trained
    assert "caf" not in trained or "caf" in found.vocabulary  # é splits a word
    only_tested = tokens(found.test_ids.tolist()) - trained
    assert only_tested and all(2 in row for row in found.x_test)
    tested = set(found.test_ids.tolist())
    assert len(tested) == 2 and not tested & set(found.train_ids.tolist())
    for row in found.x_train:
        assert row[0] == 1 and row.dtype == np.int32


@pytest.mark.unit
def test_a_document_that_is_not_utf8_is_named_with_its_line(tmp_path: Path) -> None:
    from l2compile import documents
    from l2compile.errors import BuildError

    docs = _write(
        tmp_path / "docs",
        {
            "neg/a.txt": b"fine\nstill fine\nbad \xff byte",
            "neg/b.txt": b"ok",
            "pos/a.txt": b"ok",
            "pos/b.txt": b"ok",
        },
    )
    recipe, model_input = _folder_source(tmp_path)
    with pytest.raises(BuildError) as error:
        documents.read_folder(recipe, docs, seed=0, model_input=model_input)
    assert str(error.value) == (
        f"{docs / 'neg' / 'a.txt'}: line 3: byte 20 is not UTF-8 (b'\\xff'); "
        "save the file as UTF-8"
    )


@pytest.mark.unit
def test_an_embedding_smaller_than_the_vocabulary_stops_the_build(
    tmp_path: Path,
) -> None:
    from l2compile import documents
    from l2compile.errors import BuildError
    from l2compile.recipes import ModelInput

    docs = _write(
        tmp_path / "docs",
        {f"{c}/{i}.txt": f"{c} word{i} other{i}".encode() for c in "ab" for i in "12"},
    )
    recipe, _ = _folder_source(tmp_path)
    with pytest.raises(
        BuildError, match=r"the vocabulary has \d+ tokens .* looks up 5 ids"
    ):
        documents.read_folder(recipe, docs, seed=0, model_input=ModelInput((6,), ids=5))
