"""int8 within its accuracy budget: keep the operations that lose the most in
float, fewest first (mixed precision, without retraining).

    debugger = Debugger(source, representative, int8_io)
    errors = debugger.errors(layer_names, output_layer)
    found = search(debugger, errors, measure, budget=..., most_bytes=..., log=...)

`Debugger.errors` measures each quantized operation's error on calibration
samples with the converter's own `tf.lite.experimental.QuantizationDebugger`:
the root mean square of the difference between the operation's float and
quantized outputs, in units of its output's quantization step (`rmse/scale`,
the debugger's tutorial's measure; 0.29 is a uniform rounding error's). The
operations are ranked by it, worst first, ties by their order in the model.

`search` converts again with the worst k operations kept in float (the
debugger's `denylisted_nodes`), for k = 1, 2, 4, ... until a file is within
the budget, then halves the gap to the last k that was not, so the file it
keeps holds the fewest float operations the ranking allows. It stops without
a file when a step would be larger than `most_bytes` (the dynamic-range
file's size, or the full int8 file's where that is larger) or every
operation is already in float. Every step is a `Step`; the same spec and seed
give the same steps. `search_within` runs it, and where a step went over the
bound, runs it again over the operations whose float weights (`float_costs`)
fit the room the full int8 file leaves.

TensorFlow is imported inside the functions that need it.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import re
import warnings
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "Debugger",
    "LayerError",
    "Search",
    "Step",
    "float_costs",
    "layer_name",
    "search",
    "search_within",
]

#: Calibration samples the debugger runs to measure the errors: enough for a
#: stable mean, few enough that the debug model's run stays short.
DEBUG_SAMPLES = 64


@dataclass(frozen=True)
class LayerError:
    """One quantized operation's measured error."""

    layer: str  #: the Keras layer it computes (its path inside nested models)
    op: str  #: the TFLite operation, such as CONV_2D
    tensor: str  #: its output tensor's name: what the converter keeps in float
    error: float  #: rmse / scale on the calibration samples


@dataclass(frozen=True)
class Step:
    """One conversion of the search."""

    kept: int  #: the worst operations kept in float
    drop: float | None  #: the file's drop against the Keras model (None: not scored)
    size_bytes: int
    within: bool  #: within the budget (and the size bound)
    note: str = ""  #: why it was not scored or kept


@dataclass
class Search:
    """What the search found: the file's bytes where one met the budget."""

    errors: list[LayerError]
    steps: list[Step] = field(default_factory=list)
    model: bytes | None = None
    kept: tuple[LayerError, ...] = ()

    @property
    def best_drop(self) -> float | None:
        scored = [s.drop for s in self.steps if s.drop is not None]
        return min(scored) if scored else None


def _converter(source: Path, representative: npt.NDArray[np.float32]) -> Any:
    import tensorflow as tf

    from l2compile.deploy import SIGNATURE

    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(source), signature_keys=[SIGNATURE]
    )
    converter.optimizations = [tf.lite.Optimize.DEFAULT]

    def samples() -> Any:
        for sample in representative:
            yield [sample[None, ...]]

    converter.representative_dataset = samples
    return converter


def layer_name(tensor: str, names: Collection[str], output_layer: str) -> str:
    """The Keras layer an operation's output tensor belongs to: its name
    scopes without the model's and the operation's, each the layer name of
    `names` it was made from (TensorFlow adds `_1` to a scope it has seen:
    `model_1/dense_1_1/MatMul;...` -> `dense_1`; nested models give a path,
    `backbone/conv_1`). The model's output, whose tensor is named after the
    signature, is `output_layer`."""
    parts = tensor.split(";")[0].split("/")
    if len(parts) < 3:
        return output_layer if ":" in tensor else tensor
    return "/".join(_known(part, names) for part in parts[1:-1])


def _known(scope: str, names: Collection[str]) -> str:
    found = scope
    while found not in names and re.fullmatch(r".+_[0-9]+", found):
        found = found.rsplit("_", 1)[0]
    return found if found in names else scope


class Debugger:
    """The converter's quantization debugger over one SavedModel: measures
    the operations' errors and converts with some of them in float."""

    def __init__(
        self, source: Path, representative: npt.NDArray[np.float32], int8_io: bool
    ) -> None:
        import tensorflow as tf

        self._tf = tf
        self.int8_io = int8_io
        debug = representative[:DEBUG_SAMPLES]

        def samples() -> Any:
            for sample in debug:
                yield [sample[None, ...]]

        with warnings.catch_warnings():  # it makes a tf.lite.Interpreter
            warnings.simplefilter("ignore", UserWarning)
            self._debugger = tf.lite.experimental.QuantizationDebugger(
                converter=_converter(source, representative),
                debug_dataset=samples,
                debug_options=self._options(()),
            )

    def _options(self, denied: Sequence[str]) -> Any:
        return self._tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=list(denied) or None, fully_quantize=self.int8_io
        )

    def errors(self, names: Collection[str], output_layer: str) -> list[LayerError]:
        """Every quantized operation's error, worst first, named by the
        layers of `names` (see layer_name)."""
        with warnings.catch_warnings():  # it runs tf.lite.Interpreter
            warnings.simplefilter("ignore", UserWarning)
            self._debugger.run()
        dump = io.StringIO()
        self._debugger.layer_statistics_dump(dump)
        found = []
        for row in csv.DictReader(io.StringIO(dump.getvalue())):
            scale = float(row["scale"])
            rmse = math.sqrt(max(float(row["mean_squared_error"]), 0.0))
            error = rmse / scale if scale > 0 else 0.0
            found.append(
                LayerError(
                    layer_name(row["tensor_name"], names, output_layer),
                    row["op_name"],
                    row["tensor_name"],
                    error if math.isfinite(error) else 0.0,
                )
            )
        order = {id(e): k for k, e in enumerate(found)}
        return sorted(found, key=lambda e: (-e.error, order[id(e)]))

    def convert(self, kept: Sequence[str]) -> bytes:
        """The int8 file with the operations writing `kept` in float."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self._debugger.options = self._options(kept)
            model: bytes = self._debugger.get_nondebug_quantized_model()
        return model


def float_costs(path: Path) -> dict[str, int]:
    """For each operation of an int8 TFLite file, by its output tensor's
    name: the bytes its constant inputs (weights, biases) would add stored
    as float32. Read with LiteRT's operator list (an underscored method: an
    empty answer, where it is gone, leaves every operation eligible)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    listed = getattr(interpreter, "_get_ops_details", None)
    if listed is None:
        return {}
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = listed()
    made = {i for op in ops for i in op["outputs"]}
    fed = {d["index"] for d in interpreter.get_input_details()}
    costs = {}
    for op in ops:
        if not len(op["outputs"]) or op["outputs"][0] not in tensors:
            continue
        cost = 0
        for i in op["inputs"]:
            if i < 0 or i in made or i in fed or i not in tensors:
                continue
            tensor = tensors[i]
            size = int(np.prod(tensor["shape"])) if len(tensor["shape"]) else 1
            cost += size * max(0, 4 - np.dtype(tensor["dtype"]).itemsize)
        costs[tensors[op["outputs"][0]]["name"]] = cost
    return costs


def search(
    debugger: Debugger,
    errors: list[LayerError],
    measure: Callable[[bytes], float],
    *,
    budget: float,
    most_bytes: int,
    log: Callable[[str], None],
) -> Search:
    """Keep the worst operations in float, fewest first, until `measure`
    (the file's drop against the Keras model) is within `budget`."""
    found = Search(errors)
    tried: dict[int, Step] = {}
    models: dict[int, bytes] = {}

    def step(k: int) -> Step:
        if k in tried:
            return tried[k]
        kept = errors[:k]
        model = debugger.convert([e.tensor for e in kept])
        if len(model) > most_bytes:
            note = f"{len(model):,} bytes, over {most_bytes:,}"
            done = Step(k, None, len(model), False, note)
        else:
            drop = measure(model)
            done = Step(k, drop, len(model), drop <= budget)
            if done.within:
                models[k] = model
        names = ", ".join(e.layer for e in kept)
        told = f"drop {done.drop:.4f}" if done.drop is not None else done.note
        log(f"int8 fallback: {k} in float ({names}): {told}")
        tried[k] = done
        found.steps.append(done)
        return done

    last = len(errors) - 1  #: the most kept in float: all would be the float file
    low, high = 0, 1  #: low: the most operations known not to meet the budget
    while True:
        if high > last:
            return found
        done = step(high)
        if done.within:
            break
        if done.drop is None or high == last:  # over the size bound, or done
            return found
        low, high = high, min(2 * high, last)
    while high - low > 1:  # the fewest between low and high that meet it
        middle = (low + high) // 2
        if step(middle).within:
            high = middle
        else:
            low = middle
    found.model = models[high]
    found.kept = tuple(errors[:high])
    return found


def search_within(
    debugger: Debugger,
    errors: list[LayerError],
    measure: Callable[[bytes], float],
    costs: dict[str, int],
    *,
    budget: float,
    most_bytes: int,
    room: int,
    log: Callable[[str], None],
) -> tuple[Search, list[LayerError]]:
    """`search` over every operation; where a step went over `most_bytes`
    without meeting the budget, again over the operations whose float
    weights (`costs`, by tensor) fit the `room` the full file leaves, as
    activations and additions do: the search, and the operations left out."""
    run = functools.partial(
        search, debugger, measure=measure, budget=budget, most_bytes=most_bytes, log=log
    )
    found = run(errors)
    if found.model is not None or all(s.drop is not None for s in found.steps):
        return found, []
    skipped = [e for e in errors if costs.get(e.tensor, 0) > room]
    eligible = [e for e in errors if costs.get(e.tensor, 0) <= room]
    if not (skipped and eligible):
        return found, []
    log(
        f"int8 fallback: again without the {len(skipped)} operation(s) whose "
        f"float weights take more than the {room:,} bytes the file may grow"
    )
    again = run(eligible)
    again.steps = found.steps + again.steps
    again.errors = errors
    return again, skipped
