"""`l2compile import`: a spec written from a Keras model file.

The round trip is the proof: spec -> generate -> build_model() -> save .keras
-> import -> a spec that plans to the same model (layers, wiring, shapes,
arguments, regularized weights, parameters), for every spec l2compile ships
or tests, and for random graphs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from l2compile.contract import import_generated
from l2compile.import_check import import_model
from l2compile.layers.base import INPUT
from l2compile.nodes import ModelPlan
from l2compile.overrides import parse
from l2compile.plan import plan_spec
from l2compile.render import render_module
from l2compile.spec import load_spec

from .conftest import SPECS, TEST_SPECS, plan_file
from .test_graph_properties import graphs
from .test_properties import compile_text

ROUND_TRIP = sorted(SPECS.glob("*.yaml")) + sorted(TEST_SPECS.glob("*.yaml"))


def signature(plan: ModelPlan) -> dict[str, Any]:
    """What makes two plans the same model: each layer (but the ones that
    augment the training images in the input pipeline, which no model
    holds) with its kind, arguments, shapes, wiring and weights, each weight
    with its L2 coefficient and whether it trains."""
    augmenting = {layer.name for layer in plan.layers if layer.augments}
    return {
        "input": plan.input_shape,
        # By name: a graph's layers come in the order Keras saves them.
        "layers": sorted(
            (
                layer.name,
                layer.type,
                layer.args,
                layer.output_shape,
                tuple(INPUT if i in augmenting else i for i in layer.inputs),
                tuple(
                    (w.name, w.shape, w.role, w.l2, w.trainable) for w in layer.weights
                ),
            )
            for layer in plan.layers
            if not layer.augments
        ),
        "params": plan.params,
        "regularized": sum(1 for lay in plan.layers for w in lay.weights if w.l2 > 0),
    }


def _offline(path: Path) -> list[Any]:
    """Overrides that build a spec's model offline: a backbone's ImageNet
    weights are not in the tests' Keras cache, and its layers are the same
    with weights: none."""
    data = yaml.safe_load(path.read_text())
    return [
        parse(f"layers.{i}.weights=none")
        for i, layer in enumerate(data["layers"])
        if layer.get("type") == "backbone"
        and layer.get("weights", "imagenet") == "imagenet"
    ]


def _saved_model(plan: ModelPlan, folder: Path) -> Path:
    """The plan's generated model, built and saved as a .keras file."""
    module_path = folder / f"{plan.name}.py"
    module_path.write_text(render_module(plan))
    module = import_generated(module_path, f"round_trip_{plan.name}")
    width = plan.input_shape[0]
    # A table's model is built for its columns: planned with numbers only.
    columns = [{"name": f"x{i}", "kind": "number", "fill": 0.0} for i in range(width)]
    model = module.build_model(*([columns] if plan.recipe.encodes else []))
    path = folder / "model.keras"
    model.save(path)
    return path


def _imported_plan(path: Path, out: Path) -> ModelPlan:
    done = import_model(path, out)
    return plan_file(done.spec)


@pytest.mark.build
@pytest.mark.parametrize("spec", ROUND_TRIP, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_spec_round_trips_through_a_keras_file(
    spec: Path, tmp_path: Path
) -> None:
    loaded = load_spec(spec, overrides=_offline(spec))
    assert not isinstance(loaded, list), loaded
    plan = plan_spec(loaded, spec.parent)
    assert not isinstance(plan, list), plan
    saved = _saved_model(plan, tmp_path)
    again = _imported_plan(saved, tmp_path / "imported.yaml")
    assert signature(again) == signature(plan)


@pytest.mark.build
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=graphs())
def test_random_graphs_round_trip(spec: dict[str, Any], tmp_path_factory: Any) -> None:
    plan = compile_text(yaml.safe_dump(spec))
    assert not isinstance(plan, list), plan
    folder = tmp_path_factory.mktemp("graph")
    saved = _saved_model(plan, folder)
    again = _imported_plan(saved, folder / "imported.yaml")
    assert signature(again) == signature(plan)
