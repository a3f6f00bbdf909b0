"""What l2compile infers without TensorFlow equals what Keras builds.

For every spec in specs/ and tests/specs/: the generated module's model has the
planned output shapes, weights and parameter counts, and exactly the
regularization that `l2compile inspect` reports, weight by weight.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from l2compile import report
from l2compile.contract import GeneratedModule, import_generated
from l2compile.plan import ModelPlan
from l2compile.render import render_module

from .conftest import ROOT, SPECS, builds_offline, plan_file

pytestmark = pytest.mark.build

ALL_SPECS = sorted(SPECS.glob("*.yaml")) + sorted(
    (ROOT / "tests" / "specs").glob("*.yaml")
)


@pytest.fixture(scope="module", params=ALL_SPECS, ids=lambda p: p.stem)
def built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ModelPlan, Any, Any]:
    plan = plan_file(request.param)
    if not builds_offline(plan):
        pytest.skip("its backbone's ImageNet weights need a download")
    module_path = tmp_path_factory.mktemp("gen") / f"{plan.name}.py"
    module_path.write_text(render_module(plan), encoding="utf-8")
    module: GeneratedModule = import_generated(module_path, f"parity_{plan.name}")
    module.set_seeds()  # the same initial weights, run after run
    # A csv model is built for its columns: here all numeric, one per input value.
    numeric = {"name": "x", "kind": "number", "fill": 0.0}
    args = ([numeric] * plan.input_shape[0],) if plan.recipe.encodes else ()
    # A scheduled learning rate counts an epoch's batches: any will do.
    steps = (10,) if plan.schedule else ()
    model = module.compile_model(module.build_model(*args), *steps)
    return plan, module, model


def test_shapes_and_parameters_equal_keras(built: tuple[ModelPlan, Any, Any]) -> None:
    plan, _, model = built
    # A functional model lists its input layer (and its layers by depth); a
    # Sequential one does not.
    names = sorted(lay.name for lay in model.layers if lay.name != "input")
    # Augmentation layers are no layers of the model (build_augmentation).
    assert names == sorted(lay.name for lay in plan.model_layers)
    for planned in plan.model_layers:
        keras_layer = model.get_layer(planned.name)
        assert tuple(keras_layer.output.shape[1:]) == planned.output_shape, planned.name
        assert keras_layer.count_params() == planned.params, planned.name
    assert model.count_params() == plan.params


def test_each_layer_takes_the_inputs_the_plan_names(
    built: tuple[ModelPlan, Any, Any],
) -> None:
    """Stacks build a keras.Sequential; graphs a functional model whose layers
    are wired as the plan says."""
    import keras

    plan, _, model = built
    assert isinstance(model, keras.Sequential) == plan.is_stack
    if plan.is_stack:
        return
    # The model reads as its input the images as the augmentation leaves them.
    read = {lay.name: "input" for lay in plan.augmentation}
    names = {lay.name for lay in plan.model_layers}
    for planned in plan.model_layers:
        node = model.get_layer(planned.name)._inbound_nodes[0]
        sources = [t._keras_history.operation.name for t in node.input_tensors]
        expected = [read.get(r, r) for r in planned.inputs]
        if plan.recipe.encodes:
            # A table's layers read its row as the model encodes it (filled,
            # one-hot): the last operation of that encoding, not a layer.
            expected = [
                found if ref == "input" and found not in names else ref
                for ref, found in zip(expected, sources, strict=True)
            ]
        assert sources == expected


def test_weights_equal_keras_by_path_and_shape(
    built: tuple[ModelPlan, Any, Any],
) -> None:
    plan, _, model = built
    keras_weights = {v.path: (tuple(v.shape), v.trainable) for v in model.weights}
    planned = {
        w["path"]: (tuple(w["shape"]), w["trainable"]) for w in report.weights(plan)
    }
    assert keras_weights == planned


def test_regularization_losses_are_what_inspect_reports(
    built: tuple[ModelPlan, Any, Any],
) -> None:
    plan, _, model = built
    variables = {v.path: v for v in model.weights}
    expected = [w for w in report.weights(plan) if w["l2"] > 0]
    # One regularization loss per regularized weight, and no other.
    assert len(model.losses) == len(expected)
    for record in expected:
        layer = model.get_layer(record["layer"])
        planned = next(
            w
            for lay in plan.layers
            if lay.name == record["layer"]
            for w in lay.weights
            if w.name == record["weight"]
        )
        # A backbone's weights carry their penalty on their variables.
        regularizer = (
            variables[record["path"]].regularizer
            if planned.absolute
            else getattr(layer, planned.regularizer or "")
        )
        assert regularizer is not None, record["path"]
        assert regularizer.l2 == pytest.approx(record["l2"]), record["path"]
    # And the penalty is exactly sum(l2 * ||w||^2) over those weights.
    penalty = sum(
        record["l2"]
        * float(np.sum(np.asarray(variables[record["path"]], dtype=np.float64) ** 2))
        for record in expected
    )
    assert float(sum(float(loss) for loss in model.losses)) == pytest.approx(
        penalty, rel=1e-4
    )
    # Weights the report leaves out have no regularizer at all, or are frozen
    # (a backbone's kernels keep theirs for when they are unfrozen).
    for lay in plan.model_layers:
        keras_layer = model.get_layer(lay.name)
        for w in lay.weights:
            if w.l2 == 0 and w.regularizer:
                assert getattr(keras_layer, w.regularizer) is None, (lay.name, w.name)
            if w.l2 == 0 and w.absolute:
                variable = variables[w.name]
                assert variable.regularizer is None or not variable.trainable, w.name


def test_weight_decay_reaches_what_inspect_reports(
    built: tuple[ModelPlan, Any, Any],
) -> None:
    plan, _, model = built
    optimizer = model.optimizer
    decayed = {w["path"] for w in report.weights(plan) if w["weight_decay"] > 0}
    if not decayed:
        assert not optimizer.weight_decay
        return
    assert optimizer.weight_decay == pytest.approx(plan.weight_decay)
    for variable in model.trainable_variables:
        assert optimizer._use_weight_decay(variable) == (variable.path in decayed), (
            variable.path
        )


def _random_data(plan: ModelPlan, n: int = 64) -> tuple[Any, Any]:
    """Raw samples and labels of the kind the plan's data holds, seeded."""
    rng = np.random.default_rng(7)
    shape = (n, *plan.input_shape)
    if plan.integer_input:
        x: Any = rng.integers(0, plan.model_input.ids or 1, size=shape)
    else:
        x = rng.normal(size=shape).astype(np.float32)
    task = plan.task
    if task.name == "classification":
        y: Any = np.arange(n) % task.outputs
    elif task.name == "binary":
        y = np.arange(n) % 2
    elif task.name == "multilabel":
        y = rng.integers(0, 2, size=(n, task.outputs))
    else:
        y = rng.normal(size=(n, task.outputs)) * 10
    return x, y


def test_scoring_equals_keras_evaluate(built: tuple[ModelPlan, Any, Any]) -> None:
    """The numpy scoring that TFLite files and `eval` are scored with gives
    Keras' own figures: the loss less the L2 penalty, and every metric (auc:
    exactly, where Keras interpolates over 200 thresholds)."""
    plan, module, model = built
    if plan.distribute in ("mirrored", "multi_worker"):
        # data_parallel scores with the distribution set aside, as here.
        pytest.skip("scored by its strategy's own evaluate")
    x, y = _random_data(plan)
    if plan.recipe.streamed:  # preprocess reads image files; these are pixels
        x = (x - x.min()) / (x.max() - x.min())
    else:
        x, y = module.preprocess(x, y)
    if plan.adapted:
        module.adapt(model, x)
    keras_scores = model.evaluate(x, y, verbose=0, return_dict=True)
    # predict, not model(x): the same inference-mode outputs from one compiled
    # step, where an eager call dispatches every op (10 s against 1 s for a
    # MobileNet on JAX).
    outputs = model.predict(x, verbose=0)
    targets = plan.task.targets(y)
    penalty = float(sum(float(loss) for loss in model.losses))
    assert plan.task.data_loss(outputs, targets) == pytest.approx(
        float(keras_scores["loss"]) - penalty, rel=1e-4, abs=1e-5
    )
    mine = plan.task.scores(outputs, targets)
    assert set(mine) == set(plan.task.metric_names)
    for metric, value in mine.items():
        # Keras interpolates AUC over 200 thresholds: an untrained model, whose
        # outputs crowd a few of them, differs from the exact AUC by up to ~0.03.
        tolerance = 0.05 if metric == "auc" else 1e-4
        assert value == pytest.approx(
            float(keras_scores[metric]), rel=tolerance, abs=tolerance
        ), metric
