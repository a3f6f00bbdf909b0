"""`keras`: the native Keras file, model.keras: architecture, weights and
optimizer state. The training stage saves it (`save_keras`) for the export
stage to read; the build publishes it where the spec exports it."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from l2compile.formats.base import HANDOFF, ExportFormat, Opened, Scores, register

if TYPE_CHECKING:
    import numpy.typing as npt

    from l2compile.contract import GeneratedModule
    from l2compile.formats.base import ExportJob, TensorShape
    from l2compile.nodes import ModelPlan


def save_keras(model: Any, path: Path) -> None:
    """The native Keras format: architecture, weights and optimizer state."""
    model.save(path)


@register
class KerasFormat(ExportFormat):
    name = "keras"
    artifact = "a .keras file"
    writes = HANDOFF
    title = "Keras"
    #: Training writes it: the export stage only reads it.
    exported = False
    packages = ("keras",)

    def files(self, plan: ModelPlan) -> tuple[str, ...]:
        return (HANDOFF,)

    def export(
        self, job: ExportJob, model: Any, generated: GeneratedModule, log: Any
    ) -> Any:
        return None  # the training stage saved it already

    def recognizes(self, path: Path) -> bool:
        return path.is_file() and path.suffix == ".keras"

    def open(self, path: Path, plan: ModelPlan) -> Opened:
        """Load a .keras file safely; score it as Keras does, with the L2
        penalty."""
        import keras

        # safe_mode: a .keras file cannot run code of its own while loading.
        model = keras.saving.load_model(path, safe_mode=True)
        inputs = getattr(model, "inputs", None)
        return Opened(
            _keras_shapes(inputs) if inputs else None,
            _keras_shapes(model.outputs) if inputs else [],
            lambda x, targets: _score(keras, model, plan, x, targets),
            lambda x: _predict(keras, model, plan, x),
        )


def _keras_shapes(tensors: Any) -> list[TensorShape]:
    return [tuple(t.shape) for t in tensors or ()]


def _predict(keras: Any, model: Any, plan: ModelPlan, x: Any) -> npt.NDArray[Any]:
    import numpy as np

    if isinstance(x, np.ndarray):
        return np.asarray(model.predict(x, batch_size=plan.batch_size, verbose=0))
    # An image folder's images, read a batch at a time (no labels: zeros).
    data = _chunks(keras, x, np.zeros(len(x)), plan.batch_size)
    return np.asarray(model.predict(data, verbose=0))


def _score(
    keras: Any, model: Any, plan: ModelPlan, x: Any, targets: npt.NDArray[Any]
) -> Scores:
    import numpy as np

    from l2compile import measure

    if isinstance(x, np.ndarray):
        scores = model.evaluate(x, targets, verbose=0, return_dict=True)
        began = time.perf_counter()
        outputs = model.predict(x, batch_size=plan.batch_size, verbose=0)
    else:  # an image folder's images, read a batch at a time
        data = _chunks(keras, x, targets, plan.batch_size)
        scores = model.evaluate(data, verbose=0, return_dict=True)
        began = time.perf_counter()
        outputs = model.predict(data, verbose=0)
    outputs = np.asarray(outputs)
    defined = measure.reported(plan, scores, outputs, targets)
    return Scores(
        scores={m: math.nan if v is None else v for m, v in defined.items()},
        loss=float(scores["loss"]),
        loss_note="with the L2 penalty, as Keras reports it",
        mean_latency_ms=1000 * (time.perf_counter() - began) / len(targets),
        batch=plan.batch_size,
        outputs=outputs,
    )


def _chunks(keras: Any, x: Any, targets: npt.NDArray[Any], size: int) -> Any:
    """(x, targets) in order, `size` samples a batch, for Keras: x is taken a
    slice at a time (an image folder's images are read as they are taken)."""

    class Chunks(keras.utils.PyDataset):  # type: ignore[misc]
        def __len__(self) -> int:
            return -(-len(targets) // size)

        def __getitem__(self, i: int) -> tuple[Any, Any]:
            part = slice(i * size, (i + 1) * size)
            return x[part], targets[part]

    return Chunks()
