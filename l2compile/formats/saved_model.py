"""`saved_model`: a TensorFlow SavedModel for serving, saved_model/."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from l2compile.errors import BuildError
from l2compile.formats.base import ExportFormat, Opened, Scores, register

if TYPE_CHECKING:
    from l2compile.contract import GeneratedModule
    from l2compile.formats.base import ExportJob, TensorShape
    from l2compile.nodes import ModelPlan

#: Its folder in a build folder.
FOLDER = "saved_model"


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


@register
class SavedModelFormat(ExportFormat):
    name = "saved_model"
    artifact = "a SavedModel folder"
    writes = f"{FOLDER}/"
    title = "SavedModel"
    packages = ("tensorflow",)

    def files(self, plan: ModelPlan) -> tuple[str, ...]:
        return (FOLDER,)

    def export(
        self, job: ExportJob, model: Any, generated: GeneratedModule, log: Any
    ) -> Any:
        from l2compile import interrupts

        interrupts.phase(self.name)
        log(f"exporting {FOLDER}/")
        export_saved_model(model, job.dest / FOLDER)
        return None

    def recognizes(self, path: Path) -> bool:
        return path.is_dir() and (path / "saved_model.pb").is_file()

    def open(self, path: Path, plan: ModelPlan) -> Opened:
        """Load a SavedModel and read its serving signature without calling
        it; score it through that signature."""
        import tensorflow as tf

        # A SavedModel runs its own graph: eval is for artifacts one trusts.
        loaded = tf.saved_model.load(str(path))
        if "serving_default" not in loaded.signatures:
            raise BuildError(f"{path} has no serving_default signature to score")
        serve = loaded.signatures["serving_default"]
        # Checked without calling it: a wrong shape aborts inside TensorFlow.
        return Opened(
            _tf_shapes(serve.structured_input_signature),
            _tf_shapes(serve.structured_outputs),
            lambda x, targets: _score(serve, plan, x, targets),
            lambda x: _predict(serve, x),
        )


def _tf_shapes(structure: Any) -> list[TensorShape]:
    import tensorflow as tf

    shapes: list[TensorShape] = []
    for spec in tf.nest.flatten(structure):
        known = spec.shape.rank is not None
        shapes.append(tuple(spec.shape.as_list()) if known else None)
    return shapes


def _predict(serve: Any, x: Any) -> Any:
    """The serving signature's outputs for `x`, a chunk at a time."""
    import tensorflow as tf

    from l2compile import scoring

    (name,) = serve.structured_input_signature[1]

    def run(chunk: Any) -> Any:
        return next(iter(serve(**{name: tf.constant(chunk)}).values()))

    return scoring.predict(run, x)


def _score(serve: Any, plan: ModelPlan, x: Any, targets: Any) -> Scores:
    from l2compile import scoring

    began = time.perf_counter()
    outputs = _predict(serve, x)
    latency = 1000 * (time.perf_counter() - began) / len(targets)
    return Scores(
        scores=plan.task.scores(outputs, targets),
        loss=plan.task.data_loss(outputs, targets),
        loss_note="data loss; a SavedModel's serving signature holds no L2 penalty",
        mean_latency_ms=latency,
        batch=scoring.CHUNK,
        outputs=outputs,
    )
