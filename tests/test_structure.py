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


# --- task kinds: each in one place ------------------------------------------------
#
# Adding a task kind is one registered class in one module under
# l2compile/tasks/; the rest of the package asks a task what it needs (its
# losses, metrics, label checks and scoring), never which kind it is.


def test_each_task_is_one_registered_class_in_a_module_of_its_own() -> None:
    import importlib

    from l2compile import tasks
    from l2compile.tasks import TASKS, Task

    modules = {
        path.stem
        for path in (PACKAGE / "tasks").glob("*.py")
        if path.stem not in ("__init__", "base")
    }
    assert set(tasks.MODULES) == modules
    assert sorted(kind.__module__ for kind in TASKS.values()) == sorted(
        f"l2compile.tasks.{module}" for module in modules
    )
    for name, kind in TASKS.items():
        assert kind.name == name
        module = importlib.import_module(kind.__module__)
        own = [
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, Task)
            and value.__module__ == module.__name__
        ]
        assert own == [kind], (name, own)


def _task_name_comparisons(source: str, names: typing.Collection[str]) -> list[int]:
    """The lines of `source` that compare a value with a task's name: a
    comparison one of whose sides is a string constant naming a task (or a
    tuple, list or set holding one), as `task.name == "binary"` or
    `spec.task in ("binary", "multilabel")`, or a match case on one."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.MatchValue):
            sides: list[ast.expr] = [node.value]
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
        else:
            continue
        for side in sides:
            items = (
                side.elts
                if isinstance(side, ast.Tuple | ast.List | ast.Set)
                else [side]
            )
            if any(isinstance(i, ast.Constant) and i.value in names for i in items):
                found.append(node.lineno)
                break
    return found


def test_the_task_name_check_finds_comparisons_with_a_task_name() -> None:
    source = (
        'if task.name == "binary":\n'  # 1
        "    pass\n"
        'if spec.task in ("classification", "binary"):\n'  # 3
        "    pass\n"
        'label = "regression"\n'  # a name, not compared
        'if "multilabel" != kind:\n'  # 6
        "    pass\n"
        "match task.name:\n"
        '    case "regression":\n'  # 9
        "        pass\n"
        'if task.loss_name == "mse":\n'  # not a task's name
        "    pass\n"
    )
    names = ("classification", "binary", "multilabel", "regression")
    assert _task_name_comparisons(source, names) == [1, 3, 6, 9]


def test_no_module_outside_the_tasks_compares_a_task_name() -> None:
    """Code that needs to know something of a task asks the task (an attribute
    or a method it owns), so a new kind changes no module but its own."""
    import re

    from l2compile.tasks import TASKS

    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "tasks" in path.relative_to(PACKAGE).parts:
            continue
        source = path.read_text(encoding="utf-8")
        found += [f"{path.name}:{n}" for n in _task_name_comparisons(source, TASKS)]
    named = "|".join(TASKS)
    compared = re.compile(rf"""(==|!=|\bin)\s*[(\[]?\s*["']({named})["']""")
    for path in sorted((PACKAGE.parent / "templates").glob("*.jinja")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if compared.search(line):
                found.append(f"{path.name}:{n}")
    assert found == []
