"""Property tests for graphs: any wiring of layers either plans into the model
Keras builds, or gets the project's own located errors."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l2compile.contract import GeneratedModule, import_generated
from l2compile.errors import SpecError
from l2compile.render import render_module

from .test_properties import compile_text, specs

ELEMENT_WISE = ["add", "multiply", "average", "maximum"]


def _body(code: str) -> str:
    lines = code.splitlines()
    assert "sha256" in lines[1]
    return "\n".join(lines[:1] + lines[2:])


@st.composite
def graphs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid graph on a 16-value input: dense branches from any earlier
    output, merges of earlier outputs whose shapes fit, and every dangling
    output concatenated before the softmax (so no branch is dead)."""
    widths: dict[str, int] = {"input": 16}
    used: set[str] = set()
    layers: list[dict[str, Any]] = []
    for i in range(draw(st.integers(1, 7))):
        name = f"n{i}"
        kind = draw(st.sampled_from(["dense", "merge", "concatenate"]))
        same: dict[int, list[str]] = {}
        for earlier, width in widths.items():
            same.setdefault(width, []).append(earlier)
        groups = [names for names in same.values() if len(names) > 1]
        if kind == "merge" and groups:
            group = draw(st.sampled_from(groups))
            inputs = draw(st.lists(st.sampled_from(group), min_size=2, max_size=3))
            layer = {"type": draw(st.sampled_from(ELEMENT_WISE)), "inputs": inputs}
            widths[name] = widths[inputs[0]]
        elif kind == "concatenate" and len(widths) > 1:
            inputs = draw(
                st.lists(st.sampled_from(sorted(widths)), min_size=2, max_size=3)
            )
            layer = {"type": "concatenate", "inputs": inputs}
            widths[name] = sum(widths[ref] for ref in inputs)
        else:
            units = draw(st.sampled_from([4, 8]))
            layer = {"type": "dense", "units": units, "activation": "relu"}
            source = draw(st.sampled_from(sorted(widths)))
            if draw(st.booleans()) or layers:
                layer["inputs"] = [source]
            else:
                source = "input"
            widths[name] = units
            inputs = [source]
        used.update(inputs)
        layers.append({**layer, "name": name})
    dangling = [f"n{i}" for i in range(len(layers)) if f"n{i}" not in used]
    if len(dangling) > 1:
        layers.append({"type": "concatenate", "inputs": dangling, "name": "joined"})
    layers.append({"type": "dense", "units": 10, "activation": "softmax"})
    return {
        "name": "graph",
        "input": {"shape": [16]},
        "l2": draw(st.sampled_from([0, 0.001])),
        "l2_bias": draw(st.booleans()),
        "layers": layers,
        "train": {"recipe": "npz", "num_classes": 10, "epochs": 1, "batch_size": 8},
    }


@pytest.mark.build
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=graphs())
def test_every_valid_graph_builds_the_model_it_describes(
    spec: dict[str, Any], tmp_path_factory: Any
) -> None:
    plan = compile_text(yaml.safe_dump(spec))
    assert not isinstance(plan, list), [str(e) for e in plan]
    path = tmp_path_factory.mktemp("gen") / f"{plan.name}.py"
    path.write_text(render_module(plan))
    module: GeneratedModule = import_generated(path, "graph_property")
    model = module.build_model()
    assert model.count_params() == plan.params
    for planned in plan.layers:
        keras_layer = model.get_layer(planned.name)
        assert tuple(keras_layer.output.shape[1:]) == planned.output_shape
    regularized = sum(1 for lay in plan.layers for w in lay.weights if w.l2 > 0)
    assert len(model.losses) == regularized
    assert np.asarray(model(np.zeros((2, 16), "float32"))).shape == (2, 10)


@pytest.mark.unit
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=graphs(), data=st.data())
def test_any_rewiring_gets_a_plan_or_located_errors(
    spec: dict[str, Any], data: st.DataObject
) -> None:
    """Point one layer's inputs anywhere: at later layers, itself, unknown
    names, too many or too few; the answer is a plan or SpecErrors."""
    names = [lay.get("name", "x") for lay in spec["layers"]]
    pool = [*names, "input", "nowhere", "n99"]
    i = data.draw(st.integers(0, len(spec["layers"]) - 1))
    spec["layers"][i]["inputs"] = data.draw(
        st.lists(st.sampled_from(pool), min_size=1, max_size=4)
    )
    result = compile_text(yaml.safe_dump(spec))
    if isinstance(result, list):
        assert result and all(isinstance(e, SpecError) for e in result)
        assert all(str(e).startswith("spec.yaml:") for e in result)
        return
    seen = {"input"}
    for layer in result.layers:
        assert set(layer.inputs) <= seen  # every input comes before its reader
        seen.add(layer.name)
    compile(render_module(result), "generated.py", "exec")


@pytest.mark.unit
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(), data=st.data())
def test_naming_the_previous_layer_as_input_leaves_a_stack_a_stack(
    spec: dict[str, Any], data: st.DataObject
) -> None:
    """`inputs: [the layer before]` says what a stack already means: the same
    keras.Sequential, byte for byte."""
    plain = compile_text(yaml.safe_dump(spec))
    assert not isinstance(plain, list)
    names = ["input", *(layer.name for layer in plain.layers)]
    for i, layer in enumerate(spec["layers"]):
        if data.draw(st.booleans()):
            layer["inputs"] = [names[i]]
    wired = compile_text(yaml.safe_dump(spec))
    assert not isinstance(wired, list)
    assert wired.is_stack
    # The same code, under a header naming a different spec file's sha256.
    assert _body(render_module(wired)) == _body(render_module(plain))
    assert math.prod(wired.output_shape) == 10
