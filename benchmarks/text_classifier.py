"""Benchmark: l2compile's text classifier against TF-IDF + logistic
regression (scikit-learn) on a real text data set that ships offline.

    apt-get install wordnet-base      # Princeton WordNet 3.0, Debian's package
    pip install scikit-learn
    python benchmarks/text_classifier.py [--wordnet /usr/share/wordnet] [--keep DIR]

The data: the glosses (definitions) of WordNet 3.0's noun synsets, each
labelled with its lexicographer file, the semantic field the lexicographers
filed it in (noun.animal, noun.artifact, noun.food, ...). Every field of at
least MIN_SYNSETS synsets is a class: 19 classes, 79,405 glosses. Each gloss
becomes one .txt file in a folder per class, and the build tests on a
seeded, stratified 20 % of each (train.test_split 0.2).

Both models are scored on the same test files, and the baseline trains on
the same files the model trains on (the build's split.json: the training
split less its validation share). The spec is SPEC below: MediaPipe Model
Maker's average word embedding model, with its tokenizer (not lower-cased,
10,000 tokens). The baseline is scikit-learn's defaults: TfidfVectorizer()
(lower-cased words of two or more characters) and LogisticRegression. Prints
both test accuracies, the gap in points, and the trivial baseline's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: WordNet 3.0's noun lexicographer files, by number (its lexnames file).
NOUN_FILES = {
    3: "Tops", 4: "act", 5: "animal", 6: "artifact", 7: "attribute", 8: "body",
    9: "cognition", 10: "communication", 11: "event", 12: "feeling", 13: "food",
    14: "group", 15: "location", 16: "motive", 17: "object", 18: "person",
    19: "phenomenon", 20: "plant", 21: "possession", 22: "process",
    23: "quantity", 24: "relation", 25: "shape", 26: "state", 27: "substance",
    28: "time",
}  # fmt: skip
#: A field with fewer synsets is left out (its class would be mostly noise).
MIN_SYNSETS = 1_000

SPEC = """\
name: wordnet_glosses
description: WordNet noun glosses by semantic field, an average word embedding
input: {{shape: [32]}}
l2: 0.00001
layers:
  - {{type: embedding, output_dim: 64}}
  - {{type: global_average_pooling1d}}
  - {{type: dense, units: 64, activation: relu}}
  - {{type: dropout, rate: 0.2}}
  - {{type: dense, units: {classes}, activation: softmax}}
train:
  recipe: text_folder
  data: glosses
  test_split: 0.2
  epochs: 20
  batch_size: 64
  early_stopping: {{patience: 3, restore_best_weights: true}}
export: {{formats: [keras, tflite], tflite: {{quantize: [none]}}}}
"""


def glosses(wordnet: Path) -> dict[str, list[tuple[str, str]]]:
    """Each noun field's (synset offset, gloss), for fields of MIN_SYNSETS."""
    fields: dict[str, list[tuple[str, str]]] = {}
    with open(wordnet / "data.noun", encoding="latin-1") as f:
        for line in f:
            if line.startswith("  "):  # the license header
                continue
            offset, number, _ = line.split(" ", 2)
            gloss = line.split(" | ", 1)[1].strip()
            fields.setdefault(NOUN_FILES[int(number)], []).append((offset, gloss))
    return {
        name: found
        for name, found in sorted(fields.items())
        if len(found) >= MIN_SYNSETS
    }


def write_folder(folder: Path, fields: dict[str, list[tuple[str, str]]]) -> int:
    count = 0
    for name, found in fields.items():
        (folder / name).mkdir(parents=True)
        for offset, gloss in found:
            (folder / name / f"{offset}.txt").write_text(gloss + "\n", encoding="utf-8")
            count += 1
    return count


def baseline(folder: Path, split: dict[str, list[str]]) -> tuple[float, float]:
    """TF-IDF + logistic regression on the build's training files (less its
    validation share), scored on its test files; and its fit's seconds."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    def read(files: list[str]) -> tuple[list[str], list[str]]:
        texts = [(folder / f).read_text(encoding="utf-8") for f in files]
        return texts, [f.split("/", 1)[0] for f in files]

    validation = set(split["validation"])
    x_train, y_train = read([f for f in split["train"] if f not in validation])
    x_test, y_test = read(split["test"])
    began = time.perf_counter()
    vectorizer = TfidfVectorizer()
    model = LogisticRegression(max_iter=2000)
    model.fit(vectorizer.fit_transform(x_train), y_train)
    seconds = time.perf_counter() - began
    predicted = model.predict(vectorizer.transform(x_test))
    accuracy = sum(p == y for p, y in zip(predicted, y_test, strict=True)) / len(y_test)
    return accuracy, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"))
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    if not (args.wordnet / "data.noun").is_file():
        sys.exit(f"{args.wordnet}/data.noun: not found; apt-get install wordnet-base")
    work = args.keep or Path(tempfile.mkdtemp(prefix="l2compile-text-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    fields = glosses(args.wordnet)
    count = write_folder(work / "glosses", fields)
    print(f"{count:,} glosses in {len(fields)} classes: {', '.join(fields)}")
    spec = work / "wordnet_glosses.yaml"
    spec.write_text(SPEC.format(classes=len(fields)), encoding="utf-8")
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "l2compile", "build", str(spec), "--out",
         str(work / "build"), "--save-split"],
        check=True,
    )  # fmt: skip
    build_seconds = time.perf_counter() - began
    metrics = json.loads((work / "build" / "metrics.json").read_text())
    split = json.loads((work / "build" / "split.json").read_text())
    ours = metrics["test_accuracy"]
    theirs, fit_seconds = baseline(work / "glosses", split)
    trivial = Counter(f.split("/", 1)[0] for f in split["test"]).most_common(1)[0][1]
    result = {
        "test_documents": len(split["test"]),
        "classes": len(fields),
        "l2compile_test_accuracy": round(ours, 4),
        "tfidf_logistic_regression_test_accuracy": round(theirs, 4),
        "gap_points": round(100 * (theirs - ours), 2),
        "trivial_test_accuracy": round(trivial / len(split["test"]), 4),
        "tflite_test_accuracy": metrics["tflite"]["files"]["none"]["test_accuracy"],
        "build_seconds": round(build_seconds, 1),
        "baseline_fit_seconds": round(fit_seconds, 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
