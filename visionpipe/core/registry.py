"""The task registry, keyed by task name (Model Garden's registries keyed by type).

A task class registers itself once with ``@register_task``; everything that used to keep a
list of tasks by hand (the config's task names and per-task sections, the schema's label
needs, the generated-data layouts, the CLI's printing) asks the registry instead.

Built-in tasks are the packages under ``visionpipe/tasks/``; they are imported the first time
the registry is read (``BUILTIN_TASKS`` names that package, it is not imported from here).
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Dict, Type

from visionpipe.core.errors import ConfigError

BUILTIN_TASKS = "visionpipe.tasks"

_TASKS: Dict[str, type] = {}
_builtins_loaded = False


def register_task(cls: Type) -> Type:
    """Class decorator: make ``cls`` (a ``visionpipe.tasks.base.Task``) the task ``cls.name``."""
    name = getattr(cls, "name", "")
    if not name:
        raise ValueError(f"{cls.__qualname__}: a registered task needs a non-empty `name`")
    known = _TASKS.get(name)
    if known is not None and known is not cls:
        raise ValueError(f"task {name!r} is registered twice: {known.__qualname__} and "
                         f"{cls.__qualname__}")
    _TASKS[name] = cls
    return cls


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    package = importlib.import_module(BUILTIN_TASKS)
    for module in pkgutil.iter_modules(package.__path__):
        if module.ispkg:
            importlib.import_module(f"{BUILTIN_TASKS}.{module.name}")


def task_classes() -> Dict[str, Type]:
    """{task name: task class}, every built-in task loaded."""
    _load_builtins()
    return dict(sorted(_TASKS.items()))


def task_names():
    return tuple(task_classes())


def task_class(name: str) -> Type:
    classes = task_classes()
    if name not in classes:
        raise ConfigError(f"task: unknown task {name!r}; choose one of {sorted(classes)}")
    return classes[name]


def config_sections() -> Dict[str, Type]:
    """{section name: dataclass} that the registered tasks add to the config (tasks of one
    family may share a section; two different dataclasses under one name is an error)."""
    sections: Dict[str, Type] = {}
    for cls in task_classes().values():
        for section, dataclass_type in getattr(cls, "config_sections", {}).items():
            known = sections.setdefault(section, dataclass_type)
            if known is not dataclass_type:
                raise ValueError(f"config section {section!r} is declared by two tasks with "
                                 f"different types ({known.__qualname__}, {dataclass_type.__qualname__})")
    return sections
