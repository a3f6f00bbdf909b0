"""Property tests: whatever the spec, validate and generate answer with the
project's own errors, and every spec that validates builds the model it
describes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l2compile.build import import_generated
from l2compile.errors import SpecError
from l2compile.plan import ModelPlan, plan_spec
from l2compile.render import render_module
from l2compile.source import parse_yaml
from l2compile.spec import validate_document

ACTIVATIONS = ["relu", "tanh", "linear", "sigmoid", "gelu"]

dense = st.fixed_dictionaries(
    {"type": st.just("dense"), "units": st.integers(1, 64)},
    optional={
        "activation": st.sampled_from(ACTIVATIONS),
        "use_bias": st.booleans(),
        "l2": st.sampled_from([0, 0.001, 0.01]),
    },
)
dropout = st.fixed_dictionaries(
    {"type": st.just("dropout"), "rate": st.floats(0, 0.9, allow_nan=False)}
)
norm = st.fixed_dictionaries({"type": st.sampled_from(["layer_normalization"])})
hidden = st.one_of(dense, dropout, norm)


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    shape = draw(st.sampled_from([[784], [28, 28], [28, 28, 1]]))
    layers: list[dict[str, Any]] = []
    if len(shape) > 1:
        layers.append({"type": "flatten"})
    layers += draw(st.lists(hidden, max_size=4))
    layers.append({"type": "dense", "units": 10, "activation": "softmax"})
    return {
        "name": draw(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)),
        "input": {"shape": shape},
        "l2": draw(st.sampled_from([0, 0.0001, 0.01])),
        "l2_bias": draw(st.booleans()),
        "l2_norm": draw(st.booleans()),
        "layers": layers,
        "train": {"recipe": "mnist", "epochs": 1, "batch_size": 32},
    }


def mutate(spec: dict[str, Any], data: st.DataObject) -> Any:
    """Break one thing: drop, retype or add a field anywhere in the tree."""
    junk = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**20), 10**20),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=20),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    )
    node: Any = spec
    while isinstance(node, (dict, list)) and node and data.draw(st.booleans()):
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        key = data.draw(st.sampled_from(keys))
        if not isinstance(node[key], (dict, list)) or data.draw(st.booleans()):
            action = data.draw(st.sampled_from(["drop", "retype", "add"]))
            if action == "drop" and isinstance(node, dict):
                del node[key]
            elif action == "add" and isinstance(node, dict):
                node[data.draw(st.text(min_size=1, max_size=12))] = data.draw(junk)
            else:
                node[key] = data.draw(junk)
            return spec
        node = node[key]
    return data.draw(junk) if data.draw(st.booleans()) else spec


def compile_text(text: str) -> ModelPlan | list[SpecError]:
    doc = parse_yaml(text, "spec.yaml")
    if isinstance(doc, list):
        return doc
    loaded = validate_document(doc)
    if isinstance(loaded, list):
        return loaded
    return plan_spec(loaded)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(), data=st.data())
def test_broken_specs_get_spec_errors_never_exceptions(
    spec: dict[str, Any], data: st.DataObject
) -> None:
    result = compile_text(yaml.safe_dump(mutate(spec, data)))
    if isinstance(result, list):
        assert result and all(isinstance(e, SpecError) for e in result)
        assert all(str(e).startswith("spec.yaml") for e in result)
    else:
        compile(render_module(result), "generated.py", "exec")


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300))
def test_any_text_gets_spec_errors_never_exceptions(text: str) -> None:
    result = compile_text(text)
    if isinstance(result, list):
        assert all(isinstance(e, SpecError) for e in result)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs())
def test_every_valid_spec_builds_the_model_it_describes(
    spec: dict[str, Any], tmp_path_factory: Any
) -> None:
    plan = compile_text(yaml.safe_dump(spec))
    assert not isinstance(plan, list), [str(e) for e in plan]
    folder = tmp_path_factory.mktemp("gen")
    path = folder / f"{plan.name}.py"
    path.write_text(render_module(plan))
    module = import_generated(path, f"property_{plan.name}")
    model = module.build_model()
    assert model.count_params() == plan.params
    regularized = sum(1 for lay in plan.layers for w in lay.weights if w.l2 > 0)
    assert len(model.losses) == regularized
    sample = np.zeros((1, *spec["input"]["shape"]), dtype="float32")
    assert math.prod(np.asarray(model(sample)).shape[1:]) == 10
