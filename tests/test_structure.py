"""The compiler's structure: each layer kind in one place, and the parts small.

Adding a layer kind is one registered class in one family module under
l2compile/layers/; the spec's union and the planner are made from the
registry, so nothing else lists the kinds.
"""

from __future__ import annotations

import ast
import typing
from pathlib import Path

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


def test_the_spec_accepts_exactly_the_registered_kinds() -> None:
    assert _layer_union() == set(KINDS.values())
    assert sorted(LAYER_TYPES) == sorted(KINDS)


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


def test_the_build_only_orchestrates() -> None:
    lines = (PACKAGE / "build.py").read_text(encoding="utf-8").count("\n")
    assert lines < 300


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


def test_every_family_module_is_registered() -> None:
    """A family module that FAMILIES leaves out would register nothing."""
    modules = {
        path.stem
        for path in (PACKAGE / "layers").glob("*.py")
        if path.stem not in ("__init__", "base")
    }
    assert set(layers.FAMILIES) == modules
    assert {kind.__module__.rsplit(".", 1)[1] for kind in KINDS.values()} == modules


# --- export formats: one registered class each, in l2compile/formats/ -------------


def _format_names() -> frozenset[str]:
    from l2compile.formats import FORMATS

    return frozenset(FORMATS)


def _compared_names(source: str, names: frozenset[str]) -> list[str]:
    """The format names that `source` compares something with (==, !=, in,
    not in, is; a match case), as `line: name`, where one is a literal string
    in the comparison (alone, or in a tuple, list, set or dict of them). A
    test of `sys.modules` asks after a package (keras), not a format."""

    def literals(node: ast.expr) -> list[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            return [s for item in node.elts for s in literals(item)]
        if isinstance(node, ast.Dict):
            return [s for key in node.keys if key is not None for s in literals(key)]
        return []

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(ast.unparse(o) == "sys.modules" for o in operands):
                continue  # a package (keras) imported, not a format
        elif isinstance(node, ast.MatchValue):
            operands = [node.value]
        else:
            continue
        found += [
            f"{node.lineno}: {name}"
            for operand in operands
            for name in literals(operand)
            if name in names
        ]
    return sorted(found, key=lambda line: int(line.split(":")[0]))


def test_each_format_is_one_registered_class_in_one_module_of_the_package() -> None:
    import sys

    from l2compile import formats
    from l2compile.formats.base import ExportFormat

    modules = {
        path.stem
        for path in (PACKAGE / "formats").glob("*.py")
        if path.stem not in ("__init__", "base")
    }
    assert set(formats.MODULES) == modules
    owners = [type(f).__module__ for f in formats.FORMATS.values()]
    assert sorted(owners) == sorted(f"l2compile.formats.{m}" for m in modules)
    for name, exported in formats.FORMATS.items():
        cls = type(exported)
        assert issubclass(cls, ExportFormat) and cls.name == name
        module = ast.parse(Path(sys.modules[cls.__module__].__file__ or "").read_text())
        classes = [
            n.name
            for n in module.body
            if isinstance(n, ast.ClassDef)
            and any(getattr(b, "id", None) == "ExportFormat" for b in n.bases)
        ]
        assert classes == [cls.__name__], (name, classes)
        for method in ("files", "recognizes", "open"):
            assert getattr(cls, method) is not getattr(ExportFormat, method), name
    # The spec accepts exactly the registered names, and each format's options.
    export = Spec.model_fields["export"].annotation
    assert export is not None
    (listed,) = typing.get_args(export.model_fields["formats"].annotation)
    assert set(typing.get_args(listed)) == set(formats.FORMATS)
    options = {f.name for f in formats.FORMATS.values() if f.options is not None}
    assert set(export.model_fields) == {"formats", *options}


def test_no_module_outside_the_formats_compares_a_format_name() -> None:
    """Only l2compile/formats/ tells the formats apart; the rest of the
    package iterates over the registry."""
    names = _format_names()
    found = {
        path.relative_to(PACKAGE).as_posix(): compared
        for path in PACKAGE.rglob("*.py")
        if "formats" not in path.relative_to(PACKAGE).parts
        and (compared := _compared_names(path.read_text(encoding="utf-8"), names))
    }
    assert found == {}


def test_the_format_name_checker_finds_a_comparison() -> None:
    names = _format_names()
    source = """
if "tflite" in plan.export_formats:
    pass
if kind == 'keras' or kind != "other":
    pass
if name in ("saved_model", "x"):
    pass
match kind:
    case "keras":
        pass
used = plan.options["tflite"]  # not a comparison
imported = "keras" in sys.modules  # the package
"""
    assert _compared_names(source, names) == [
        "2: tflite",
        "4: keras",
        "6: saved_model",
        "9: keras",
    ]
