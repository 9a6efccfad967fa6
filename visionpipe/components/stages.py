"""Extra pipeline stages that a task asks for by name (``Task.pipeline_stages``).

A stage builder is registered here under a name with ``@register_stage``; it receives the
run's config and the channels it may read (Examples, the trained model, the Evaluator's
blessing) and returns its component and, optionally, a ``PushFiles`` channel whose files the
Pusher ships next to the SavedModel of the same version (a retrieval index beside its
embedder, say), so the model and what was built from it are versioned together.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from tfx import types
from tfx.types.artifact import Artifact

from visionpipe.core.errors import ConfigError


class PushFiles(Artifact):
    """A folder whose every file is pushed into the model version, at the same relative path."""
    TYPE_NAME = "visionpipe.PushFiles"


@dataclasses.dataclass
class StageInputs:
    examples: types.BaseChannel
    model: types.BaseChannel
    blessing: types.BaseChannel


StageBuilder = Callable[..., Tuple[object, Optional[types.BaseChannel]]]
_STAGES: Dict[str, StageBuilder] = {}
#: modules whose import registers the built-in stages (imported when a stage is first looked up)
BUILTIN_STAGE_MODULES = ("visionpipe.components.index_builder.component",)


def register_stage(name: str):
    """Decorator: ``builder(config, inputs: StageInputs) -> (component, push_files or None)``."""
    def decorate(builder: StageBuilder) -> StageBuilder:
        known = _STAGES.get(name)
        if known is not None and known is not builder:
            raise ValueError(f"pipeline stage {name!r} is registered twice")
        _STAGES[name] = builder
        return builder
    return decorate


def build_stages(names: Sequence[str], config, inputs: StageInputs
                 ) -> Tuple[List[object], Optional[types.BaseChannel]]:
    """The components of the named stages, and the one PushFiles channel among them (if any)."""
    import importlib

    for module in BUILTIN_STAGE_MODULES:
        importlib.import_module(module)
    components, push_files = [], []
    for name in names:
        if name not in _STAGES:
            raise ConfigError(f"task: {config.task!r} asks for pipeline stage {name!r}, which is "
                              f"not registered (known: {sorted(_STAGES)})")
        component, files = _STAGES[name](config, inputs)
        components.append(component)
        if files is not None:
            push_files.append(files)
    if len(push_files) > 1:
        raise ConfigError(f"task: {config.task!r} has {len(push_files)} stages with files to "
                          f"push; the Pusher takes one")
    return components, (push_files[0] if push_files else None)
