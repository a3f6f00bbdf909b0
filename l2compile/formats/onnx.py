"""`onnx`: model.onnx, for ONNX Runtime on servers, desktops and the web,
exported by Keras (`model.export(format="onnx")`) and scored with ONNX
Runtime on the test split against the Keras model, as the float32 TFLite file
is (the same tolerance).

Keras exports ONNX through tf2onnx on TensorFlow, where the export stage
runs, and through jax2onnx on JAX (in a child process). Each fails for some
layers (`LayerSpec.onnx_refused`); the format takes TensorFlow's route where
every layer allows it, else JAX's, and a model that neither exports is
refused when the spec is validated, naming its layers. The file's input is
named `input` and its output as the task's (`probabilities`, ...), as in the
TFLite files; its batch dimension is free.

onnx, onnxruntime, tf2onnx and jax2onnx are the `l2compile[onnx]` extra,
imported inside the functions that need them; a build that exports ONNX
without them stops before training and says what to install.
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from l2compile import interrupts, processes
from l2compile.errors import BuildError, ParityError
from l2compile.formats.base import Error, ExportFormat, Opened, Scores, register
from l2compile.formats.tflite import TFLITE_TOLERANCE

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from l2compile.contract import GeneratedModule
    from l2compile.formats.base import ExportJob, TensorShape
    from l2compile.nodes import LayerPlan, ModelPlan
    from l2compile.sections import Section
    from l2compile.tasks import Task

ONNX_FILE = "model.onnx"
#: The routes Keras exports ONNX by, in the order tried.
ROUTES = ("tensorflow", "jax")
#: The modules the extra brings, and how to install them.
NEEDED = ("onnx", "onnxruntime", "tf2onnx", "jax2onnx")
INSTALL = 'pip install "l2compile[onnx]"'
#: Samples ONNX Runtime runs at a time.
CHUNK = 256


@dataclass(frozen=True)
class OnnxPlan:
    """How the ONNX file is exported."""

    route: str  #: "tensorflow" or "jax"


@dataclass(frozen=True)
class OnnxJob:
    """The JAX route's job, for its child process."""

    model_file: Path
    path: Path
    dtype: str = "float32"  #: the input's (a text model's: int32 ids)


def _route(layers: list[LayerPlan]) -> tuple[str | None, dict[str, LayerPlan]]:
    """The first route no layer refuses (None: none), and for each route
    the first layer that refuses it."""
    refused: dict[str, LayerPlan] = {}
    for layer in layers:
        for route in layer.kind.onnx_refused:
            refused.setdefault(route, layer)
    return next((r for r in ROUTES if r not in refused), None), refused


def missing_packages() -> list[str]:
    """The extra's modules that are not installed."""
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


def export_jax(job: OnnxJob, log: Any) -> None:
    """(The `onnx` stage, on JAX.) The trained model exported through
    jax2onnx."""
    import keras

    _export(keras.saving.load_model(job.model_file), job.path, job.dtype)


def _export(model: Any, path: Path, dtype: str) -> None:
    """Keras' ONNX export, its one input (a free batch, of `dtype`) given:
    Keras infers it only for a model it has called since it was loaded. Its
    warnings about the exporters' own code are quiet."""
    import keras

    shape = (None, *model.input_shape[1:])
    signature = [keras.InputSpec(shape=shape, dtype=dtype, name="input")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        model.export(str(path), format="onnx", verbose=False, input_signature=signature)


def _rename(path: Path, input_name: str, output_name: str) -> int:
    """Name the file's one input and one output as the TFLite files do;
    its opset (the default domain's)."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    renames = {graph.input[0].name: input_name, graph.output[0].name: output_name}
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
    for value in (*graph.input, *graph.output, *graph.value_info):
        value.name = renames.get(value.name, value.name)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return max(
        int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")
    )


#: ONNX Runtime's names of the input types l2compile's models take.
_DTYPES = {"tensor(float)": "float32", "tensor(int32)": "int32"}


def onnx_predict(
    path: Path, x: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.float32], float]:
    """The file's outputs for `x` from ONNX Runtime (one thread, CHUNK
    samples at a time), and the seconds spent running it."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"]
    )
    (fed,) = session.get_inputs()
    dtype = _DTYPES.get(fed.type, np.float32)
    outputs, seconds = [], 0.0
    for start in range(0, len(x), CHUNK):
        interrupts.check()
        batch = np.ascontiguousarray(x[start : start + CHUNK], dtype=dtype)
        began = time.perf_counter()
        (found,) = session.run(None, {fed.name: batch})[:1]
        seconds += time.perf_counter() - began
        outputs.append(np.asarray(found, dtype=np.float32))
    return np.concatenate(outputs), seconds


def _scores(
    path: Path, x: npt.NDArray[np.float32], targets: Any, task: Task
) -> tuple[Scores, npt.NDArray[np.float32]]:
    outputs, seconds = onnx_predict(path, x)
    return (
        Scores(
            scores=task.scores(outputs, targets),
            loss=task.data_loss(outputs, targets),
            loss_note="data loss; ONNX files hold no L2 penalty",
            mean_latency_ms=1000 * seconds / max(len(targets), 1),
            batch=CHUNK,
            outputs=outputs,
        ),
        outputs,
    )


def _shapes(values: Any) -> list[TensorShape]:
    return [
        tuple(d if isinstance(d, int) else None for d in value.shape)
        for value in values
    ]


@register
class OnnxFormat(ExportFormat):
    name = "onnx"
    artifact = "a .onnx file"
    writes = ONNX_FILE
    title = "ONNX"
    default = False
    packages = NEEDED

    def check(self, export: Any, layers: list[LayerPlan], error: Error) -> None:
        """A model that neither route exports, before any training."""
        super().check(export, layers, error)
        if not self.chosen(export):
            return
        route, refused = _route(layers)
        if route is None:
            reasons = "; ".join(
                f"through {r}: layers[{lay.index}] ({lay.type}): "
                f"{lay.kind.onnx_refused[r]}"
                for r, lay in refused.items()
            )
            error(
                ("export", "formats"),
                f"onnx: Keras cannot export this model to ONNX ({reasons}); "
                "leave onnx out of export.formats",
            )

    def plan(self, export: Any, layers: list[LayerPlan]) -> OnnxPlan:
        route, _ = _route(layers)
        return OnnxPlan(route or ROUTES[0])

    def missing(self) -> str | None:
        absent = missing_packages()
        if not absent:
            return None
        return (
            f"export.formats: onnx needs {', '.join(absent)}, which are not "
            f"installed: {INSTALL}"
        )

    def files(self, plan: ModelPlan) -> tuple[str, ...]:
        return (ONNX_FILE,)

    def export(
        self, job: ExportJob, model: Any, generated: GeneratedModule, log: Any
    ) -> dict[str, Any]:
        """model.onnx, scored with ONNX Runtime against the Keras model."""
        from l2compile import deploy, scoring

        plan, path = job.plan, job.dest / ONNX_FILE
        route = self.plan_of(plan).route
        interrupts.phase("onnx")
        log(f"exporting {ONNX_FILE} (Keras, through {_TOOLS[route]})")
        try:
            if route == "jax":
                job_ = OnnxJob(job.model_file, path, plan.recipe.input_dtype)
                processes.run("onnx", "jax", job_, log)
            else:
                _export(model, path, plan.recipe.input_dtype)
            opset = _rename(path, deploy.INPUT_NAME, plan.task.output_name)
        except BuildError:
            raise
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise BuildError(
                f"export.formats: Keras could not export {ONNX_FILE} through "
                f"{_TOOLS[route]}: {type(exc).__name__}: {reason}"
            ) from exc
        x_test, y_test = generated.preprocess(job.dataset.x_test, job.dataset.y_test)
        targets = plan.task.targets(y_test)
        keras_outputs = scoring.predict(lambda x: model(x, training=False), x_test)
        log(f"checking {ONNX_FILE} on the test split with ONNX Runtime")
        found, outputs = _scores(path, x_test, targets, plan.task)
        parity = plan.task.compare(keras_outputs, outputs, targets)
        entry = {
            "file": ONNX_FILE,
            "opset": opset,
            "exported_through": _TOOLS[route],
            "size_bytes": path.stat().st_size,
            **{f"test_{metric}": value for metric, value in found.scores.items()},
            parity.key: parity.difference,
            "test_data_loss": found.loss,
            "mean_latency_ms": found.mean_latency_ms,
        }
        deploy.add_to_model_json(
            job.dest, plan, job.dataset, self.name, _model_json(path, entry)
        )
        if abs(parity.difference) > TFLITE_TOLERANCE:
            raise ParityError(parity.failure(ONNX_FILE, TFLITE_TOLERANCE, ""))
        return entry

    def recognizes(self, path: Path) -> bool:
        return path.is_file() and path.suffix == ".onnx"

    def open(self, path: Path, plan: ModelPlan) -> Opened:
        """Read an ONNX file's inputs and outputs; score it with ONNX
        Runtime."""
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def score(x: Any, targets: npt.NDArray[Any]) -> Scores:
            return _scores(path, x, targets, plan.task)[0]

        return Opened(
            _shapes(session.get_inputs()),
            _shapes(session.get_outputs()),
            score,
            lambda x: onnx_predict(path, x)[0],
        )

    def report(self, found: dict[str, Any]) -> Section:
        """Its file, with what its check measured."""
        from l2compile.sections import Cell, Section, table

        columns = [k for k in found if k != "file"]
        row = (Cell(str(found.get("file", ONNX_FILE))), *(found[c] for c in columns))
        header = ("file", *[c.replace("_", " ") for c in columns])
        return Section(
            "ONNX file",
            ("scored with ONNX Runtime on the test split, one thread",),
            tables=(table(header, [row]),),
            anchor=self.name,
        )


#: What each route exports with.
_TOOLS = {"tensorflow": "tf2onnx", "jax": "jax2onnx"}


def _model_json(path: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """What model.json says of the file: its tensors as ONNX Runtime reads
    them, and the opset."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    tensors = {
        kind: [
            {
                "name": v.name,
                "shape": [d if isinstance(d, int) else -1 for d in v.shape],
            }
            for v in values
        ]
        for kind, values in (
            ("inputs", session.get_inputs()),
            ("outputs", session.get_outputs()),
        )
    }
    return {
        "file": entry["file"],
        "opset": entry["opset"],
        "runtime": "ONNX Runtime (onnxruntime), float32 out",
        **tensors,
    }
