"""`tflite`: one TFLite file per quantization mode, each scored on the test
split with LiteRT against the Keras model (its parity), with the files an app
reads beside them (`l2compile.deploy`: model.json, labels, metadata).

TensorFlow and LiteRT are imported inside the functions that need them.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from l2compile import interrupts
from l2compile.errors import BuildError, ParityError
from l2compile.fields import StrictModel, unique
from l2compile.formats.base import Error, ExportFormat, Opened, Scores, register

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from l2compile.contract import GeneratedModule
    from l2compile.datasets import Dataset
    from l2compile.formats.base import ExportJob, TensorShape
    from l2compile.nodes import LayerPlan, ModelPlan
    from l2compile.sections import Section
    from l2compile.tasks import Task

#: The TFLite file of each quantization mode.
TFLITE_FILES = {
    "none": "model.tflite",
    "float16": "model.float16.tflite",
    "dynamic": "model.dynamic.tflite",
    "int8": "model.int8.tflite",
}
#: TFLite float32 must agree with Keras to this on the test split: its
#: task's score (accuracy), or its outputs, relative to the targets' spread.
TFLITE_TOLERANCE = 0.001

_MODES = {
    "none": "float32",
    "float16": "float16 weights",
    "dynamic": "dynamic range: int8 weights, float activations",
    "int8": "full integer, calibrated",
}

QuantizeMode = Literal["none", "float16", "dynamic", "int8"]


class TFLiteSpec(StrictModel):
    """How the TFLite files are made: one file per quantization mode."""

    quantize: Annotated[
        list[QuantizeMode], Field(min_length=1), AfterValidator(unique)
    ] = Field(
        default=["none", "float16", "dynamic", "int8"],
        description="none: float32; float16: float16 weights; dynamic: int8 "
        "weights, float activations; int8: full integer (calibrated).",
    )
    int8_io: bool = Field(
        default=False,
        description="int8 mode: int8 input and output tensors "
        "(microcontrollers, Edge TPU) instead of float32.",
    )
    representative_samples: Annotated[int, Field(ge=0, le=100_000)] = Field(
        default=500,
        description="int8 mode: training samples (seeded) used to calibrate.",
    )
    max_accuracy_drop: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = Field(
        default=0.01,
        description="A quantized file that loses more test accuracy than "
        "this fails the build.",
    )
    int8_fallback: Literal["auto", "none"] = Field(
        default="auto",
        description="auto: an int8 file over max_accuracy_drop is converted "
        "again with the operations that lose the most kept in float, fewest "
        "first, until it is within it; none: it fails the build.",
    )
    batch: Literal[1, "dynamic"] = Field(
        default=1, description="The batch dimension of the TFLite input."
    )

    @model_validator(mode="after")
    def _calibration(self) -> TFLiteSpec:
        if "int8" in self.quantize and self.representative_samples == 0:
            raise PydanticCustomError(
                "int8_samples",
                "int8 quantization calibrates on representative samples; "
                "representative_samples must be at least 1",
            )
        return self


@dataclass(frozen=True)
class TFLitePlan:
    """Which TFLite files to make and how to check them."""

    quantize: tuple[str, ...]
    int8_io: bool
    representative_samples: int
    max_accuracy_drop: float
    batch: int | None  # None: a dynamic batch dimension
    int8_fallback: str = "auto"
    #: Why a mode of the default export is left out (the build says so).
    left_out: str | None = None


def export_tflite_source(
    model: Any,
    path: Path,
    input_shape: tuple[int, ...],
    batch: int | None,
    output_name: str,
    dtype: str = "float32",
) -> None:
    """The SavedModel TFLite files are converted from.

    Its one signature, `serving_default`, takes a tensor named `input` (of
    `dtype`: float32, or a text model's int32 token ids, as MediaPipe feeds
    them) and returns one named `output_name` (the task's), so apps find both
    by name. `batch` is the batch dimension (None: dynamic). Recurrent layers
    need a static one: the converter lowers their loops to TFLite built-ins
    only with static shapes.
    """
    import keras
    import tensorflow as tf

    from l2compile.deploy import INPUT_NAME, SIGNATURE

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=SIGNATURE,
        fn=lambda x: {output_name: model(x, training=False)},
        input_signature=[
            tf.TensorSpec((batch, *input_shape), tf.as_dtype(dtype), name=INPUT_NAME)
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

    from l2compile.deploy import SIGNATURE

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
    path: Path, x: npt.NDArray[np.float32], batch_size: int | None = None
) -> tuple[npt.NDArray[np.float32], float, int]:
    """The model's outputs for `x` from the LiteRT interpreter.

    Also returns the seconds spent in `invoke` and the batch size used: batches
    of `batch_size` (default: scoring.CHUNK) where the input's batch dimension
    is dynamic, the model's own batch otherwise. int8 inputs and outputs are
    quantized and dequantized with their own scale and zero point.
    """
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from l2compile import scoring

    interpreter = Interpreter(model_path=str(path))
    (inp,) = interpreter.get_input_details()
    (out,) = interpreter.get_output_details()
    dynamic = inp["shape_signature"][0] == -1
    if batch_size is None:
        batch_size = scoring.CHUNK
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


def export_tflite(
    work: Path,
    plan: ModelPlan,
    options: TFLitePlan,
    model: Any,
    generated: GeneratedModule,
    dataset: Dataset,
    x_test: Any,
    y_test: Any,
    log: Any,
) -> dict[str, Any]:
    """Convert one TFLite file per mode, score each on the test split, and
    fail (keeping the files) if one strays from the Keras model more than
    allowed (the task's parity: `Task.compare`). `dataset` is as
    `formats.calibration` made it."""
    import numpy as np

    from l2compile import deploy, manifest, scoring

    task = plan.task
    metadata = deploy.mediapipe_metadata(plan, dataset)
    targets = task.targets(y_test)
    keras_outputs = scoring.predict(lambda x: model(x, training=False), x_test)
    source = work / "tflite_source"
    interrupts.phase("tflite_source")
    log("exporting the SavedModel that TFLite is converted from")
    export_tflite_source(
        model,
        source,
        deploy.fed_shape(plan, dataset),
        options.batch,
        plan.task.output_name,
        plan.recipe.input_dtype,
    )
    representative = None
    if "int8" in options.quantize:
        # Calibration data: `calibration`'s training samples, preprocessed.
        representative, _ = generated.preprocess(dataset.x_train, dataset.y_train)
        # An image folder's are read as they are taken: take them all.
        representative = np.asarray(representative[:], dtype=plan.recipe.input_dtype)
    scores: dict[str, Any] = {
        f"keras_test_{metric}": value
        for metric, value in task.scores(keras_outputs, targets).items()
    }
    scores["files"] = {}

    def check(path: Path, said: Any = None) -> tuple[TFLiteScore, Any]:
        """A file with its metadata, scored against the Keras model."""
        if metadata is not None:
            deploy.attach_metadata(path, metadata, said or (lambda _: None))
        found = score_tflite(path, x_test, targets, task)
        return found, task.compare(keras_outputs, found.outputs, targets)

    failures = []
    for mode in options.quantize:
        name = TFLITE_FILES[mode]
        interrupts.phase(f"converting {mode}")
        log(f"converting {name} ({_MODES[mode]})")
        _convert(source, work / name, mode, representative, options.int8_io)
        interrupts.phase(f"checking {mode}")
        log(f"checking {name} on the test split with the LiteRT interpreter")
        score, parity = check(work / name, log)
        fallback = None
        if mode == "int8" and _falls_back(options, parity.difference):
            assert representative is not None
            where = _Fallback(work, name, source, representative, options, scores)
            score, parity, fallback = _fall_back(
                where, plan, model, (score, parity), check, log
            )
        entry, failure = _parity(name, mode, options, score, parity)
        if fallback is not None:
            entry["int8_fallback"] = fallback
            failure = failure and failure + _fallback_failure(fallback)
        scores["files"][mode] = entry
        failures += [failure] if failure else []
    shutil.rmtree(source)
    if failures:
        manifest.write_json(work / manifest.METRICS, {TFLiteFormat.name: scores})
        raise ParityError("\n".join(failures))
    return scores


def _convert(
    source: Path,
    path: Path,
    mode: str,
    representative: npt.NDArray[np.float32] | None,
    int8_io: bool,
) -> None:
    """convert_tflite, its failure a BuildError that names the file."""
    try:
        convert_tflite(source, path, mode, representative, int8_io)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise BuildError(
            f"export.tflite.quantize: the TFLite converter could not make "
            f"{path.name} ({mode}): {type(exc).__name__}: {reason}"
        ) from exc


@dataclass(frozen=True)
class _Fallback:
    """Where an int8 fallback search works."""

    work: Path
    name: str  #: the int8 file's
    source: Path  #: the SavedModel converted from
    representative: npt.NDArray[np.float32]
    options: TFLitePlan
    scores: dict[str, Any]  #: the files checked so far


def _falls_back(options: TFLitePlan, drop: float) -> bool:
    """Whether an int8 file that loses `drop` is converted again."""
    return options.int8_fallback == "auto" and drop > options.max_accuracy_drop


def _fall_back(
    where: _Fallback,
    plan: ModelPlan,
    model: Any,
    first: tuple[TFLiteScore, Any],
    check: Callable[[Path], tuple[TFLiteScore, Any]],
    log: Any,
) -> tuple[TFLiteScore, Any, dict[str, Any]]:
    """The int8 file over its budget converted again with the operations
    that lose the most kept in float (`l2compile.quantize`): the file, its
    score and parity where a step met the budget (the full int8 file's
    otherwise), and what metrics.json says of the search."""
    from l2compile import quantize

    options, path = where.options, where.work / where.name
    full_bytes = path.stat().st_size
    most_bytes = max(_dynamic_bytes(where), full_bytes)
    log(
        f"{where.name} loses {first[1].difference:.4f}, over "
        f"max_accuracy_drop {options.max_accuracy_drop}: measuring each "
        "operation's quantization error (export.tflite.int8_fallback: auto)"
    )
    interrupts.phase("int8 fallback")
    debugger = quantize.Debugger(where.source, where.representative, options.int8_io)
    output_layer = plan.layers[-1].name if plan.layers else "output"
    errors = debugger.errors(frozenset(_layer_names(model)), output_layer)
    costs = quantize.float_costs(path)  # of the full int8 file, read first
    checked: dict[int, tuple[bytes, TFLiteScore, Any]] = {}

    def measure(model: bytes) -> float:
        path.write_bytes(model)
        score, parity = check(path)
        checked[len(checked)] = (model, score, parity)
        return float(parity.difference)

    found, skipped = quantize.search_within(
        debugger,
        errors,
        measure,
        costs,
        budget=options.max_accuracy_drop,
        most_bytes=most_bytes,
        room=most_bytes - full_bytes,
        log=log,
    )
    report = {
        "drop_before": first[1].difference,
        "drop_after": None,
        "best_drop": found.best_drop,
        "most_bytes": most_bytes,
        "kept_in_float": [{**_error_json(e), "tensor": e.tensor} for e in found.kept],
        "steps": [dataclasses.asdict(s) for s in found.steps],
        "layer_errors": [_error_json(e) for e in errors],
        "too_large_to_keep": [e.layer for e in skipped],
    }
    chosen = next((c for c in checked.values() if c[0] == found.model), None)
    if found.model is None or chosen is None:
        convert_tflite(
            where.source, path, "int8", where.representative, options.int8_io
        )  # the full int8 file again, as the build reports it
        check(path)
        return first[0], first[1], report
    path.write_bytes(chosen[0])
    check(path)  # its metadata again
    report["drop_after"] = chosen[2].difference
    kept = ", ".join(e.layer for e in found.kept)
    log(
        f"{where.name}: within max_accuracy_drop with {len(found.kept)} "
        f"operation(s) in float ({kept}): drop {chosen[2].difference:.4f}, "
        f"{len(chosen[0]):,} bytes"
    )
    return chosen[1], chosen[2], report


def _dynamic_bytes(where: _Fallback) -> int:
    """The size of the dynamic-range file: the fallback's size bound."""
    dynamic = where.scores["files"].get("dynamic", {}).get("size_bytes")
    if dynamic is None:  # not one of the build's files: made to be measured
        bound = where.source / "bound.dynamic.tflite"
        convert_tflite(where.source, bound, "dynamic")
        dynamic = bound.stat().st_size
    return int(dynamic)


def _layer_names(model: Any) -> Iterator[str]:
    """A Keras model's layer names, and those of the models inside it."""
    for layer in model.layers:
        yield layer.name
        if hasattr(layer, "layers"):
            yield from _layer_names(layer)


def _fallback_note(file: str, report: dict[str, Any]) -> str:
    """What the report says of an int8 file's fallback search."""
    kept = [k["layer"] for k in report["kept_in_float"]]
    before = f"{file} lost {report['drop_before']:.4g} in full int8"
    if report["drop_after"] is None:
        best = report["best_drop"]
        reached = "" if best is None else f" (best {best:.4g})"
        return f"{before}; keeping operations in float did not meet the budget{reached}"
    return (
        f"{before}; with {len(kept)} operation(s) kept in float "
        f"({', '.join(kept)}) it loses {report['drop_after']:.4g}"
    )


def _error_json(error: Any) -> dict[str, Any]:
    return {"layer": error.layer, "op": error.op, "error": round(error.error, 6)}


def _fallback_failure(report: dict[str, Any]) -> str:
    """Why the int8 fallback did not meet the budget, in a clause."""
    scored = [step for step in report["steps"] if step["drop"] is not None]
    over = [step for step in report["steps"] if step["drop"] is None]
    bound = (
        f"{report['most_bytes']:,} bytes (the dynamic-range file's, or the full "
        "int8 file's where that is larger)"
    )
    if scored:
        best = min(scored, key=lambda step: step["drop"])
        found = (
            f"; the int8 fallback reached {best['drop']:.4f} at best, with "
            f"{best['kept']} operation(s) in float"
        )
    else:
        found = "; the int8 fallback could not keep an operation in float"
    if over:
        found += (
            f": with {over[0]['kept']} the file is {over[0]['size_bytes']:,} "
            f"bytes, over {bound}"
        )
    else:
        found += ", and more would put every operation in float"
    return (
        found + "; use the dynamic file (export.tflite.quantize without int8), "
        "or a larger max_accuracy_drop"
    )


def _parity(
    name: str, mode: str, options: TFLitePlan, score: TFLiteScore, parity: Any
) -> tuple[dict[str, Any], str | None]:
    """What metrics.json says of one file, and why it fails its parity check
    against the Keras model (None: it passes)."""
    limit = TFLITE_TOLERANCE if mode == "none" else options.max_accuracy_drop
    entry = {
        "file": name,
        "size_bytes": score.size_bytes,
        **{f"test_{metric}": value for metric, value in score.scores.items()},
        parity.key: parity.difference,
        "test_data_loss": score.data_loss,
        "mean_latency_ms": score.mean_latency_ms,
        "latency_batch": score.batch,
    }
    if (abs(parity.difference) if mode == "none" else parity.difference) <= limit:
        return entry, None
    return entry, parity.failure(
        f"{name} ({mode})",
        limit,
        "" if mode == "none" else " (export.tflite.max_accuracy_drop)",
    )


def _tflite_shapes(details: list[dict[str, Any]]) -> list[TensorShape]:
    return [
        tuple(None if d < 0 else int(d) for d in item["shape_signature"])
        for item in details
    ]


@register
class TFLiteFormat(ExportFormat):
    name = "tflite"
    artifact = "a .tflite file"
    writes = TFLITE_FILES["none"]
    title = "TFLite"
    options = TFLiteSpec
    packages = ("ai-edge-litert",)

    def check(self, export: Any, layers: list[LayerPlan], error: Error) -> None:
        """What the TFLite converter is known to refuse, before any training."""
        super().check(export, layers, error)
        if not self.chosen(export):
            return
        options = self.options_of(export)
        static = [lay for lay in layers if not lay.kind.tflite_dynamic_batch]
        if static and options.batch == "dynamic":
            error(
                ("export", self.name, "batch"),
                f"layers[{static[0].index}] ({static[0].type}) converts to "
                "TFLite only with a static batch; use batch: 1",
            )
        no_int8 = [lay for lay in layers if lay.kind.tflite_int8_refused]
        if (
            no_int8
            and "int8" in options.quantize
            and "quantize" in options.model_fields_set
        ):
            error(
                ("export", self.name, "quantize"),
                f"int8 cannot quantize layers[{no_int8[0].index}] "
                f"({no_int8[0].type}): {no_int8[0].kind.tflite_int8_refused}; "
                "use none, float16 or dynamic",
            )

    def plan(self, export: Any, layers: list[LayerPlan]) -> TFLitePlan:
        t = self.options_of(export)
        quantize, left_out = tuple(t.quantize), None
        refused = [lay for lay in layers if lay.kind.tflite_int8_refused]
        if "quantize" not in t.model_fields_set and refused and "int8" in quantize:
            quantize = tuple(m for m in quantize if m != "int8")  # see check
            left_out = (
                f"no int8 file: int8 cannot quantize layers[{refused[0].index}] "
                f"({refused[0].type}): {refused[0].kind.tflite_int8_refused}"
            )
        return TFLitePlan(
            quantize=quantize,
            int8_io=t.int8_io,
            representative_samples=t.representative_samples,
            max_accuracy_drop=t.max_accuracy_drop,
            batch=None if t.batch == "dynamic" else t.batch,
            int8_fallback=t.int8_fallback,
            left_out=left_out,
        )

    def calibration_samples(self, plan: ModelPlan, available: int) -> int:
        """int8 calibrates on training samples."""
        options: TFLitePlan | None = self.plan_of(plan)
        if options is None or "int8" not in options.quantize:
            return 0
        return min(options.representative_samples, available)

    def files(self, plan: ModelPlan) -> tuple[str, ...]:
        options: TFLitePlan = self.plan_of(plan)
        return (*(TFLITE_FILES[mode] for mode in options.quantize), "model.json")

    def export(
        self, job: ExportJob, model: Any, generated: GeneratedModule, log: Any
    ) -> dict[str, Any]:
        """The TFLite files, checked, and what an app reads beside them."""
        from l2compile import deploy

        plan, dest, options = job.plan, job.dest, self.plan_of(job.plan)
        if options.left_out is not None:
            log(options.left_out)
        x_test, y_test = generated.preprocess(job.dataset.x_test, job.dataset.y_test)
        found = export_tflite(
            dest, plan, options, model, generated, job.dataset, x_test, y_test, log
        )
        interrupts.phase("deploy_files")
        deploy.write_deploy_files(dest, plan, options.batch, job.dataset, found)
        return found

    def recognizes(self, path: Path) -> bool:
        return path.is_file() and path.suffix == ".tflite"

    def open(self, path: Path, plan: ModelPlan) -> Opened:
        """Read a TFLite file's signature; score it with the LiteRT
        interpreter."""
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))

        def score(x: Any, targets: npt.NDArray[Any]) -> Scores:
            found = score_tflite(path, x, targets, plan.task)
            return Scores(
                scores=found.scores,
                loss=found.data_loss,
                loss_note="data loss; TFLite files hold no L2 penalty",
                mean_latency_ms=found.mean_latency_ms,
                batch=found.batch,
                outputs=found.outputs,
            )

        return Opened(
            _tflite_shapes(interpreter.get_input_details()),
            _tflite_shapes(interpreter.get_output_details()),
            score,
            lambda x: tflite_predict(path, x)[0],
        )

    def report(self, found: dict[str, Any]) -> Section:
        """Its files, one row per quantization mode, with what their checks
        measured."""
        from l2compile import plots
        from l2compile.sections import Cell, Section, image, table

        files: dict[str, dict[str, Any]] = found.get("files", {})
        columns: list[str] = []
        hidden = ("file", "metadata", "int8_fallback")
        for entry in files.values():
            columns += [k for k in entry if k not in columns and k not in hidden]
        rows = [
            (
                Cell(mode),
                Cell(str(entry.get("file", ""))),
                *(entry.get(c) for c in columns),
            )
            for mode, entry in files.items()
        ]
        notes = tuple(
            f"{k.replace('_', ' ')}: {v:.4g}"
            for k, v in found.items()
            if isinstance(v, float)
        )
        header = ("quantization", "file", *[c.replace("_", " ") for c in columns])
        images = []
        for entry in files.values():
            fallback = entry.get("int8_fallback")
            if fallback is None:
                continue
            kept = [k["layer"] for k in fallback["kept_in_float"]]
            notes += (_fallback_note(entry["file"], fallback),)
            png = plots.quantization_errors(fallback["layer_errors"], kept)
            images.append(
                image(png, f"int8 error of each operation of {entry['file']}")
            )
        return Section(
            "TFLite files",
            notes,
            images=tuple(images),
            tables=(table(header, rows),),
            anchor=self.name,
        )
