"""`l2compile eval`: score any artifact of a build on its recipe's test split.

The data is preprocessed by the spec's generated module, as in the build, so
an artifact is scored on exactly the inputs it was trained for.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from l2compile import export
from l2compile.build import import_generated
from l2compile.datasets import load_dataset
from l2compile.errors import BuildError
from l2compile.plan import ModelPlan


@dataclass(frozen=True)
class Evaluation:
    """An artifact's scores on a test split."""

    kind: str
    samples: int
    data: str
    accuracy: float
    loss: float
    loss_note: str
    size_bytes: int
    mean_latency_ms: float
    batch: int


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _data_loss(probabilities: Any, labels: Any) -> float:
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0))))


def kind_of(path: Path) -> str:
    """Which artifact `path` is: keras, saved_model or tflite."""
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return "saved_model"
    if path.is_file() and path.suffix == ".keras":
        return "keras"
    if path.is_file() and path.suffix == ".tflite":
        return "tflite"
    if not path.exists():
        raise BuildError(f"{path}: no such file or folder")
    raise BuildError(
        f"{path}: not an artifact l2compile can evaluate "
        "(a .keras file, a SavedModel folder or a .tflite file)"
    )


def evaluate_artifact(
    path: Path, plan: ModelPlan, code: str, data: Path | None = None
) -> Evaluation:
    """Score the artifact at `path` on the test split of `plan`'s recipe."""
    kind = kind_of(path)
    if data is None and plan.data is not None:
        data = Path(plan.data)
    dataset = load_dataset(plan.recipe, data)
    with tempfile.TemporaryDirectory() as folder:
        module_path = Path(folder) / f"{plan.name}.py"
        module_path.write_text(code, encoding="utf-8")
        generated = import_generated(module_path, f"eval_{plan.name}")
        x, y = generated.preprocess(dataset.x_test, dataset.y_test)
    labels = np.asarray(y).reshape(-1).astype(np.int64)

    if kind == "tflite":
        score = export.score_tflite(path, x, labels)
        accuracy, loss, latency = score.accuracy, score.data_loss, score.mean_latency_ms
        batch = score.batch
        note = "data loss; TFLite files hold no L2 penalty"
    elif kind == "keras":
        import keras

        model = keras.saving.load_model(path)
        scores = model.evaluate(x, labels, verbose=0, return_dict=True)
        began = time.perf_counter()
        model.predict(x, batch_size=plan.batch_size, verbose=0)
        latency = 1000 * (time.perf_counter() - began) / len(labels)
        batch = plan.batch_size
        accuracy, loss = float(scores["accuracy"]), float(scores["loss"])
        note = "with the L2 penalty, as Keras reports it"
    else:
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))
        serve = loaded.signatures["serving_default"]
        (name,) = serve.structured_input_signature[1]
        outputs = []
        began = time.perf_counter()
        for start in range(0, len(x), 1000):
            result = serve(**{name: tf.constant(x[start : start + 1000])})
            outputs.append(np.asarray(next(iter(result.values()))))
        latency = 1000 * (time.perf_counter() - began) / len(labels)
        batch = 1000
        probabilities = np.concatenate(outputs)
        accuracy = float(np.mean(np.argmax(probabilities, axis=-1) == labels))
        loss = _data_loss(probabilities, labels)
        note = "data loss; a SavedModel's serving signature holds no L2 penalty"
    return Evaluation(
        kind=kind,
        samples=len(labels),
        data=dataset.source,
        accuracy=accuracy,
        loss=loss,
        loss_note=note,
        size_bytes=_size(path),
        mean_latency_ms=latency,
        batch=batch,
    )
