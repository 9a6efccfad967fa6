"""Task registry: the pipeline, trainer, evaluator, optimizer and exporter look tasks up here
and never branch on a task's name."""
import importlib

_TASK_MODULES = {
    "classification": "visionpipe.models.tasks.classification:ClassificationTask",
    "multilabel": "visionpipe.models.tasks.classification:MultiLabelTask",
    "detection": "visionpipe.models.tasks.detection:DetectionTask",
}


def task_class(name: str):
    if name not in _TASK_MODULES:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(_TASK_MODULES)}")
    module, cls = _TASK_MODULES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_task(config, class_names):
    """The task object for a resolved PipelineConfig and its class names."""
    return task_class(config.task)(config, list(class_names))
