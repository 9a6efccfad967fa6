"""Task plug-ins: one package per task (``visionpipe/tasks/<name>/``), each registering its
task class with ``visionpipe.core.registry.register_task``. The pipeline, trainer, evaluator,
optimizer, exporter and CLI look tasks up here and never branch on a task's name.

A task package imports the model kit (``visionpipe.models``, ``visionpipe.runtime``,
``visionpipe.datasets``) and ``visionpipe.core``, nothing above them."""
from visionpipe.core.registry import task_class, task_classes, task_names  # noqa: F401


def get_task(config, class_names):
    """The task object for a resolved PipelineConfig and its class names."""
    return task_class(config.task)(config, list(class_names))


def prepare_generated_source(config, run_dir):
    """Write ``config.data``'s generated data (shapes, digits) in the layout of
    ``config.task`` under ``<run_dir>/generated/``; returns (path to ingest, ingestion source)."""
    from visionpipe.core.errors import ConfigError
    from visionpipe.datasets import materialise

    cls = task_class(config.task)
    source = config.data.source
    if source not in cls.generated_sources:
        raise ConfigError(f"data.source: task {config.task!r} has no generated {source!r} data; "
                          f"it has {list(cls.generated_sources) or 'none'}")
    return materialise(config.data, config.task, run_dir,
                       lambda out_dir: cls.write_generated(source, config.data, out_dir))
