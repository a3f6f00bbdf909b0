"""export.tflite.int8_fallback: an int8 file over its accuracy budget is
converted again with the operations that lose the most kept in float,
fewest first (l2compile.quantize), and the build says which.

The search is checked on a stand-in debugger (which operations it keeps,
in which order, where it stops), and end to end on a regression whose full
int8 file misses its budget (tests/specs/int8_fallback.yaml): the fallback
meets it, the operations metrics.json and model.json list are the file's
float operations, and `int8_fallback: none` fails the same spec."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from l2compile import build as builder
from l2compile import quantize
from l2compile.errors import BuildError
from l2compile.generate import compile_spec
from l2compile.overrides import parse

from .conftest import ROOT, TEST_SPECS

# --- the search, on a stand-in debugger -----------------------------------------------


class _Debugger(quantize.Debugger):
    """Converts to a stand-in file: the kept tensors' names, each op adding
    `grow` bytes to `base`."""

    def __init__(self, base: int = 1000, grow: int = 10) -> None:
        self.base, self.grow = base, grow
        self.asked: list[tuple[str, ...]] = []

    def convert(self, kept: Sequence[str]) -> bytes:
        self.asked.append(tuple(kept))
        return b"x" * (self.base + self.grow * len(kept))


def _errors(count: int) -> list[quantize.LayerError]:
    return [
        quantize.LayerError(f"layer_{k}", "CONV_2D", f"t{k}", 1.0 / (k + 1))
        for k in range(count)
    ]


def _drops(needed: int) -> dict[int, float]:
    """A file meets a 0.01 budget with `needed` or more operations in float."""
    return {k: 0.005 if k >= needed else 0.05 - k * 0.001 for k in range(100)}


def _run(
    count: int, needed: int, most_bytes: int = 10**6
) -> tuple[quantize.Search, _Debugger, list[str]]:
    debugger, said = _Debugger(), []
    drops = _drops(needed)
    found = quantize.search(
        debugger,
        _errors(count),
        lambda model: drops[(len(model) - debugger.base) // debugger.grow],
        budget=0.01,
        most_bytes=most_bytes,
        log=said.append,
    )
    return found, debugger, said


@pytest.mark.unit
@pytest.mark.parametrize("needed", [1, 2, 3, 5, 6, 9, 13, 19])
def test_the_search_keeps_the_fewest_worst_operations(needed: int) -> None:
    found, debugger, said = _run(20, needed)
    assert found.model is not None
    assert [e.tensor for e in found.kept] == [f"t{k}" for k in range(needed)]
    # doubling, then halving the gap: a few conversions, never one twice
    assert len(debugger.asked) == len(set(debugger.asked))
    assert len(debugger.asked) <= 2 * (needed.bit_length() + 1)
    assert len(said) == len(found.steps) == len(debugger.asked)
    assert found.best_drop == 0.005


@pytest.mark.unit
def test_the_search_stops_at_the_size_bound_and_before_every_op_is_float() -> None:
    found, debugger, said = _run(20, 8, most_bytes=1000 + 10 * 4)
    assert found.model is None and not found.kept
    assert [len(kept) for kept in debugger.asked] == [1, 2, 4, 8]
    assert "over 1,040" in said[-1]
    found, debugger, _ = _run(5, 5)  # all five in float: the float file
    assert found.model is None
    assert max(len(kept) for kept in debugger.asked) == 4


@pytest.mark.unit
def test_the_same_errors_give_the_same_steps() -> None:
    first, second = _run(20, 7), _run(20, 7)
    assert first[0].steps == second[0].steps
    assert first[1].asked == second[1].asked


@pytest.mark.unit
def test_tensor_names_give_the_layers_they_come_from() -> None:
    names = {"dense_1", "dense_2", "backbone", "conv_1", "dense"}
    name = quantize.layer_name
    assert name("model_1/dense_1_1/MatMul;model_1/dense_1_1/Relu", names, "o") == (
        "dense_1"
    )
    assert name("functional/backbone/conv_1/Conv2D", names, "o") == "backbone/conv_1"
    assert name("StatefulPartitionedCall:0", names, "head") == "head"
    assert name("m/unknown_7/Add", names, "o") == "unknown_7"


# --- end to end -----------------------------------------------------------------------


def _wide(path: Path) -> Path:
    """Six inputs, one a hundred times the others: int8 rounds the small
    ones away in the first layer's output."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1200, 6)).astype(np.float32)
    x[:, 0] *= 100
    y = x[:, 0] / 100 + x[:, 1] - 0.5 * x[:, 2] + 0.3 * x[:, 3] * x[:, 4]
    np.savez(
        path,
        x_train=x[:900],
        y_train=y[:900].astype(np.float32),
        x_test=x[900:],
        y_test=y[900:].astype(np.float32),
    )
    return path


def _build(tmp_path: Path, name: str, *sets: str) -> tuple[Path, list[str]]:
    compiled = compile_spec(
        (TEST_SPECS / "int8_fallback.yaml").relative_to(ROOT),
        overrides=[parse(s) for s in sets],
    )
    assert not isinstance(compiled, list), [str(e) for e in compiled]
    said: list[str] = []
    out = tmp_path / name
    builder.build(
        compiled.plan,
        compiled.code,
        out,
        data=_wide(tmp_path / "wide.npz"),
        log=said.append,
    )
    return out, said


@pytest.mark.build
def test_the_fallback_meets_the_budget_the_full_int8_file_misses(
    tmp_path: Path,
) -> None:
    from ai_edge_litert.interpreter import Interpreter

    out, said = _build(tmp_path, "auto")
    metrics = json.loads((out / "metrics.json").read_text())
    entry = metrics["tflite"]["files"]["int8"]
    report = entry["int8_fallback"]
    budget = 0.8  # tests/specs/int8_fallback.yaml
    # Measured here: the full file 1.48 (of the targets' standard
    # deviation), 1.47 with the output layer in float, 0.59 with dense_1 too.
    assert report["drop_before"] > budget
    assert report["drop_after"] <= budget
    assert entry["relative_max_difference"] == report["drop_after"]
    kept = report["kept_in_float"]
    assert 0 < len(kept) < len(report["layer_errors"])
    worst = sorted(report["layer_errors"], key=lambda e: -e["error"])
    assert [k["layer"] for k in kept] == [e["layer"] for e in worst[: len(kept)]]
    assert any(s["within"] and s["kept"] == len(kept) for s in report["steps"])
    # the file's own float operations are the ones listed
    interpreter = Interpreter(model_path=str(out / "model.int8.tflite"))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    in_float = {
        (op["op_name"], tensors[op["outputs"][0]]["name"])
        for op in interpreter._get_ops_details()
        if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE")
        and tensors[op["outputs"][0]]["dtype"] == np.float32
    }
    assert in_float == {(k["op"], k["tensor"]) for k in kept}
    model_json = json.loads((out / "model.json").read_text())
    assert model_json["files"]["int8"]["float_operations"] == [k["layer"] for k in kept]
    steps = [line for line in said if line.startswith("int8 fallback: ")]
    assert len(steps) == len(report["steps"])
    page = (out / "report.html").read_text(encoding="utf-8")
    assert f"with {len(kept)} operation(s) kept in float" in page
    assert 'alt="int8 error of each operation of model.int8.tflite"' in page
    # int8_fallback: none keeps today's behaviour: the build fails
    with pytest.raises(BuildError, match="max_accuracy_drop"):
        _build(tmp_path, "none", "export.tflite.int8_fallback=none")


@pytest.mark.unit
def test_a_fallback_that_misses_says_why() -> None:
    from l2compile.formats.tflite import _fallback_failure

    def step(kept: int, drop: float | None, size: int) -> dict[str, object]:
        return {"kept": kept, "drop": drop, "size_bytes": size}

    over = {"most_bytes": 2_725_395, "steps": [step(1, None, 2_735_136)]}
    said = _fallback_failure(over)
    assert said.startswith("; the int8 fallback could not keep an operation in float")
    assert "with 1 the file is 2,735,136 bytes, over 2,725,395 bytes" in said
    tried = {"most_bytes": 9_000, "steps": [step(1, 0.05, 5_000), step(2, 0.03, 5_100)]}
    said = _fallback_failure(tried)
    assert "reached 0.0300 at best, with 2 operation(s) in float" in said
    assert "more would put every operation in float" in said


@pytest.mark.unit
def test_over_the_size_bound_the_search_goes_on_without_the_heavy_operations() -> None:
    """t0 and t1 carry weights that would pass the bound; the budget is met
    once t4 is in float: the second pass keeps t2, t3, t4 and none of them."""
    debugger, said = _Debugger(), []

    def size(kept: Sequence[str]) -> int:
        return 1000 + 500 * len({"t0", "t1"} & set(kept))

    debugger.convert = lambda kept: (  # type: ignore[method-assign]
        debugger.asked.append(tuple(kept))
        or b"x" * size(kept) + b"|".join(k.encode() for k in kept)
    )

    def drop(model: bytes) -> float:
        kept = model.split(b"x")[-1].split(b"|")
        return 0.005 if b"t4" in kept else 0.05

    found, skipped = quantize.search_within(
        debugger,
        _errors(10),
        drop,
        {"t0": 400, "t1": 400},
        budget=0.01,
        most_bytes=1100,
        room=100,
        log=said.append,
    )
    assert [e.tensor for e in skipped] == ["t0", "t1"]
    assert [e.tensor for e in found.kept] == ["t2", "t3", "t4"]
    assert found.steps[0].drop is None  # the first pass's first step
    assert any("again without the 2 operation(s)" in line for line in said)
