"""Text classifiers end to end: a folder of documents the test writes, built
into TFLite files that MediaPipe Tasks' TextClassifier loads as they are; the
tokenizer checked against MediaPipe's own on random Unicode text; and the
generated module trained beside only keras, jax and numpy."""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l2compile import build as builder
from l2compile import text
from l2compile.generate import compile_spec

SPEC = """\
name: topics
description: an average word embedding over three topics
input: {shape: [24]}
l2: 0.0001
layers:
  - {type: embedding, output_dim: 16}
  - {type: global_average_pooling1d}
  - {type: dense, units: 16, activation: relu}
  - {type: dropout, rate: 0.2}
  - {type: dense, units: 3, activation: softmax}
train:
  recipe: text_folder
  data: docs
  test_split: 0.25
  epochs: 12
  batch_size: 16
  optimizer: {learning_rate: 0.01}
export: {formats: [keras, tflite]}
"""

#: Each topic's own words; the rest of a document is shared filler, mixed
#: case, accents, emoji and apostrophes, which the tokenizer must read as
#: MediaPipe does.
TOPICS = {
    "cooking": "recipe oven salt flour bake taste sauce dinner spice pan",
    "space": "orbit rocket planet star moon launch galaxy comet telescope",
    "sports": "goal match team score league coach player win season ball",
}
FILLER = "the a of and it's to in was The with Ünïcode café 😀 日本 don't_stop"
#: MediaPipe and LiteRT must name the same class for this share of documents.
AGREEMENT = 0.99


def make_text_folder(folder: Path, per_class: int = 60, seed: int = 0) -> None:
    """One folder per topic of short documents, each a mix of its topic's
    words and filler."""
    rng = random.Random(seed)
    filler = FILLER.split(" ")
    for topic, written in TOPICS.items():
        words = written.split(" ")
        (folder / topic).mkdir(parents=True)
        for i in range(per_class):
            picked = [
                rng.choice(words if rng.random() < 0.35 else filler)
                for _ in range(rng.randint(4, 40))
            ]
            if rng.random() < 0.3:
                picked = [word.upper() for word in picked]
            (folder / topic / f"{i:03d}.txt").write_text(
                " ".join(picked) + ".\n", encoding="utf-8"
            )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Path]:
    folder = tmp_path_factory.mktemp("text")
    make_text_folder(folder / "docs")
    spec = folder / "spec.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    compiled = compile_spec(spec)
    assert not isinstance(compiled, list), [str(e) for e in compiled]
    out = folder / "build"
    result = builder.build(compiled.plan, compiled.code, out, log=print)
    return out, result.metrics, folder / "docs"


@pytest.mark.build
def test_a_text_folder_builds_a_classifier_that_learns(
    built: tuple[Path, Any, Path],
) -> None:
    out, metrics, _ = built
    # Three topics: a third is chance; the topic words make it easy.
    assert metrics["test_accuracy"] >= 0.8
    files = metrics["tflite"]["files"]
    assert set(files) == {"none", "float16", "dynamic", "int8"}
    vocabulary = text.read_vocabulary((out / "vocab.txt").read_text())
    assert vocabulary[:3] == list(text.SPECIAL)
    # No token of the vocabulary holds what RE2's ASCII \w leaves out.
    assert all(t.isascii() for t in vocabulary[3:])
    assert "it's" in vocabulary and "The" in vocabulary and "THE" in vocabulary
    import json

    model_json = json.loads((out / "model.json").read_text())
    assert model_json["input"]["dtype"] == "int32"
    assert model_json["input"]["tokenizer"]["delimiter_regex"] == text.DEFAULT_REGEX
    for entry in model_json["files"].values():
        assert entry["input"] == {"dtype": "int32", "shape": [1, 24]}
        assert entry["metadata"]["vocabulary_file"] == "vocab.txt"


@pytest.mark.build
def test_the_generated_module_makes_the_builds_vocabulary_and_ids(
    built: tuple[Path, Any, Path], tmp_path: Path
) -> None:
    """The module a repository checks in reads the folder as the build did:
    the same vocabulary from the training split, the same ids."""
    import importlib.util

    out, _, docs = built
    module_path = out / "topics.py"
    spec = importlib.util.spec_from_file_location("topics_module", module_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (x_train, _), (x_test, y_test), vocabulary = module.load_data(str(docs))
    assert vocabulary == text.read_vocabulary((out / "vocab.txt").read_text())
    assert x_train.dtype == np.int32 and x_train.shape[1:] == (24,)
    tokenizer = text.Tokenizer()
    ids = {token: i for i, token in enumerate(vocabulary)}
    first = sorted((docs / "cooking").glob("*.txt"))
    assert len(x_test) == 45 and set(y_test.tolist()) == {0, 1, 2}
    written = first[0].read_text(encoding="utf-8")
    assert module.encode_texts([written], vocabulary)[0].tolist() == text.encode(
        tokenizer.tokens(written), ids, 24
    )


@pytest.mark.build
def test_eval_and_predict_read_documents_by_the_trained_vocabulary(
    built: tuple[Path, Any, Path], tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from l2compile.cli import main

    out, metrics, _docs = built
    scored = CliRunner().invoke(main, ["eval", str(out / "model.tflite")])
    assert scored.exit_code == 0, scored.output
    assert f"{metrics['tflite']['files']['none']['test_accuracy']:.4f}" in scored.output
    new = tmp_path / "new"
    new.mkdir()
    (new / "a.txt").write_text("rocket orbit planet launch", encoding="utf-8")
    (new / "b.txt").write_text("oven flour bake dinner", encoding="utf-8")
    predicted = CliRunner().invoke(main, ["predict", str(out), "--data", str(new)])
    assert predicted.exit_code == 0, predicted.output
    rows = [line.split(",")[:2] for line in predicted.stdout.splitlines()[1:]]
    assert rows == [["a.txt", "space"], ["b.txt", "cooking"]]
    # Without the vocabulary it was trained with, a text model is not run
    # on a new one made from whatever data it is given.
    (out / "vocab.txt").rename(tmp_path / "vocab.txt")
    try:
        refused = CliRunner().invoke(main, ["eval", str(out / "model.keras")])
    finally:
        (tmp_path / "vocab.txt").rename(out / "vocab.txt")
    assert refused.exit_code == 3
    assert "vocab.txt: not found" in refused.output


@pytest.fixture(scope="module")
def mediapipe_text() -> Any:
    return pytest.importorskip("mediapipe.tasks.python.text")


def _classifier(mediapipe_text: Any, model: Path, max_results: int) -> Any:
    from mediapipe.tasks.python.core import base_options

    options = mediapipe_text.TextClassifierOptions(
        base_options=base_options.BaseOptions(model_asset_path=str(model)),
        max_results=max_results,
    )
    return mediapipe_text.TextClassifier.create_from_options(options)


@pytest.mark.external
def test_mediapipe_loads_every_tflite_file_and_agrees_with_litert(
    built: tuple[Path, Any, Path], mediapipe_text: Any
) -> None:
    """MediaPipe's TextClassifier tokenizes each document itself, from the
    file's metadata, and names the class folder LiteRT's scores pick."""
    from ai_edge_litert.interpreter import Interpreter

    out, metrics, docs = built
    vocabulary = text.read_vocabulary((out / "vocab.txt").read_text())
    ids = {token: i for i, token in enumerate(vocabulary)}
    tokenizer = text.Tokenizer()
    documents = [p.read_text(encoding="utf-8") for p in sorted(docs.glob("*/*.txt"))]
    for entry in metrics["tflite"]["files"].values():
        model = out / entry["file"]
        interpreter = Interpreter(model_path=str(model))
        interpreter.allocate_tensors()
        (inp,) = interpreter.get_input_details()
        (output,) = interpreter.get_output_details()
        agree = 0
        with _classifier(mediapipe_text, model, 1) as classifier:
            for document in documents:
                (top,) = classifier.classify(document).classifications[0].categories
                assert top.category_name in TOPICS
                row = text.encode(tokenizer.tokens(document), ids, 24)
                interpreter.set_tensor(inp["index"], np.array([row], np.int32))
                interpreter.invoke()
                scores = interpreter.get_tensor(output["index"])[0]
                agree += int(list(TOPICS)[int(np.argmax(scores))] == top.category_name)
        assert agree / len(documents) >= AGREEMENT, (entry["file"], agree)


#: The delimiter regex of MediaPipe Model Maker's average word embedding
#: classifier, written out here: the probe's metadata carries it, so a change
#: of l2compile's default fails the property test.
MODEL_MAKER_REGEX = r"[^\w\']+"
#: The probe's vocabulary: every token of one or two of these characters, so
#: random text both hits and misses it.
_PROBE_CHARS = "aB'_1"
_PROBE_LEN = 48


@pytest.fixture(scope="module")
def probe(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Any, dict[str, int]]]:
    """MediaPipe's TextClassifier on a model whose scores are its input ids,
    with the regex tokenizer's metadata: its categories give back the ids
    MediaPipe's own tokenizer made."""
    mediapipe_text = pytest.importorskip("mediapipe.tasks.python.text")
    import tensorflow as tf

    from l2compile import metadata

    tokens = [*_PROBE_CHARS, *(a + b for a in _PROBE_CHARS for b in _PROBE_CHARS)]
    vocabulary = [*text.SPECIAL, *tokens]

    class Probe(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, _PROBE_LEN], tf.int32)])
        def ids(self, x: Any) -> Any:
            return tf.cast(x, tf.float32)

    module = Probe()
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.ids.get_concrete_function()], module
    )
    model = tmp_path_factory.mktemp("probe") / "probe.tflite"
    model.write_bytes(
        metadata.text_classifier_metadata(
            converter.convert(),
            labels=[f"position_{i}" for i in range(_PROBE_LEN)],
            vocabulary=text.vocabulary_text(vocabulary),
            regex=MODEL_MAKER_REGEX,
            name="probe",
            description="its scores are its input ids",
        )
    )
    with _classifier(mediapipe_text, model, -1) as classifier:
        yield classifier, {token: i for i, token in enumerate(vocabulary)}


def _mediapipe_ids(classifier: Any, written: str) -> list[int]:
    found = [0] * _PROBE_LEN
    for category in classifier.classify(written).classifications[0].categories:
        found[category.index] = round(category.score)
    return found


#: Text as users write it: any Unicode character (emoji, combining marks,
#: CJK, NUL), with the characters the tokenizer treats specially drawn often.
_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from([*_PROBE_CHARS, " ", "\t", "\n", ",", "\x00", "é", "😀"]),
        st.sampled_from(["日", "\u0301", "\u212a", "İ", "ß", "٣", "\u00a0"]),
    ),
    max_size=80,
)


@pytest.mark.external
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(written=_TEXT)
def test_the_tokenizer_gives_mediapipes_ids(
    probe: tuple[Any, dict[str, int]], written: str
) -> None:
    classifier, ids = probe
    ours = text.encode(text.Tokenizer().tokens(written), ids, _PROBE_LEN)
    assert ours == _mediapipe_ids(classifier, written)


@pytest.mark.external
@pytest.mark.network
def test_the_generated_module_trains_and_predicts_beside_only_keras_jax_numpy(
    built: tuple[Path, Any, Path], tmp_path: Path
) -> None:
    from .test_generated_model import keras_jax_venv

    out, _, docs = built
    python = keras_jax_venv(tmp_path / "venv")
    module = (out / "topics.py").read_text(encoding="utf-8")
    (tmp_path / "topics.py").write_text(module, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    trained = subprocess.run(
        [str(python), "topics.py", "--data", str(docs), "--epochs", "12"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "Test accuracy: " in trained.stdout
    assert (tmp_path / "vocab.txt").read_text() == (out / "vocab.txt").read_text()
    script = (
        "import topics  # first: it sets the backend it was built for\n"
        "import keras\n"
        "model = keras.saving.load_model('topics.keras')\n"
        "scores = topics.predict(model, ['rocket orbit moon', 'flour oven bake'])\n"
        "print(scores.argmax(axis=1).tolist())\n"
    )
    predicted = subprocess.run(
        [str(python), "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert predicted.stdout.strip().splitlines()[-1] == "[1, 0]"
    assert "tensorflow" not in (trained.stderr + predicted.stderr).lower()


CSV_SPEC = """\
name: reviews
input: {shape: [24]}
l2: 0.0001
layers:
  - {type: embedding, output_dim: 16}
  - {type: global_average_pooling1d}
  - {type: dense, units: 16, activation: relu}
  - {type: dense, units: 3, activation: softmax}
train:
  recipe: csv
  data: reviews.csv
  label: topic
  columns: {review: text, id: ignore}
  test_split: 0.25
  epochs: 12
  batch_size: 16
  optimizer: {learning_rate: 0.01}
export: {formats: [keras, tflite], tflite: {quantize: [none, dynamic]}}
"""


def make_text_table(path: Path, rows: int = 240, seed: int = 1) -> None:
    """A CSV of topics: an id, a text column with quoted commas and line
    breaks, the topic (missing in a few rows), and a column no one reads."""
    import csv

    rng = random.Random(seed)
    filler = FILLER.split(" ")
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "review", "topic", "stars"])
        for i in range(rows):
            topic = rng.choice(list(TOPICS))
            words = TOPICS[topic].split(" ")
            picked = [
                rng.choice(words if rng.random() < 0.4 else filler)
                for _ in range(rng.randint(3, 30))
            ]
            review = " ".join(picked) + (',\n"quoted", on two lines' if i % 7 else "")
            writer.writerow([i, review, topic if i % 40 else " ", rng.randint(1, 5)])


@pytest.fixture(scope="module")
def built_csv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Path]:
    folder = tmp_path_factory.mktemp("csv_text")
    make_text_table(folder / "reviews.csv")
    spec = folder / "spec.yaml"
    spec.write_text(CSV_SPEC, encoding="utf-8")
    compiled = compile_spec(spec)
    assert not isinstance(compiled, list), [str(e) for e in compiled]
    out = folder / "build"
    said: list[str] = []
    result = builder.build(compiled.plan, compiled.code, out, log=said.append)
    assert any(
        "column 'stars' is not read: a text model reads its text column 'review'"
        in line
        for line in said
    ), said
    assert any("dropped 6 rows without a label in 'topic'" in line for line in said)
    return out, result.metrics, folder / "reviews.csv"


@pytest.mark.build
def test_a_csv_text_column_builds_a_text_classifier(
    built_csv: tuple[Path, Any, Path], tmp_path: Path
) -> None:
    """The table's rules pick the rows and labels; the text column's cells
    are the ids; the generated module reads the file the same way."""
    import importlib.util
    import json

    from l2compile.datasets import load_dataset
    from l2compile.generate import compile_spec

    out, metrics, table = built_csv
    assert metrics["test_accuracy"] >= 0.8
    model_json = json.loads((out / "model.json").read_text())
    assert model_json["files"]["none"]["input"] == {"dtype": "int32", "shape": [1, 24]}
    assert (out / "labels.txt").read_text().split() == sorted(TOPICS)
    compiled = compile_spec(table.parent / "spec.yaml")
    assert not isinstance(compiled, list)
    plan = compiled.plan
    dataset = load_dataset(
        plan.recipe,
        table,
        model_input=plan.model_input,
        seed=plan.split_seed,
    )
    spec = importlib.util.spec_from_file_location("reviews_module", out / "reviews.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (x_train, y_train), (x_test, y_test), vocabulary = module.load_data(str(table))
    assert vocabulary == list(dataset.vocabulary)
    assert vocabulary == text.read_vocabulary((out / "vocab.txt").read_text())
    np.testing.assert_array_equal(x_train, dataset.x_train)
    np.testing.assert_array_equal(x_test, dataset.x_test)
    np.testing.assert_array_equal(y_train, dataset.y_train)
    np.testing.assert_array_equal(y_test, dataset.y_test)
    # predict reads the text column of a new CSV, its other columns aside.
    from click.testing import CliRunner

    from l2compile.cli import main

    new = tmp_path / "new.csv"
    new.write_text('review,x\n"orbit, rocket and moon",1\n"flour oven bake",2\n')
    predicted = CliRunner().invoke(main, ["predict", str(out), "--data", str(new)])
    assert predicted.exit_code == 0, predicted.output
    rows = [line.split(",")[:2] for line in predicted.stdout.splitlines()[1:]]
    assert rows == [["2", "space"], ["3", "cooking"]]


@pytest.mark.build
def test_a_text_column_needs_a_classifier(tmp_path: Path) -> None:
    """MediaPipe's TextClassifier runs a softmax over classes: a text column
    under another task stops the build before training, saying so."""
    from l2compile.errors import BuildError

    make_text_table(tmp_path / "reviews.csv", rows=40)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        CSV_SPEC.replace("label: topic", "label: stars")
        .replace("units: 3, activation: softmax", "units: 1")
        .replace("name: reviews", "name: reviews\ntask: regression"),
        encoding="utf-8",
    )
    compiled = compile_spec(spec)
    assert not isinstance(compiled, list), [str(e) for e in compiled]
    with pytest.raises(BuildError, match="column 'review' is text: its model is a"):
        builder.build(compiled.plan, compiled.code, tmp_path / "out", log=print)
    assert not (tmp_path / "out").exists()


@pytest.mark.external
def test_mediapipe_runs_a_csv_text_models_files(
    built_csv: tuple[Path, Any, Path], mediapipe_text: Any
) -> None:
    import csv

    out, metrics, table = built_csv
    with table.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for entry in metrics["tflite"]["files"].values():
        with _classifier(mediapipe_text, out / entry["file"], 1) as classifier:
            named = [
                classifier.classify(row["review"]).classifications[0].categories[0]
                for row in rows[:60]
            ]
        assert {top.category_name for top in named} <= set(TOPICS)
        right = sum(
            top.category_name == row["topic"]
            for top, row in zip(named, rows, strict=False)
        )
        assert right >= 0.8 * 60, (entry["file"], right)
