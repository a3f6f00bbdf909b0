"""Exporting a trained model: `.keras`, SavedModel, TFLite, and checking TFLite.

TensorFlow and LiteRT are imported inside the functions that need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt


def save_keras(model: Any, path: Path) -> None:
    """The native Keras format: architecture, weights and optimizer state."""
    model.save(path)


def export_saved_model(model: Any, path: Path) -> None:
    """A TensorFlow SavedModel for serving (Keras 3's `model.export`)."""
    model.export(str(path), format="tf_saved_model", verbose=False)


def export_static_batch(model: Any, path: Path, input_shape: tuple[int, ...]) -> None:
    """A SavedModel whose input has batch size 1, for converting recurrent layers.

    Keras' recurrent layers loop with tensor lists; the TFLite converter can
    lower those to built-in ops only when every shape is static, batch included.
    """
    import keras

    spec = keras.InputSpec(shape=(1, *input_shape), dtype="float32")
    model.export(
        str(path), format="tf_saved_model", verbose=False, input_signature=[spec]
    )


def convert_tflite(saved_model: Path, path: Path) -> None:
    """A float32 TFLite file converted from a SavedModel.

    Converting from the SavedModel rather than the Keras model avoids the
    known failures of `from_keras_model` under Keras 3.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    path.write_bytes(converter.convert())


def tflite_predict(
    path: Path, x: npt.NDArray[np.float32], batch_size: int = 1000
) -> npt.NDArray[np.float32]:
    """Run a TFLite file over `x` with the LiteRT interpreter, in batches."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    (inp,) = interpreter.get_input_details()
    (out,) = interpreter.get_output_details()
    if inp["shape_signature"][0] != -1:  # a static batch: one sample at a time
        batch_size = int(inp["shape"][0])
    outputs = []
    current = None
    for start in range(0, len(x), batch_size):
        batch = np.ascontiguousarray(x[start : start + batch_size], dtype=inp["dtype"])
        if current != len(batch):
            if inp["shape_signature"][0] == -1:
                interpreter.resize_tensor_input(inp["index"], list(batch.shape))
            interpreter.allocate_tensors()
            current = len(batch)
        interpreter.set_tensor(inp["index"], batch)
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_tensor(out["index"])))
    return np.concatenate(outputs)
