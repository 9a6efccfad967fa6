"""The layering of ``visionpipe/``, read from its source with ``ast`` (nothing is imported but
the task registry, for the task names):

- a task package (``visionpipe/tasks/``) imports none of the hosts above it;
- ``visionpipe/core/`` imports nothing of visionpipe outside ``core``;
- ``visionpipe/tracking/`` (kit) imports nothing of visionpipe but ``core``;
- only the tasks and the registry compare a value with a task's name;
- no two top-level packages import each other both ways (the rule of
  ``../shared/tools/import_directions.py``).

Imports count wherever they are (module level or inside a function); relative imports are
resolved; a module name passed to ``importlib`` as a string is not an import.
"""
from __future__ import annotations

import ast
import collections
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "visionpipe"
REPO_ROOT = PACKAGE_ROOT.parent

#: what a task plug-in may not import: the hosts that look tasks up
HOSTS_ABOVE_TASKS = ("components", "pipeline", "serving", "cli", "optimize")
#: two-way package pairs allowed. import_directions.py's house rule tolerates one; the tree
#: has none, and this keeps it so (raise to 1 only for a pair the house has agreed to)
MAX_TWO_WAY_PAIRS = 0
#: where comparing with a task name is the job
TASK_NAME_COMPARISONS_ALLOWED = ("visionpipe/tasks/", "visionpipe/core/registry.py")


def _modules() -> List[Tuple[Path, str, ast.Module]]:
    """(file, dotted module name, parsed tree) of every module under visionpipe/."""
    modules = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules.append((path, ".".join(parts), ast.parse(path.read_text(), filename=str(path))))
    return modules


MODULES = _modules()


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(REPO_ROOT)}:{node.lineno}"


def _imports(path: Path, module: str, tree: ast.Module) -> Iterator[Tuple[str, ast.AST]]:
    """(imported module, node) for every import in ``tree``; ``from visionpipe import x``
    imports ``visionpipe.x``; relative imports are resolved against ``module``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base == "visionpipe":  # `from visionpipe import tasks` imports visionpipe.tasks
                for alias in node.names:
                    yield f"{base}.{alias.name}", node
            else:
                yield base, node


def _top_package(name: str) -> str:
    """``visionpipe.tasks.base`` -> ``tasks``; "" for what is not a visionpipe subpackage."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "visionpipe" else ""


def _own_package(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT).parts
    return parts[0][:-3] if len(parts) == 1 else parts[0]


def _is_package_or_module(name: str) -> bool:
    """Whether ``visionpipe.<...>`` names a module or package (not a function or class
    imported with ``from visionpipe.x import y``)."""
    relative = Path(*name.split(".")[1:])
    return (PACKAGE_ROOT / relative).is_dir() or (PACKAGE_ROOT / relative).with_suffix(".py").is_file()


def test_scan_reads_every_package_of_visionpipe():
    names = {module for _, module, _ in MODULES}
    assert {"visionpipe.core.registry", "visionpipe.tasks.base", "visionpipe.tasks.detection.task",
            "visionpipe.components.evaluator.executor", "visionpipe.serving.server",
            "visionpipe.tracking.trackers"} <= names


def test_import_scan_resolves_relative_and_from_package_imports():
    tree = ast.parse("from . import nms\nfrom ..base import Task\nfrom visionpipe import serving\n"
                     "def f():\n    import visionpipe.cli.main\n")
    path = PACKAGE_ROOT / "tasks" / "detection" / "task.py"
    found = [name for name, _ in _imports(path, "visionpipe.tasks.detection.task", tree)]
    assert found == ["visionpipe.tasks.detection", "visionpipe.tasks.base", "visionpipe.serving",
                     "visionpipe.cli.main"]


def test_task_packages_import_no_host_above_them():
    violations = []
    for path, module, tree in MODULES:
        if _own_package(path) != "tasks":
            continue
        for name, node in _imports(path, module, tree):
            if _top_package(name) in HOSTS_ABOVE_TASKS:
                violations.append(f"{_where(path, node)}: imports {name} "
                                  f"(tasks/ may not import visionpipe.{_top_package(name)})")
    assert not violations, "\n".join(sorted(set(violations)))


def test_core_imports_nothing_of_visionpipe_outside_core():
    violations = []
    for path, module, tree in MODULES:
        if _own_package(path) != "core":
            continue
        for name, node in _imports(path, module, tree):
            # bare `import visionpipe` runs the root package's environment setup only
            if name.startswith("visionpipe.") and _top_package(name) != "core":
                violations.append(f"{_where(path, node)}: imports {name} (core/ imports only core)")
    assert not violations, "\n".join(sorted(set(violations)))


#: kit packages that stand on the ground alone (tasks and hosts may use them)
CORE_ONLY_KIT = ("tracking",)


def test_core_only_kit_packages_import_nothing_of_visionpipe_but_core():
    violations = []
    for path, module, tree in MODULES:
        if _own_package(path) not in CORE_ONLY_KIT:
            continue
        for name, node in _imports(path, module, tree):
            if _top_package(name) not in ("", "core", _own_package(path)):
                violations.append(f"{_where(path, node)}: imports {name} "
                                  f"(visionpipe.{_own_package(path)} imports only core)")
    assert not violations, "\n".join(sorted(set(violations)))


def _string_constants(node: ast.AST) -> Iterator[str]:
    """String literals compared by ``node``: a constant, or the items of a literal tuple,
    list or set (``x in ("a", "b")``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        for element in node.elts:
            yield from _string_constants(element)


def _task_name_comparisons(tree: ast.Module, task_names) -> Iterator[Tuple[ast.AST, str]]:
    """(node, task name) of each ==, !=, in, not in (and ``match`` case) with a task-name literal."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            if not any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops):
                continue
            for operand in (node.left, *node.comparators):
                for value in _string_constants(operand):
                    if value in task_names:
                        yield node, value
        elif isinstance(node, ast.MatchValue):
            for value in _string_constants(node.value):
                if value in task_names:
                    yield node.value, value


def test_comparison_scan_finds_equality_membership_and_match_cases():
    tree = ast.parse('a == "detection"\n"multilabel" != b\nc in ("x", "classification")\n'
                     'd not in ["detection"]\nmatch e:\n    case "detection":\n        pass\n'
                     'f = "detection"\ng("classification")\nh < "detection"\n')
    found = [(node.lineno, name) for node, name in
             _task_name_comparisons(tree, {"classification", "multilabel", "detection"})]
    assert found == [(1, "detection"), (2, "multilabel"), (3, "classification"), (4, "detection"),
                     (6, "detection")]


def test_only_tasks_and_the_registry_compare_with_a_task_name():
    from visionpipe.core.registry import task_names

    names = set(task_names())
    assert names, "no task is registered"
    violations = []
    for path, _, tree in MODULES:
        relative = path.relative_to(REPO_ROOT).as_posix()
        if relative.startswith(TASK_NAME_COMPARISONS_ALLOWED):
            continue
        for node, name in _task_name_comparisons(tree, names):
            violations.append(f"{_where(path, node)}: compares with the task name {name!r} "
                              f"(ask the task's declarations instead)")
    assert not violations, "\n".join(violations)


def _package_edges() -> Dict[Tuple[str, str], List[str]]:
    """(a, b) -> "file:line" of each import of package b by package a of visionpipe."""
    edges: Dict[Tuple[str, str], List[str]] = collections.defaultdict(list)
    for path, module, tree in MODULES:
        source = _own_package(path)
        for name, node in _imports(path, module, tree):
            target = _top_package(name)
            if target and target != source and _is_package_or_module(
                    ".".join(name.split(".")[:2])):
                edges[(source, target)].append(_where(path, node))
    return edges


def test_no_two_packages_import_each_other_both_ways():
    edges = _package_edges()
    assert ("tasks", "core") in edges and ("cli", "tasks") in edges  # the scan sees imports
    pairs = sorted({tuple(sorted(pair)) for pair in edges if (pair[1], pair[0]) in edges})
    described = [f"{a} <-> {b}: {edges[(a, b)][0]} imports visionpipe.{b}; "
                 f"{edges[(b, a)][0]} imports visionpipe.{a}" for a, b in pairs]
    assert len(pairs) <= MAX_TWO_WAY_PAIRS, "\n".join(described)
