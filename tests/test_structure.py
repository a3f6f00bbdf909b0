"""The compiler's structure: each layer kind in one place, and the parts small.

Adding a layer kind is one registered class in one family module under
l2compile/layers/; the spec's union and the planner are made from the
registry, so nothing else lists the kinds.
"""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest

from l2compile import layers
from l2compile.layers import KINDS, LAYER_TYPES
from l2compile.layers.base import LayerSpec, MergeSpec
from l2compile.spec import Spec

PACKAGE = Path(layers.__file__).resolve().parent.parent


def _layer_union() -> set[type]:
    annotation = Spec.model_fields["layers"].annotation
    (item,) = typing.get_args(annotation)
    union = typing.get_args(item)[0]
    return set(typing.get_args(union))


@pytest.mark.unit
def test_the_spec_accepts_exactly_the_registered_kinds() -> None:
    assert _layer_union() == set(KINDS.values())
    assert sorted(LAYER_TYPES) == sorted(KINDS)


@pytest.mark.unit
def test_each_kind_is_one_class_in_a_family_module_that_states_its_protocol() -> None:
    for name, kind in KINDS.items():
        assert kind.__module__.startswith("l2compile.layers."), name
        assert kind.__module__ != "l2compile.layers.base", name
        assert kind.keras_class, name
        assert kind.model_fields["type"].annotation == typing.Literal[name]
        if issubclass(kind, MergeSpec):
            assert kind.merged_shape is not MergeSpec.merged_shape, name
        else:
            assert issubclass(kind, LayerSpec)


@pytest.mark.unit
def test_no_other_module_names_a_layer_kind() -> None:
    """Only l2compile/layers/ holds the kinds' classes; the rest of the
    package reaches them through the registry."""
    classes = {kind.__name__ for kind in KINDS.values()}
    for path in PACKAGE.rglob("*.py"):
        if "layers" in path.relative_to(PACKAGE).parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        named = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        named |= {
            alias.name
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom)
            for alias in n.names
        }
        assert not named & classes, (path.name, sorted(named & classes))


@pytest.mark.unit
def test_no_function_in_the_package_is_over_80_lines() -> None:
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 80:
                    long.append(f"{path.name}:{node.name} ({length} lines)")
    assert long == []


@pytest.mark.unit
def test_the_build_only_orchestrates() -> None:
    lines = (PACKAGE / "build.py").read_text(encoding="utf-8").count("\n")
    assert lines < 300


@pytest.mark.build
def test_the_plan_imports_no_build_stage_code() -> None:
    """The plan is made without reading data or importing numpy/TensorFlow:
    validate, generate and inspect answer fast."""
    import subprocess
    import sys

    probe = (
        "import sys, l2compile.plan, l2compile.render; "
        "print(sorted(m for m in ('numpy', 'tensorflow', 'keras', "
        "'l2compile.datasets', 'l2compile.build') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.unit
def test_every_family_module_is_registered() -> None:
    """A family module that FAMILIES leaves out would register nothing."""
    modules = {
        path.stem
        for path in (PACKAGE / "layers").glob("*.py")
        if path.stem not in ("__init__", "base")
    }
    assert set(layers.FAMILIES) == modules
    assert {kind.__module__.rsplit(".", 1)[1] for kind in KINDS.values()} == modules
