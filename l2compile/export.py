"""Exporting a trained model: `.keras`, SavedModel, TFLite, and measuring TFLite.

TensorFlow and LiteRT are imported inside the functions that need them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from l2compile import interrupts, scoring
from l2compile.tasks import Task

#: The TFLite file of each quantization mode.
TFLITE_FILES = {
    "none": "model.tflite",
    "float16": "model.float16.tflite",
    "dynamic": "model.dynamic.tflite",
    "int8": "model.int8.tflite",
}
#: Names of the TFLite signature and its input, which apps look up; the
#: output is named by the task (`Task.output_name`).
SIGNATURE = "serving_default"
INPUT_NAME = "input"


def save_keras(model: Any, path: Path) -> None:
    """The native Keras format: architecture, weights and optimizer state."""
    model.save(path)


def export_saved_model(model: Any, path: Path) -> None:
    """A TensorFlow SavedModel for serving: what Keras 3's `model.export`
    writes (its `serve` endpoint, also `serving_default`), but calling the
    model with training=False. `model.export` calls it without, and Keras'
    image augmentation layers then augment every served image."""
    import keras
    import tensorflow as tf

    (inputs,) = model.inputs
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serve",
        fn=lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec(inputs.shape, inputs.dtype, name=inputs.name)],
    )
    archive.write_out(str(path), verbose=False)


def export_tflite_source(
    model: Any,
    path: Path,
    input_shape: tuple[int, ...],
    batch: int | None,
    output_name: str,
) -> None:
    """The SavedModel TFLite files are converted from.

    Its one signature, `serving_default`, takes a float32 tensor named `input`
    and returns one named `output_name` (the task's), so apps find both by
    name. `batch` is the batch dimension (None: dynamic). Recurrent layers
    need a static one: the converter lowers their loops to TFLite built-ins
    only with static shapes.
    """
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=SIGNATURE,
        fn=lambda x: {output_name: model(x, training=False)},
        input_signature=[
            tf.TensorSpec((batch, *input_shape), tf.float32, name=INPUT_NAME)
        ],
    )
    archive.write_out(str(path), verbose=False)


def convert_tflite(
    saved_model: Path,
    path: Path,
    mode: str = "none",
    representative: npt.NDArray[np.float32] | None = None,
    int8_io: bool = False,
) -> None:
    """Convert the SavedModel to a TFLite file, quantized as `mode` says.

    Converting from the SavedModel rather than the Keras model avoids the
    known failures of `from_keras_model` under Keras 3.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model), signature_keys=[SIGNATURE]
    )
    if mode != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        assert representative is not None and len(representative)

        def samples() -> Any:
            for sample in representative:
                yield [sample[None, ...]]

        converter.representative_dataset = samples
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())


@dataclass(frozen=True)
class TFLiteScore:
    """A TFLite file measured on a test split."""

    scores: dict[str, float]  #: each of the task's metrics
    data_loss: float
    size_bytes: int
    mean_latency_ms: float
    batch: int
    outputs: npt.NDArray[Any]


def tflite_predict(
    path: Path, x: npt.NDArray[np.float32], batch_size: int = scoring.CHUNK
) -> tuple[npt.NDArray[np.float32], float, int]:
    """The model's outputs for `x` from the LiteRT interpreter.

    Also returns the seconds spent in `invoke` and the batch size used: batches
    of `batch_size` where the input's batch dimension is dynamic, the model's
    own batch otherwise. int8 inputs and outputs are quantized and dequantized
    with their own scale and zero point.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    (inp,) = interpreter.get_input_details()
    (out,) = interpreter.get_output_details()
    dynamic = inp["shape_signature"][0] == -1
    if not dynamic:
        batch_size = int(inp["shape"][0])
    outputs = []
    current = None
    seconds = 0.0
    for start in range(0, len(x), batch_size):
        interrupts.check()  # an interrupt LiteRT's native code held back
        batch = x[start : start + batch_size]
        if inp["dtype"] == np.int8:
            scale, zero = inp["quantization"]
            batch = np.clip(np.round(batch / scale + zero), -128, 127)
        batch = np.ascontiguousarray(batch, dtype=inp["dtype"])
        if current != len(batch):
            if dynamic:
                interpreter.resize_tensor_input(inp["index"], list(batch.shape))
            interpreter.allocate_tensors()
            current = len(batch)
        interpreter.set_tensor(inp["index"], batch)
        began = time.perf_counter()
        interpreter.invoke()
        seconds += time.perf_counter() - began
        result = np.array(interpreter.get_tensor(out["index"]))
        if out["dtype"] == np.int8:
            scale, zero = out["quantization"]
            result = (result.astype(np.float32) - zero) * scale
        outputs.append(result.astype(np.float32))
    return np.concatenate(outputs), seconds, batch_size


def score_tflite(
    path: Path, x: npt.NDArray[np.float32], y: Any, task: Task
) -> TFLiteScore:
    """The task's scores, data loss, size and mean latency of a TFLite file
    on (x, y), scored as `task` scores a prediction."""
    outputs, seconds, batch = tflite_predict(path, x)
    targets = task.targets(y)
    return TFLiteScore(
        scores=task.scores(outputs, targets),
        data_loss=task.data_loss(outputs, targets),
        size_bytes=path.stat().st_size,
        mean_latency_ms=1000 * seconds / len(targets),
        batch=batch,
        outputs=outputs,
    )
